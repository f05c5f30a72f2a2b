"""20 concurrent dashboard sessions on one site: the lake sees one query per tile per TTL.

Real parts: ``clickstream serve`` with the dashboard mounted, 20 Chromium pages (20 marimo
kernels), the query layer's own prometheus counter of queries that ran on the lake.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control.config import set_config
from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir
from tests.conftest import ARTIFACTS, start_server
from tests.lakefill import fill_lake, sim_config
from tests.test_dashboard_mount import CHROMIUM, CHROMIUM_ARGS, error_outputs, wait_for_dashboard

SESSIONS = 20
# the queries one dashboard session runs: data range, filter options, KPIs, traffic, channels,
# campaigns, top pages, entry/exit pages, score averages, score distributions, bot share,
# frustration hotspots, funnel, live feed
TILE_QUERIES = 14


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium (scripts/ensure_chromium.sh)")
def test_twenty_sessions_one_lake_query_per_tile(tmp_path):
    from playwright.sync_api import sync_playwright

    data = DataDir.resolve(tmp_path / "data").ensure()
    fill_lake(data, sim_config(["site_a", "site_b"], days=3, seed=3))
    db = ControlDB(data.control_db)
    set_config(db, "site_a", {"cache_ttl_s": 600})  # the whole test fits in one TTL
    key, _ = keys_mod.create_key(db, "site_a", name="viewer", permissions="read")
    db.close()
    server = start_server(data)
    try:
        before = httpx.get(server.url + "/metrics").text

        def asked_since_start() -> float:
            now = httpx.get(server.url + "/metrics").text
            return sum(_metric(now, "clickstream_query_requests_total", outcome=o)
                       - _metric(before, "clickstream_query_requests_total", outcome=o) for o in ("hit", "miss"))

        with sync_playwright() as p:
            # background pages must not be throttled: every one is a live viewer
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                *CHROMIUM_ARGS, "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                "--disable-backgrounding-occluded-windows"])
            try:
                ctx = browser.new_context(viewport={"width": 1200, "height": 900})
                pages = [ctx.new_page() for _ in range(SESSIONS)]
                t0 = time.monotonic()
                for page in pages:  # all sessions start together
                    page.goto(server.url + f"/dashboards/?token={key}", wait_until="commit")
                for page in pages:
                    page.wait_for_selector("#App[data-connection-state='OPEN']", timeout=300_000)
                # every kernel has run every tile query (counted by the query layer itself)
                deadline = time.monotonic() + 500
                while asked_since_start() < SESSIONS * TILE_QUERIES and time.monotonic() < deadline:
                    time.sleep(2)
                ready_s = time.monotonic() - t0
                # charts are drawn when they scroll into view: look at the first viewer's whole
                # dashboard in the foreground, as the single-viewer test does
                pages[0].bring_to_front()
                pages[0].set_viewport_size({"width": 1500, "height": 2600})
                try:
                    wait_for_dashboard(pages[0], timeout_s=120)
                except TimeoutError:
                    ARTIFACTS.mkdir(exist_ok=True)
                    pages[0].screenshot(path=str(ARTIFACTS / "dashboard_cache_timeout.png"), full_page=True)
                    print("error outputs:", error_outputs(pages[0]))
                    raise
                assert error_outputs(pages[0]) == []
            finally:
                browser.close()
        after = httpx.get(server.url + "/metrics").text
    finally:
        server.kill(15)
    lake = (_metric(after, "clickstream_query_lake_executions_total", site="site_a")
            - _metric(before, "clickstream_query_lake_executions_total", site="site_a"))
    asked = sum(_metric(after, "clickstream_query_requests_total", outcome=o)
                - _metric(before, "clickstream_query_requests_total", outcome=o) for o in ("hit", "miss"))
    print(f"\n{SESSIONS} sessions ready in {ready_s:.1f}s: {asked:.0f} tile queries asked, {lake:.0f} ran on the lake")
    assert asked >= SESSIONS * TILE_QUERIES  # every session really queried every tile
    assert lake == TILE_QUERIES  # ...and the lake saw each tile once in the TTL
    assert re.search(r'clickstream_query_lake_executions_total\{site="site_b"\}', after) is None
