"""Sites and their custom hostnames (Cloudflare for SaaS: Host header -> site)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from clickstream_lake.control.db import ControlDB
from clickstream_lake.lake import LakeError, check_site_id

PLANS = ("free", "pro", "business", "enterprise")
_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?$")


class SiteError(ValueError):
    pass


@dataclass(frozen=True)
class Site:
    id: str
    domain: str
    owner_email: str
    plan: str
    hostnames: tuple[str, ...]
    created_at: str


def normalize_hostname(host: str) -> str:
    """Lower-case, strip a trailing dot; a Host header may carry a port (kept when given)."""
    h = (host or "").strip().lower().rstrip(".")
    if not _HOST_RE.fullmatch(h):
        raise SiteError(f"invalid hostname {host!r}")
    return h


def add_site(
    db: ControlDB, site_id: str, *, domain: str, hostnames: list[str], plan: str = "free", owner_email: str = ""
) -> Site:
    try:
        check_site_id(site_id)
    except LakeError as e:
        raise SiteError(str(e)) from e
    if plan not in PLANS:
        raise SiteError(f"unknown plan {plan!r}: choose one of {', '.join(PLANS)}")
    domain = normalize_hostname(domain)
    hosts = [normalize_hostname(h) for h in hostnames]
    if get_site(db, site_id) is not None:
        raise SiteError(f"site {site_id!r} already exists")
    try:
        with db.transaction() as c:
            c.execute(
                "INSERT INTO sites(id, domain, owner_email, plan) VALUES (?, ?, ?, ?)",
                (site_id, domain, owner_email, plan),
            )
            for h in hosts:
                c.execute("INSERT INTO hostnames(hostname, site_id) VALUES (?, ?)", (h, site_id))
            c.execute("INSERT INTO site_config(site_id, config) VALUES (?, '{}')", (site_id,))
    except sqlite3.IntegrityError as e:
        msg = str(e)
        if "sites.id" in msg:
            raise SiteError(f"site {site_id!r} already exists") from e
        if "sites.domain" in msg:
            raise SiteError(f"domain {domain!r} is already registered to another site") from e
        if "hostnames.hostname" in msg:
            raise SiteError(f"a hostname in {hosts} is already registered") from e
        raise SiteError(msg) from e
    site = get_site(db, site_id)
    assert site is not None
    return site


def add_hostname(db: ControlDB, site_id: str, hostname: str) -> None:
    h = normalize_hostname(hostname)
    if get_site(db, site_id) is None:
        raise SiteError(f"no site {site_id!r}")
    try:
        db.execute("INSERT INTO hostnames(hostname, site_id) VALUES (?, ?)", (h, site_id))
    except sqlite3.IntegrityError as e:
        raise SiteError(f"hostname {h!r} is already registered") from e


def get_site(db: ControlDB, site_id: str) -> Site | None:
    rows = db.query("SELECT * FROM sites WHERE id = ?", (site_id,))
    if not rows:
        return None
    r = rows[0]
    hosts = tuple(
        x["hostname"] for x in db.query("SELECT hostname FROM hostnames WHERE site_id = ? ORDER BY hostname", (site_id,))
    )
    return Site(r["id"], r["domain"], r["owner_email"], r["plan"], hosts, r["created_at"])


def list_sites(db: ControlDB) -> list[Site]:
    return [s for s in (get_site(db, r["id"]) for r in db.query("SELECT id FROM sites ORDER BY id")) if s]


def site_for_hostname(db: ControlDB, host: str) -> str | None:
    try:
        h = normalize_hostname(host)
    except SiteError:
        return None
    rows = db.query("SELECT site_id FROM hostnames WHERE hostname = ?", (h,))
    if not rows and ":" in h:  # Host with a port: fall back to the bare name
        rows = db.query("SELECT site_id FROM hostnames WHERE hostname = ?", (h.rsplit(":", 1)[0].rstrip("."),))
    return rows[0]["site_id"] if rows else None


def all_hostnames(db: ControlDB) -> dict[str, str]:
    return {r["hostname"]: r["site_id"] for r in db.query("SELECT hostname, site_id FROM hostnames")}
