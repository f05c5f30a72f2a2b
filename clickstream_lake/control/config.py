"""Site configuration (the source article's KV document) and its TTL cache.

The worker reads config on every request, so it never goes to SQLite per event: a
:class:`ConfigCache` keeps each site's document (and the hostname and API-key maps) for
``ttl`` seconds, like KV's 60-second propagation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from clickstream_lake.codec import SCORE_NAMES
from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB

# Events per second (sustained) and burst, per plan; a site's config may override.
PLAN_RATE_LIMITS: dict[str, tuple[float, int]] = {
    "free": (200.0, 1_000),
    "pro": (2_000.0, 10_000),
    "business": (10_000.0, 50_000),
    "enterprise": (50_000.0, 250_000),
}


@dataclass(frozen=True)
class SiteConfig:
    site_id: str
    domain: str = ""
    plan: str = "free"
    hostnames: tuple[str, ...] = ()
    models_enabled: tuple[str, ...] = SCORE_NAMES
    consent_required: bool = False
    respect_dnt: bool = False
    cookie_max_age: int = 31_536_000
    sdk_version: str = "1.0.0"
    parquet_export_enabled: bool = False
    r2_namespace: str = ""
    cache_ttl_s: float = 30.0
    rate_limit_eps: float = 0.0  # 0 = the plan's default
    rate_limit_burst: int = 0
    custom_events: tuple[str, ...] = field(default_factory=tuple)

    @property
    def namespace(self) -> str:
        return self.r2_namespace or self.site_id

    def rate_limit(self) -> tuple[float, int]:
        eps, burst = PLAN_RATE_LIMITS.get(self.plan, PLAN_RATE_LIMITS["free"])
        return (self.rate_limit_eps or eps, self.rate_limit_burst or burst)

    def as_document(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


EDITABLE_KEYS = {
    f.name for f in fields(SiteConfig) if f.name not in ("site_id", "domain", "plan", "hostnames")
}
DEFAULT_CONFIG = SiteConfig(site_id="")


def _coerce(key: str, value: Any) -> Any:
    default = getattr(DEFAULT_CONFIG, key)
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        value = tuple(str(v) for v in value)
        if key == "models_enabled":
            unknown = set(value) - set(SCORE_NAMES)
            if unknown:
                raise ValueError(f"unknown models {sorted(unknown)}; known: {', '.join(SCORE_NAMES)}")
        return value
    return str(value)


def load_config(db: ControlDB, site_id: str) -> SiteConfig | None:
    site = sites_mod.get_site(db, site_id)
    if site is None:
        return None
    rows = db.query("SELECT config FROM site_config WHERE site_id = ?", (site_id,))
    doc = json.loads(rows[0]["config"]) if rows else {}
    values: dict[str, Any] = {}
    for k, v in doc.items():
        if k in EDITABLE_KEYS:
            values[k] = _coerce(k, v)
    return SiteConfig(site_id=site.id, domain=site.domain, plan=site.plan, hostnames=site.hostnames, **values)


def set_config(db: ControlDB, site_id: str, updates: dict[str, Any]) -> SiteConfig:
    """Validate and merge ``updates`` into the site's document."""
    if sites_mod.get_site(db, site_id) is None:
        raise sites_mod.SiteError(f"no site {site_id!r}")
    bad = set(updates) - EDITABLE_KEYS
    if bad:
        raise ValueError(f"unknown config keys {sorted(bad)}; editable: {', '.join(sorted(EDITABLE_KEYS))}")
    coerced = {k: _coerce(k, v) for k, v in updates.items()}
    with db.transaction() as c:
        rows = c.execute("SELECT config FROM site_config WHERE site_id = ?", (site_id,)).fetchall()
        doc = json.loads(rows[0]["config"]) if rows else {}
        for k, v in coerced.items():
            doc[k] = list(v) if isinstance(v, tuple) else v
        c.execute(
            "INSERT INTO site_config(site_id, config, updated_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))"
            " ON CONFLICT(site_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            (site_id, json.dumps(doc, sort_keys=True)),
        )
    cfg = load_config(db, site_id)
    assert cfg is not None
    return cfg


class ConfigCache:
    """TTL cache over the control database: site config by id, site by Host, key by secret.

    Misses are cached too (an unknown hostname does not hit SQLite on every request).
    ``clock`` is injectable for tests.
    """

    def __init__(self, db: ControlDB, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._configs: dict[str, tuple[float, SiteConfig | None]] = {}
        self._hosts: tuple[float, dict[str, str]] | None = None
        self._keys: dict[str, tuple[float, keys_mod.ApiKey | None]] = {}
        self._touched: dict[str, float] = {}
        self.loads = 0  # how many times the database was actually read (for tests/metrics)

    def invalidate(self) -> None:
        with self._lock:
            self._configs.clear()
            self._hosts = None
            self._keys.clear()

    def config(self, site_id: str) -> SiteConfig | None:
        now = self.clock()
        hit = self._configs.get(site_id)
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        cfg = load_config(self.db, site_id)
        self.loads += 1
        with self._lock:
            self._configs[site_id] = (now, cfg)
        return cfg

    def site_for_host(self, host: str) -> str | None:
        now = self.clock()
        hosts = self._hosts
        if hosts is None or now - hosts[0] >= self.ttl:
            hosts = (now, sites_mod.all_hostnames(self.db))
            self.loads += 1
            with self._lock:
                self._hosts = hosts
        h = (host or "").strip().lower().rstrip(".")
        site = hosts[1].get(h)
        if site is None and ":" in h:  # a port: the bare name (a trailing dot before the port too)
            site = hosts[1].get(h.rsplit(":", 1)[0].rstrip("."))
        return site

    def api_key(self, secret: str) -> keys_mod.ApiKey | None:
        """The active key for a secret, else None.  Revocation takes effect within ``ttl``."""
        digest = keys_mod.hash_key(secret or "")
        now = self.clock()
        hit = self._keys.get(digest)
        if hit and now - hit[0] < self.ttl:
            key = hit[1]
        else:
            key = keys_mod.lookup_key(self.db, secret)
            self.loads += 1
            with self._lock:
                self._keys[digest] = (now, key)
        if key is None or not key.active:
            return None
        last = self._touched.get(digest, -1e18)
        if now - last >= 60.0:  # record use at most once a minute per key
            self._touched[digest] = now
            try:
                keys_mod.touch_key(self.db, digest)
            except Exception:  # noqa: BLE001 - bookkeeping must never fail a request
                pass
        return key
