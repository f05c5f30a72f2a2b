"""``clickstream init``, ``sites …`` and ``keys …``: the control plane from the shell."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from clickstream_lake.cli.common import DataOption, console, fail, open_db
from clickstream_lake.control import config as config_mod
from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import MigrationError

sites_app = typer.Typer(help="Register and configure sites (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def init(data: str | None = DataOption) -> None:
    """Create the data directory and apply the control-database migrations (idempotent)."""
    d, db = open_db(data, must_exist=False)
    d.ensure()
    try:
        applied = db.migrate()
    except MigrationError as e:
        fail(str(e))
    if applied:
        for name in applied:
            console.print(f"applied migration [bold]{name}[/]")
    else:
        console.print("control database is up to date")
    console.print(f"data directory: {d.path}")


@sites_app.command("add")
def sites_add(
    site_id: str = typer.Argument(..., help="Site id, e.g. site_abc123"),
    domain: str = typer.Option(..., "--domain", help="The site's own domain (CORS origin)."),
    hostname: list[str] = typer.Option([], "--hostname", help="Tracking hostname (CNAME); repeatable."),
    plan: str = typer.Option("free", "--plan", help="free, pro, business or enterprise"),
    owner_email: str = typer.Option("", "--owner-email"),
    data: str | None = DataOption,
) -> None:
    """Register a site with its tracking hostname(s)."""
    _, db = open_db(data)
    try:
        site = sites_mod.add_site(db, site_id, domain=domain, hostnames=hostname, plan=plan, owner_email=owner_email)
    except sites_mod.SiteError as e:
        fail(str(e))
    console.print(f"added site [bold]{site.id}[/] ({site.domain}), hostnames: {', '.join(site.hostnames) or '-'}")


@sites_app.command("list")
def sites_list(data: str | None = DataOption, as_json: bool = typer.Option(False, "--json")) -> None:
    """List sites."""
    _, db = open_db(data)
    sites = sites_mod.list_sites(db)
    if as_json:
        print(json.dumps([s.__dict__ for s in sites], default=list))
        return
    t = Table("site", "domain", "plan", "hostnames", "created")
    for s in sites:
        t.add_row(s.id, s.domain, s.plan, ", ".join(s.hostnames), s.created_at)
    console.print(t)


@sites_app.command("show")
def sites_show(site_id: str, data: str | None = DataOption) -> None:
    """Show a site and its configuration document."""
    _, db = open_db(data)
    cfg = config_mod.load_config(db, site_id)
    if cfg is None:
        fail(f"no site {site_id!r}")
    print(json.dumps(cfg.as_document(), indent=2))


@sites_app.command("config")
def sites_config(
    site_id: str,
    settings: list[str] = typer.Argument(None, help="KEY=VALUE pairs, e.g. consent_required=true"),
    data: str | None = DataOption,
) -> None:
    """Show or change a site's config (models_enabled, consent_required, cookie_max_age, ...)."""
    _, db = open_db(data)
    updates = {}
    for s in settings or []:
        if "=" not in s:
            fail(f"expected KEY=VALUE, got {s!r}")
        k, v = s.split("=", 1)
        updates[k.strip()] = v.strip()
    try:
        cfg = config_mod.set_config(db, site_id, updates) if updates else config_mod.load_config(db, site_id)
    except (ValueError, sites_mod.SiteError) as e:
        fail(str(e))
    if cfg is None:
        fail(f"no site {site_id!r}")
    print(json.dumps(cfg.as_document(), indent=2))


@keys_app.command("create")
def keys_create(
    site_id: str,
    name: str = typer.Option(..., "--name"),
    permissions: str = typer.Option("read", "--permissions", help="read, write or admin"),
    data: str | None = DataOption,
) -> None:
    """Create an API key; the key is printed once and only its hash is stored."""
    _, db = open_db(data)
    try:
        secret, rec = keys_mod.create_key(db, site_id, name=name, permissions=permissions)
    except keys_mod.KeyError_ as e:
        fail(str(e))
    console.print(f"created {rec.permissions} key [bold]{rec.key_prefix}…[/] for {rec.site_id} (shown once):", style="dim")
    print(secret)


@keys_app.command("list")
def keys_list(site_id: str | None = typer.Argument(None), data: str | None = DataOption) -> None:
    """List keys (prefix, site, permissions, last use, revocation)."""
    _, db = open_db(data)
    t = Table("prefix", "site", "name", "permissions", "created", "last used", "revoked")
    for k in keys_mod.list_keys(db, site_id):
        t.add_row(k.key_prefix, k.site_id, k.name, k.permissions.value, k.created_at, k.last_used_at or "-", k.revoked_at or "-")
    console.print(t)


@keys_app.command("revoke")
def keys_revoke(prefix: str = typer.Argument(..., help="The key's prefix as listed (csk_xxxxxxxx)"), data: str | None = DataOption) -> None:
    """Revoke a key (takes effect within the config cache TTL)."""
    _, db = open_db(data)
    n = keys_mod.revoke_key(db, prefix)
    if n == 0:
        fail(f"no active key with prefix {prefix!r}")
    console.print(f"revoked {n} key(s)")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(sites_app, name="sites")
    app.add_typer(keys_app, name="keys")
