"""The live-feed tile's page on its own, in headless Chromium, with the network played by
playwright routes: rendering, the site check, the in-page filters, ``missed`` notices,
reconnecting with a fresh token, and the lake fallback when no token can be had.  (The
tile against a real server is ``tests/test_dashboard_mount.py::test_browser_live_feed_follows_the_stream``.)"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from clickstream_lake.dashboards import live_feed
from clickstream_lake.dashboards.metrics import Filters

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
ORIGIN = "http://tile.test"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]


def lake_row(path: str, country: str = "DE") -> dict:
    return {"timestamp": dt.datetime(2026, 1, 10, 12, 0), "event_type": "page_view", "path": path,
            "channel": "Direct", "device_type": "desktop", "country": country, "intent": 12.0,
            "frustration": float("nan"), "bot_probability": 2.0}


def stream_event(site: str, path: str, *, country: str = "FR", bot: float = 3.0, seq: int = 1) -> dict:
    return {"type": "event", "site_id": site, "seq": seq, "sent_ms": 0,
            "event": {"timestamp": 1_795_977_449_460, "site_id": site, "event_type": "click",
                      "url": path + "?utm_source=x", "channel": "Email", "device_type": "mobile",
                      "country": country, "utm_campaign": ""},
            "scores": {"intent": 40.4, "frustration": 71.6, "bot_probability": bot}}


def sse(*messages: dict) -> str:
    return "retry: 3000\n\n" + "".join(f"data: {json.dumps(m)}\n\n" for m in messages)


def open_tile(p, filters: Filters, token_status: int = 200):
    cfg = live_feed.page_config(site_id="site_a", stream_url="/v1/stream.sse", token_url="/dashboards/stream-token",
                                filters=filters, initial_rows=[lake_row("/from-lake")])
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page()
    calls = {"token": 0, "stream": []}
    bodies = [sse({"type": "hello", "site_id": "site_a"},
                  {"type": "batch", "events": [stream_event("site_a", "/one", seq=1),
                                               stream_event("site_b", "/other-site", seq=2),
                                               stream_event("site_a", "/bot", bot=90, seq=3),
                                               stream_event("site_a", "/two", seq=4)]},
                  {"type": "missed", "count": 7})]

    def token(route):
        calls["token"] += 1
        if token_status != 200:
            route.fulfill(status=token_status, json={"error": "no"})
        else:
            route.fulfill(json={"token": f"cst_t{calls['token']}", "site_id": "site_a",
                                "expires_ms": 0, "stream_url": "/v1/stream.sse"})

    def stream(route):
        calls["stream"].append(route.request.url)
        body = bodies.pop(0) if bodies else "retry: 3000\n\n"
        route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)

    page.route(ORIGIN + "/tile", lambda r: r.fulfill(content_type="text/html",
                                                     body=live_feed.live_feed_html(cfg)))
    page.route(ORIGIN + "/dashboards/stream-token", token)
    page.route(ORIGIN + "/v1/stream.sse*", stream)
    page.goto(ORIGIN + "/tile")
    return browser, page, calls


def test_tile_renders_its_sites_events_filters_and_reconnects():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, calls = open_tile(p, Filters(since=dt.date(2026, 1, 1), until=dt.date(2026, 1, 10),
                                                    bots="exclude"))
        try:
            page.locator("tr.live").nth(1).wait_for(timeout=10_000)
            paths = page.locator("td.path").all_inner_texts()
            assert paths[:3] == ["/two", "/one", "/from-lake"]  # newest first, lake fill below
            assert "/other-site" not in paths and "/bot" not in paths  # other site; bots excluded
            first = page.locator("tbody tr").first.locator("td").all_inner_texts()
            assert first[1:9] == ["click", "/two", "FR", "mobile", "Email", "40", "72", "3"]
            # the answered stream ended: the tile reconnects with a fresh token
            page.wait_for_function("document.getElementById('status').textContent.includes('missed 7')")
            page.wait_for_timeout(2500)
            assert calls["token"] >= 2 and len(calls["stream"]) >= 2
            assert "token=cst_t1" in calls["stream"][0] and "batch=1" in calls["stream"][0]
            assert "token=cst_t2" in calls["stream"][1]
            assert page.locator("tr.live").count() == 2  # kept across the reconnect
        finally:
            browser.close()


def test_tile_falls_back_to_the_lake_rows_without_a_token():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, calls = open_tile(p, Filters(since=dt.date(2026, 1, 1), until=dt.date(2026, 1, 10)),
                                         token_status=401)
        try:
            page.wait_for_selector("#status[data-state='unavailable']", timeout=10_000)
            assert "showing the latest events from the lake" in page.locator("#status").inner_text()
            assert page.locator("td.path").all_inner_texts() == ["/from-lake"]
            assert page.locator("tbody tr").first.locator("td").all_inner_texts()[7] == "–"  # NaN score
            assert calls["stream"] == []
        finally:
            browser.close()
