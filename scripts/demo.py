"""``make demo``: the product's front door on the embedded default.

1. initialise the data directory (SQLite control database, local lake) and register demo
   sites with tracking hostnames and read/write keys;
2. start ``clickstream serve`` (worker, SQL API, live stream, dashboards) on loopback;
3. drive simulated traffic for every site through real HTTP (Host header per site,
   cookies per visitor, batches), with a progress bar;
4. when Chromium is present, drive a few visits through a real page carrying ``/sdk.js``;
5. wait until the events are visible in Parquet, check them against the simulator's
   ground truth through the tenant-safe query layer;
6. print the dashboard URL (with a working key) and example ``clickstream sql``/``curl``
   commands, then keep serving until Ctrl+C (``--no-wait`` stops instead).

It lives outside both packages because it drives the whole product: it may import
``clickstream_lake`` and ``ingest_worker`` alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir

console = Console()

DEMO_SITES = [
    # site id, domain, tracking hostname, plan
    ("site_shop", "shop.example", "t.shop.example", "enterprise"),
    ("site_docs", "docs.example", "t.docs.example", "enterprise"),
    ("site_blog", "blog.example", "t.blog.example", "enterprise"),
]


def setup(data: DataDir) -> dict[str, dict[str, str]]:
    """Init + demo sites + a read and a write key per site (kept in demo-keys.json)."""
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
        known = {k.key_hash for k in keys_mod.list_keys(db, site_id) if k.active}
        if site_id not in keys or keys_mod.hash_key(keys[site_id]["read"]) not in known:
            read, _ = keys_mod.create_key(db, site_id, name="demo read", permissions="read")
            write, _ = keys_mod.create_key(db, site_id, name="demo write", permissions="write")
            keys[site_id] = {"read": read, "write": write}
    keys_file.write_text(json.dumps(keys, indent=2))
    keys_file.chmod(0o600)
    return keys


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_server(data: DataDir, port: int) -> tuple[subprocess.Popen, str]:
    if not _port_free(port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            new = s.getsockname()[1]
        console.print(f"port {port} is busy, using {new}")
        port = new
    log = open(data.path / "serve.log", "ab")  # noqa: SIM115 - lives as long as the server
    cmd = [sys.executable, "-m", "clickstream_lake", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data", str(data.path)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with console.status(f"starting clickstream serve on {url} …"):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"clickstream serve exited ({proc.returncode}); see {data.path / 'serve.log'}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    console.print(f"serving on [bold]{url}[/] (log: {data.path / 'serve.log'})")
                    return proc, url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("clickstream serve did not become healthy within 60 s")


def drive_traffic(url: str, *, days: int, seed: int, visitors: int | None) -> dict:
    from clickstream_lake.simulate import SimConfig, generate, ground_truth, send

    now = int(time.time() * 1000)
    cfg = SimConfig(
        days=days, seed=seed, visitors_per_site=visitors, end_ms=now - now % 3_600_000,
        site_ids=[s[0] for s in DEMO_SITES], hostnames=[s[2] for s in DEMO_SITES],
    )
    events = list(generate(cfg))
    truth = ground_truth(events)
    console.print(f"simulated {len(events):,} events for {len(DEMO_SITES)} sites over {days} days (seed {seed})")
    report = send(events, url, batch=25, concurrency=8, progress=True)
    rep = report.as_dict()
    console.print(f"sent {rep.get('sent', len(events)):,} events: accepted {rep.get('accepted')}, "
                  f"rejected {rep.get('rejected')}, HTTP errors {rep.get('http_errors', 0)} "
                  f"({report.events_per_s:,.0f} events/s)")
    return truth


def browser_visits(url: str) -> None:
    try:
        from ingest_worker.sdk_demo import drive_browser_visits
    except ImportError:
        return
    try:
        n = drive_browser_visits(url, "t.shop.example", 3)
    except Exception as e:  # noqa: BLE001 - the demo goes on without the browser part
        console.print(f"[yellow]browser visits skipped: {e}[/]")
        return
    if n:
        console.print(f"drove {n} visits through a real Chromium page carrying /sdk.js")


def check_lake(data: DataDir, truth: dict, timeout_s: float = 30.0) -> None:
    from clickstream_lake.query import Lake, QueryService

    svc = QueryService(Lake(data.path))
    sites = truth.get("sites", {})
    t = Table("site", "events (lake / sent)", "visitors", "sessions", "purchases", "revenue")
    deadline = time.monotonic() + timeout_s
    rows: dict[str, tuple] = {}
    for site_id, *_ in DEMO_SITES:
        want = sites.get(site_id, {})
        while True:
            res = svc.run_query(
                site_id,
                "SELECT count(*) AS events, count(DISTINCT visitor_id) AS visitors, "
                "count(DISTINCT session_id) AS sessions, count(*) FILTER (WHERE event_type = 'purchase') AS purchases, "
                "coalesce(sum(value) FILTER (WHERE event_type = 'purchase'), 0) AS revenue FROM events",
                use_cache=False,
            )
            got = res.table.to_pylist()[0]
            if got["events"] >= want.get("events", 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        rows[site_id] = got
        t.add_row(site_id, f"{got['events']:,} / {want.get('events', 0):,}", f"{got['visitors']:,}",
                  f"{got['sessions']:,}", f"{got['purchases']:,}", f"{got['revenue']:,.2f}")
    console.print(t)


def print_next_steps(url: str, data: DataDir, keys: dict[str, dict[str, str]]) -> None:
    read = keys["site_shop"]["read"]
    d = shlex.quote(str(data.path))
    console.rule("[bold]clickstream-lake is running")
    console.print(f"Dashboard (site_shop):  [bold link={url}/dashboards/?token={read}]{url}/dashboards/?token={read}[/]")
    console.print(f"Keys for every demo site: {data.path / 'demo-keys.json'}\n")
    console.print("SQL from the shell (the same guard as the API):")
    console.print(f"  .venv/bin/clickstream sql --data {d} --site site_shop \\\n"
                  "    \"SELECT blob5 AS path, SUM(_sample_interval) AS views FROM clickstream_events "
                  "WHERE timestamp > NOW() - INTERVAL '7' DAY GROUP BY path ORDER BY views DESC LIMIT 10\"", soft_wrap=True)
    console.print("\nSQL over HTTP (AE-shaped JSON):")
    console.print(f"  curl -s {url}/v1/sql -H 'Authorization: Bearer {read}' \\\n"
                  "    --data \"SELECT channel, count() AS sessions, round(avg(conversion_prob), 1) AS conv "
                  "FROM sessions GROUP BY channel ORDER BY sessions DESC\"", soft_wrap=True)
    console.print("\nTrack an event (the page gets its scores back):")
    console.print(f"  curl -s {url}/v1/collect -H 'Host: t.shop.example' -H 'Content-Type: application/json' \\\n"
                  "    --data '{\"type\":\"page_view\",\"url\":\"/pricing?utm_source=google&utm_medium=cpc\"}'", soft_wrap=True)
    console.print(f"\nLive stream: websocket {url.replace('http', 'ws')}/v1/stream?token={read}  ·  SDK: {url}/sdk.js"
                  f"  ·  metrics: {url}/metrics")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the clickstream-lake demo on the embedded default.")
    ap.add_argument("--data", default=os.environ.get("CLICKSTREAM_DATA", "./data"))
    ap.add_argument("--port", type=int, default=8787)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--visitors", type=int, default=None, help="human visitors per site (default: simulator's volume)")
    ap.add_argument("--no-browser", action="store_true", help="skip the real-browser visits")
    ap.add_argument("--no-wait", action="store_true", help="stop the server at the end instead of serving")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    data = DataDir.resolve(Path(args.data))
    keys = setup(data)
    proc, url = start_server(data, args.port)
    try:
        truth = drive_traffic(url, days=args.days, seed=args.seed, visitors=args.visitors)
        if not args.no_browser:
            browser_visits(url)
        check_lake(data, truth)
        print_next_steps(url, data, keys)
        console.print(f"\n(demo took {time.monotonic() - t0:.0f} s)")
        if args.no_wait:
            return 0
        console.print("Serving until Ctrl+C …")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        proc.wait()
        return proc.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
