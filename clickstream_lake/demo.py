"""``make demo``: the product's front door on the embedded default.

Initialises the data directory, registers demo sites with tracking hostnames and keys,
and (as capabilities land) starts ``clickstream serve``, drives simulated traffic through
real HTTP and prints where to look.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir

console = Console()

DEMO_SITES = [
    # site id, domain, tracking hostname, plan
    ("site_shop", "shop.example", "t.shop.example", "enterprise"),
    ("site_docs", "docs.example", "t.docs.example", "pro"),
    ("site_blog", "blog.example", "t.blog.example", "free"),
]


def setup(data: DataDir) -> dict[str, dict[str, str]]:
    """Init + demo sites + one read and one write key per site (kept in demo-keys.json)."""
    data.ensure()
    db = ControlDB(data.control_db)
    applied = db.migrate()
    if applied:
        console.print(f"initialised {data.path} ({len(applied)} migrations)")
    keys_file = data.path / "demo-keys.json"
    keys: dict[str, dict[str, str]] = json.loads(keys_file.read_text()) if keys_file.exists() else {}
    for site_id, domain, host, plan in DEMO_SITES:
        if sites_mod.get_site(db, site_id) is None:
            sites_mod.add_site(db, site_id, domain=domain, hostnames=[host], plan=plan)
            console.print(f"registered [bold]{site_id}[/] on tracking hostname {host}")
        if site_id not in keys:
            read, _ = keys_mod.create_key(db, site_id, name="demo read", permissions="read")
            write, _ = keys_mod.create_key(db, site_id, name="demo write", permissions="write")
            keys[site_id] = {"read": read, "write": write}
    keys_file.write_text(json.dumps(keys, indent=2))
    return keys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="./data")
    args = ap.parse_args(argv)
    data = DataDir.resolve(Path(args.data))
    keys = setup(data)
    console.print(f"demo keys in {data.path / 'demo-keys.json'}")
    for site_id, k in keys.items():
        console.print(f"  {site_id}: read key {k['read'][:12]}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
