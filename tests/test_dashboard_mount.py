"""``/dashboards/`` inside ``clickstream serve``: the auth guard (HTTP and websocket), and a
real browser loading the dashboard with a valid key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir
from tests.conftest import ARTIFACTS, Tenant, start_server
from tests.lakefill import fill_lake, sim_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]


@pytest.fixture(scope="module")
def dash_env(tmp_path_factory):
    """One served, simulator-filled data dir for the module (a server start costs seconds)."""
    data = DataDir.resolve(tmp_path_factory.mktemp("dash") / "data").ensure()
    fill_lake(data, sim_config(["site_a", "site_b"], days=3, seed=9))
    db = ControlDB(data.control_db)
    tenants = {}
    for sid in ("site_a", "site_b"):
        host = sid.replace("_", "-")  # the tracking hostname tests/lakefill.py registered
        t = Tenant(sid, f"t.{host}.example", f"{host}.example")
        t.keys["read"], _ = keys_mod.create_key(db, sid, name="read key", permissions="read")
        tenants[sid] = t
    db.close()
    server = start_server(data)
    yield server, tenants
    server.kill(15)


@pytest.fixture
def dash_server(dash_env):
    return dash_env[0]


@pytest.fixture
def tenants(dash_env):
    return dash_env[1]


def test_page_needs_a_key(dash_server, tenants):
    url = dash_server.url + "/dashboards/"
    r = httpx.get(url)
    assert r.status_code == 401 and r.json()["error"] == "an API key is required"
    r = httpx.get(url, headers={"Accept": "text/html"})
    assert r.status_code == 401 and 'id="login"' in r.text and "csk_" in r.text
    r = httpx.get(url, params={"token": "csk_not-a-key"})
    assert r.status_code == 401 and "invalid" in r.json()["error"]
    r = httpx.get(url, headers={"Cookie": "clickstream_dash=csk_forged"})
    assert r.status_code == 401
    # nothing behind the mount leaks without a key (assets, API, kernel endpoints)
    for path in ("/dashboards/api/status", "/dashboards/api/kernel/instantiate", "/dashboards/favicon.ico"):
        assert httpx.get(dash_server.url + path).status_code == 401, path


def test_token_in_url_becomes_a_cookie_and_a_clean_url(dash_server, tenants):
    key = tenants["site_a"].keys["read"]
    r = httpx.get(dash_server.url + "/dashboards/", params={"token": key, "x": "1"})
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboards/?x=1"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/dashboards" in cookie and "SameSite=Lax" in cookie
    with httpx.Client(base_url=dash_server.url) as c:
        c.get("/dashboards/", params={"token": key})
        page = c.get("/dashboards/")
        assert page.status_code == 200 and "marimo" in page.text.lower()
    assert httpx.get(dash_server.url + "/dashboards/",
                     headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_login_form(dash_server, tenants):
    with httpx.Client(base_url=dash_server.url) as c:
        bad = c.post("/dashboards/login", data={"key": "csk_wrong"})
        assert bad.status_code == 401 and "unknown or revoked" in bad.text
        ok = c.post("/dashboards/login", data={"key": tenants["site_b"].keys["read"]})
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboards/"
        assert c.get("/dashboards/").status_code == 200
        assert c.get("/dashboards/logout").status_code == 303
        assert c.get("/dashboards/").status_code == 401
        assert c.post("/dashboards/login", content=b"x" * 20_000,
                      headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
        assert c.post("/dashboards/login", content=b"{", headers={"content-type": "application/json"}).status_code == 400


def _ws_url(server, session="s-test") -> str:
    return server.url.replace("http://", "ws://") + f"/dashboards/ws?session_id={session}"


def test_websocket_is_refused_without_a_key(dash_server, tenants):
    async def attempt(headers):
        async with websockets.connect(_ws_url(dash_server), additional_headers=headers, open_timeout=10) as ws:
            return ws

    for headers in ({}, {"Cookie": "clickstream_dash=csk_forged"}, {"Authorization": "Bearer nope"}):
        with pytest.raises(InvalidStatus) as e:
            asyncio.run(attempt(headers))
        assert e.value.response.status_code == 403


def test_websocket_opens_with_a_key(dash_server, tenants):
    key = tenants["site_a"].keys["read"]

    async def attempt():
        async with websockets.connect(_ws_url(dash_server, "s-ok"), open_timeout=20,
                                      additional_headers={"Cookie": f"clickstream_dash={key}"}) as ws:
            msg = await asyncio.wait_for(ws.recv(), timeout=30)
            return msg

    first = asyncio.run(attempt())
    assert first  # marimo's kernel spoke: the handshake got past the guard


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_for_dashboard(page, timeout_s: float = 150.0, min_charts: int = 6) -> None:
    """Kernel connected, every cell done, the charts drawn (locators pierce marimo's shadow DOM)."""
    page.wait_for_selector("#App[data-connection-state='OPEN']", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.locator(".marimo-output-loading").count() == 0 and page.locator(".vega-embed").count() >= min_charts:
            return
        page.wait_for_timeout(500)
    raise TimeoutError(f"dashboard not ready in {timeout_s}s: {page.locator('.vega-embed').count()} charts, "
                       f"{page.locator('.marimo-output-loading').count()} cells loading")


def error_outputs(page) -> list[str]:
    sel = ".marimo-error, [data-testid='marimo-error'], .marimo-output-stderr, .output-error"
    loc = page.locator(sel)
    return [loc.nth(i).inner_text()[:500] for i in range(loc.count())]


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium (scripts/ensure_chromium.sh)")
def test_browser_loads_the_dashboard(dash_server, tenants):
    from playwright.sync_api import sync_playwright

    key = tenants["site_a"].keys["read"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2600})
            page.goto(dash_server.url + f"/dashboards/?token={key}")
            assert "token=" not in page.url  # the key left the address bar
            try:
                wait_for_dashboard(page)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "dashboard-timeout.png"), full_page=True)
                raise
            page.wait_for_timeout(1500)  # let the last charts paint
            assert error_outputs(page) == []
            for label in ("site_a · behavioural analytics", "Visitors", "Revenue", "Conversion rate"):
                assert page.get_by_text(label).count() > 0, label
            assert page.get_by_text("site_b").count() == 0
            shot = ARTIFACTS / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            # without a key: the login page, and no marimo app
            anon = browser.new_page()
            r = anon.goto(dash_server.url + "/dashboards/")
            assert r.status == 401
            assert anon.query_selector("#login") is not None and anon.query_selector("#App") is None
        finally:
            browser.close()


def test_stream_token_route_gives_a_token_for_the_viewers_own_site(dash_server, tenants):
    key_a = tenants["site_a"].keys["read"]
    assert httpx.get(dash_server.url + "/dashboards/stream-token").status_code == 401
    assert httpx.post(dash_server.url + "/dashboards/stream-token",
                      headers={"Authorization": f"Bearer {key_a}"}).status_code == 405
    with httpx.Client(base_url=dash_server.url) as c:
        c.get("/dashboards/", params={"token": key_a})  # the cookie, as a browser gets it
        r = c.get("/dashboards/stream-token")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    grant = r.json()
    assert grant["site_id"] == "site_a" and grant["token"].startswith("cst_")
    assert grant["stream_url"] == "/v1/stream.sse" and grant["expires_ms"] > time.time() * 1000
    sse = dash_server.url + grant["stream_url"]
    # the token opens site_a's stream only: asking for site_b is refused
    refused = httpx.get(sse, params={"token": grant["token"], "site": "site_b"}, timeout=5)
    assert refused.status_code == 403 and refused.json()["reason"] == "wrong_site"
    with httpx.stream("GET", sse, params={"token": grant["token"]}, timeout=10) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        assert next(lines) == "retry: 3000"
        hello = next(line for line in lines if line.startswith("data: "))
        assert '"site_id":"site_a"' in hello.replace(" ", "")
    # the token reads the stream and nothing else: not the SQL API
    q = httpx.post(dash_server.url + "/v1/sql", content="SELECT 1",
                   headers={"Authorization": f"Bearer {grant['token']}"}, timeout=10)
    assert q.status_code == 401
    assert httpx.get(dash_server.url + "/dashboards/",
                     headers={"Authorization": f"Bearer {grant['token']}"}).status_code == 401


UA = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"


def _collect(server, host: str, paths: list[str]) -> None:
    import uuid

    now = int(time.time() * 1000)
    body = {"events": [{"type": "page_view", "url": p, "event_id": uuid.uuid4().hex, "ts": now} for p in paths]}
    r = httpx.post(server.url + "/v1/collect", json=body, headers={"Host": host, "User-Agent": UA}, timeout=15)
    assert r.status_code == 200, r.text


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium (scripts/ensure_chromium.sh)")
def test_browser_live_feed_follows_the_stream(dash_server, tenants):
    """The live-feed tile opens the site's stream in the browser: events posted to
    /v1/collect show up within seconds; the other site's events never do."""
    import uuid

    from playwright.sync_api import sync_playwright

    key = tenants["site_a"].keys["read"]
    mine = [f"/live-a/{uuid.uuid4().hex[:10]}" for _ in range(3)]
    theirs = [f"/live-b/{uuid.uuid4().hex[:10]}" for _ in range(3)]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2600})
            page.goto(dash_server.url + f"/dashboards/?token={key}")
            wait_for_dashboard(page)
            feed = page.frame_locator("iframe").first
            try:
                feed.locator("#status[data-state='connected']").wait_for(timeout=30_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "live-feed-timeout.png"), full_page=True)
                raise
            lake_rows = feed.locator("tr.lake").count()
            assert lake_rows > 0  # the initial fill from the query layer
            _collect(dash_server, tenants["site_b"].hostname, theirs)
            _collect(dash_server, tenants["site_a"].hostname, mine)
            started = time.monotonic()
            for path in mine:
                feed.locator("tr.live td.path", has_text=path).wait_for(timeout=10_000)
            took = time.monotonic() - started
            print(f"live feed: {len(mine)} collected events shown in the browser after {took:.2f} s")
            _collect(dash_server, tenants["site_b"].hostname, theirs[:1])
            page.wait_for_timeout(1000)  # give the other site's events every chance to (wrongly) arrive
            text = feed.locator("#feed").inner_text()
            assert all(path in text for path in mine)
            assert not any(path in text for path in theirs)
            assert feed.locator("tr.live").count() == len(mine)
            assert "connected" in feed.locator("#status").inner_text()
            # newest first, the lake rows below them, at most 50 rows
            assert feed.locator("tbody tr").first.get_attribute("class").startswith("live")
            assert feed.locator("tbody tr").count() <= 50
            # a refresh tick re-runs the tiles but leaves the live tile (and its stream) alone
            page.locator("[data-testid='marimo-plugin-refresh-button']").first.click()
            page.wait_for_timeout(1500)
            wait_for_dashboard(page)
            assert feed.locator("tr.live").count() == len(mine)
            page.locator("iframe").first.scroll_into_view_if_needed()
            page.locator("iframe").first.screenshot(path=str(ARTIFACTS / "dashboard-live-feed.png"))
        finally:
            browser.close()
