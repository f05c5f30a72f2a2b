"""20 concurrent dashboard sessions on one site: the lake sees one query per tile per TTL.

Real parts: ``clickstream serve`` with the dashboard mounted, 20 marimo sessions (20 kernels
running the whole dashboard notebook), the query layer's own prometheus counter of queries
that ran on the lake.  Each session is opened the way marimo's frontend opens it — the kernel
websocket ``/dashboards/ws?session_id=…`` with the viewer's key — and read until the kernel
reports its run complete.  The rendering of that same dashboard in a real Chromium is
``tests/test_dashboard_mount.py``; twenty renderers on a 2-core machine only measure the
browser, not the cache.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
import websockets

from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control.config import set_config
from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir
from tests.conftest import start_server
from tests.lakefill import fill_lake, sim_config

SESSIONS = 20
# the queries one dashboard session runs: data range, filter options, KPIs, traffic, channels,
# campaigns, top pages, entry/exit pages, score averages, score distributions, bot share,
# frustration hotspots, funnel, live feed
TILE_QUERIES = 14
MARIMO_ERROR = "application/vnd.marimo+error"


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _dashboard_session(ws_url: str, key: str, timeout_s: float) -> dict:
    """Open one marimo session, read until the kernel's run is complete; what it showed."""
    seen = {"completed": False, "errors": [], "outputs": 0, "vega": 0}
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"},
                                  max_size=None, open_timeout=60) as ws:
        deadline = time.monotonic() + timeout_s
        while not seen["completed"] and time.monotonic() < deadline:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic()))
            except TimeoutError:
                break
            if msg.get("op") == "completed-run":
                seen["completed"] = True
            elif msg.get("op") == "cell-op":
                output = (msg.get("data") or {}).get("output") or {}
                if output.get("mimetype") == MARIMO_ERROR:
                    seen["errors"].append(json.dumps(output.get("data"))[:300])
                elif output.get("data"):
                    seen["outputs"] += 1
                    seen["vega"] += "vega" in str(output.get("mimetype")) or "vega" in str(output.get("data"))
    return seen


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_twenty_sessions_one_lake_query_per_tile(tmp_path):
    data = DataDir.resolve(tmp_path / "data").ensure()
    fill_lake(data, sim_config(["site_a", "site_b"], days=3, seed=3))
    db = ControlDB(data.control_db)
    set_config(db, "site_a", {"cache_ttl_s": 600})  # the whole test fits in one TTL
    key, _ = keys_mod.create_key(db, "site_a", name="viewer", permissions="read")
    db.close()
    server = start_server(data)
    try:
        before = httpx.get(server.url + "/metrics").text
        ws_base = server.url.replace("http://", "ws://") + "/dashboards/ws?session_id="

        async def all_sessions():  # all sessions start together
            return await asyncio.gather(*(_dashboard_session(ws_base + f"cache-{i}", key, 400)
                                          for i in range(SESSIONS)))

        t0 = time.monotonic()
        sessions = asyncio.run(all_sessions())
        ready_s = time.monotonic() - t0
        after = httpx.get(server.url + "/metrics").text
    finally:
        server.kill(15)
    lake = (_metric(after, "clickstream_query_lake_executions_total", site="site_a")
            - _metric(before, "clickstream_query_lake_executions_total", site="site_a"))
    asked = sum(_metric(after, "clickstream_query_requests_total", outcome=o)
                - _metric(before, "clickstream_query_requests_total", outcome=o) for o in ("hit", "miss"))
    print(f"\n{SESSIONS} sessions ran the dashboard in {ready_s:.1f}s: {asked:.0f} tile queries asked, "
          f"{lake:.0f} ran on the lake")
    print("first session:", {k: v for k, v in sessions[0].items() if k != "errors"})
    for s in sessions:  # every session ran the whole dashboard, charts included, without an error
        assert s["completed"] and s["errors"] == [], s
        assert s["vega"] >= 6, s
    assert asked >= SESSIONS * TILE_QUERIES  # every session really queried every tile
    assert lake == TILE_QUERIES  # ...and the lake saw each tile once in the TTL
    assert re.search(r'clickstream_query_lake_executions_total\{site="site_b"\}', after) is None
