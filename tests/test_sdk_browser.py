"""The SDK in a real browser: headless Chromium opens a shop page on the site's domain
(alpha.test) that loads /sdk.js from the site's tracking hostname (t.alpha.test), both mapped
to loopback ports with --host-resolver-rules so the worker sees real Host and Origin headers.

The visit navigates (including a pushState navigation), clicks (including a dead click and
a rage-click burst), scrolls, submits a form, throws an error, fires a custom event and a
purchase, and identifies with an e-mail address.  Then: the events are in site_a's lake with
the right types and fields (read with DuckDB through sql/views/events.sql), the address never
left the browser in clear, and the page's onScores callback received scores.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

import duckdb
import pytest

from ingest_worker.sdk_demo import DEMO_PAGE, PageServer, demo_page_substitutions, find_chromium, launch_args

from .conftest import ARTIFACTS

WORKER_READY = all(importlib.util.find_spec(m) for m in ("ingest_worker.collect", "ingest_worker.scoring"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="no Chromium at /usr/bin/chromium: run scripts/ensure_chromium.sh"),
]
needs_worker = pytest.mark.skipif(
    not WORKER_READY, reason="POST /v1/collect (ingest_worker.collect + .scoring) is not on this branch")

STATIC = Path(__file__).resolve().parents[1] / "ingest_worker" / "static"
VIEWS = Path(__file__).parent.parent / "sql" / "views" / "events.sql"
EMAIL = "  Jane.Doe@Example.COM "
HEM = hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()


def lake_events(lake: Path, site_id: str) -> list[dict]:
    files = sorted((lake / "events" / f"site_id={site_id}").rglob("*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    try:
        paths = ", ".join(f"'{f}'" for f in files)
        con.execute(f"CREATE VIEW clickstream_events AS SELECT * FROM read_parquet([{paths}], union_by_name=true)")
        con.execute(VIEWS.read_text())
        rel = con.sql("SELECT * FROM events ORDER BY timestamp")
        cols = rel.columns
        return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]
    finally:
        con.close()


def wait_for_lake(lake: Path, site_id: str, predicate, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = lake_events(lake, site_id)
        if predicate(rows):
            return rows
        time.sleep(0.5)
    return rows


@pytest.fixture
def pages(tenants):
    # the product's own demo shop page; every path without a file (/shop.html, /products/42) is it
    subs = demo_page_substitutions(f"http://{tenants['site_a'].hostname}", shop_name="Alpha shop", flush_ms=300)
    with PageServer(STATIC, subs, fallback=DEMO_PAGE) as s:
        yield s


@pytest.fixture
def browser_factory():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = []

        def launch(args):
            b = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=args)
            launched.append(b)
            return b

        yield launch
        for b in launched:
            b.close()


@needs_worker
def test_sdk_in_a_real_browser_lands_events_and_hands_back_scores(server, tenants, pages, browser_factory):
    site = tenants["site_a"]
    browser = browser_factory(launch_args({site.hostname: server.port, site.domain: pages.port}))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sent: list[str] = []  # every body the page sent anywhere
    collect_requests = []

    def on_request(req):
        body = req.post_data or ""
        sent.append(req.url + "\n" + body)
        if "/v1/collect" in req.url:
            collect_requests.append(req)

    page.on("request", on_request)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

    page.goto(f"http://{site.domain}/shop.html?utm_source=newsletter&utm_campaign=spring")
    page.wait_for_function("window.clickstream && window.clickstream.version")
    assert page.evaluate("clickstream.endpoint") == f"http://{site.hostname}/v1/collect"

    page.click("#buy")  # changes the DOM: a live click
    page.wait_for_timeout(1200)
    page.click("#broken")  # changes nothing: a dead click
    page.wait_for_timeout(1300)
    box = page.locator("#broken").bounding_box()
    for i in range(4):  # a rage burst: 4 clicks within ~300 ms, a few px apart
        page.mouse.click(box["x"] + 20 + i * 3, box["y"] + 10)
        page.wait_for_timeout(60)
    page.wait_for_timeout(1300)

    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_timeout(300)
    page.fill("#email", EMAIL.strip())  # in the form, but field values are never sent
    page.click("#subscribe")
    page.evaluate("setTimeout(() => { throw new Error('checkout exploded') })")
    page.evaluate("clickstream.track('video_play', {video: 'intro', seconds: 3, meta: {hd: true}})")
    hem = page.evaluate("(e) => clickstream.identify(e)", EMAIL)
    assert hem == HEM
    page.click("#spa-link")  # history.pushState: a page view without a page load
    page.wait_for_timeout(300)
    page.evaluate("clickstream.track('purchase', {value: 49.5, currency: 'EUR', order: 'A-17'})")
    page.wait_for_timeout(1300)
    page.evaluate("clickstream.flush()")
    page.wait_for_function("window.__scores.length >= 2", timeout=15_000)

    scores = page.evaluate("window.__scores")
    events_fired = page.evaluate("window.__scoreEvents")
    stored = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    cookies = {c["name"]: c for c in context.cookies()}
    page.goto("about:blank")  # pagehide: the engagement event leaves by beacon
    page.wait_for_timeout(500)
    context.close()

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "sdk_browser_requests.txt").write_text("\n\n".join(sent))
    (ARTIFACTS / "sdk_browser_console.txt").write_text("\n".join(console))

    # -- the page got scores back, through the callback and the DOM event alike
    last = scores[-1]
    assert {"visitor_id", "session_id", "scores", "accepted", "rejected"} <= set(last)
    assert last["visitor_id"] and last["session_id"] and last["accepted"] >= 1
    assert isinstance(last["scores"], dict) and last["scores"], last
    assert all(isinstance(v, int | float) for v in last["scores"].values())
    assert len(events_fired) == len(scores)

    # -- the SDK stored nothing itself; the worker's first-party cookie is HttpOnly, Secure, on the site's domain
    assert stored == [0, 0, ""]
    vid = cookies["_cs_vid"]
    assert vid["httpOnly"] and vid["secure"] and vid["sameSite"] == "Lax" and vid["domain"] == ".alpha.test"
    assert vid["value"] == last["visitor_id"]

    # -- the e-mail never left the browser in clear; its hash did
    everything = "\n".join(sent).lower()
    for clear in (EMAIL.strip().lower(), "jane.doe%40example.com", "jane.doe"):
        assert clear not in everything, f"{clear!r} left the browser"
    assert HEM in everything

    # -- the batches went to the tracking host as JSON event batches
    assert collect_requests and all(r.url == f"http://{site.hostname}/v1/collect" for r in collect_requests)
    batch_ids = [e["event_id"] for r in collect_requests for e in json.loads(r.post_data)["events"]]

    # -- the events are in site_a's lake with the right types and fields
    def complete(rows):
        types = {r["event_type"] for r in rows}
        return {"page_view", "click", "scroll", "custom", "identify", "purchase", "engagement",
                "form_submit", "error"} <= types
    rows = wait_for_lake(server.data.lake, "site_a", complete)
    types = {r["event_type"] for r in rows}
    assert complete(rows), f"types in the lake: {sorted(types)}\nserver log:\n{server.log()[-3000:]}"
    assert not lake_events(server.data.lake, "site_b")
    assert all(r["site_id"] == "site_a" for r in rows)
    assert len({r["event_id"] for r in rows}) == len(rows), "no event landed twice"
    assert set(batch_ids) <= {r["event_id"] for r in rows} | set(), "every event sent (by fetch) landed"

    by_type: dict[str, list[dict]] = {}
    for r in rows:
        by_type.setdefault(r["event_type"], []).append(r)
    props = {id(r): json.loads(r["props"]) if r["props"] else {} for r in rows}

    views = by_type["page_view"]
    assert [v["path"] for v in views][:2] == ["/shop.html", "/products/42"]
    assert views[0]["utm_source"] == "newsletter" and views[0]["utm_campaign"] == "spring"
    assert views[1]["title"] == "Product 42 - Alpha shop"
    assert views[1]["referrer"].endswith("/shop.html?utm_source=newsletter&utm_campaign=spring")
    assert views[0]["language"] and views[0]["timezone"] and views[0]["viewport"] == "1280x800"

    clicks = by_type["click"]
    assert all(c["x"] is not None and c["y"] is not None and c["target"] for c in clicks)
    buy = [c for c in clicks if c["target"] == "button#buy"]
    assert len(buy) == 1 and not props[id(buy[0])].get("dead") and not props[id(buy[0])].get("rage")
    broken = [c for c in clicks if c["target"] == "button#broken"]
    assert len(broken) == 5
    rage = [c for c in broken if props[id(c)].get("rage")]
    assert len(rage) == 4, [props[id(c)] for c in broken]
    assert max(c["x"] for c in rage) - min(c["x"] for c in rage) <= 30
    assert all(props[id(c)].get("dead") for c in broken), "nothing happened after any click on #broken"
    assert any(c["target"].startswith("a#spa-link") for c in clicks)

    scroll = by_type["scroll"]
    assert max(s["scroll_depth"] for s in scroll) == 100
    engagement = by_type["engagement"]
    assert engagement and all(e["time_on_page_ms"] is not None for e in engagement)
    assert max(e["time_on_page_ms"] for e in engagement) > 1000, "visible + focused time was counted"

    custom = by_type["custom"]
    video = [c for c in custom if c["event_name"] == "video_play"]
    assert video and props[id(video[0])] == {"video": "intro", "seconds": 3, "meta": '{"hd":true}'}
    purchase = by_type["purchase"][0]
    assert purchase["value"] == 49.5 and purchase["currency"] == "EUR" and purchase["path"] == "/products/42"
    identify = by_type["identify"][0]
    assert identify["hem"] == HEM
    assert by_type["purchase"][0]["hem"] == HEM, "events after identify carry the hash"
    form = by_type["form_submit"][0]
    assert form["event_name"] == "newsletter" and form["target"] == "form#newsletter"
    assert props[id(form)] == {"action": "/subscribe", "method": "post"}
    error = by_type["error"][0]
    assert "checkout exploded" in error["event_name"]

    # the cookie travelled with the SDK's requests (credentials: "include") after the first answer
    assert all(r["cookie"] == vid["value"] for r in rows[1:] if r["event_type"] != "page_view" or r["path"] != "/shop.html")
    # one visitor throughout (the SDK echoes the visitor id the worker gave it, in memory)
    assert len({r["visitor_id"] for r in rows}) == 1


# ---- privacy settings, retries and the demo hook ------------------------------------------------

class Visit:
    """A page in its own browser context (a new visitor) with every request body recorded."""

    def __init__(self, browser, url: str, init_script: str | None = None):
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.collect: list = []  # each request to /v1/collect
        self.page.on("request", self._record)
        self.page.goto(url)
        self.page.wait_for_function("window.clickstream && window.clickstream.version")

    def _record(self, req) -> None:
        if "/v1/collect" in req.url:
            self.collect.append(req)

    def events(self) -> list[dict]:
        return [e for r in self.collect for e in json.loads(r.post_data)["events"]]

    def cookie_headers(self) -> list[str]:
        """The Cookie header each collect request went out with ('' without one)."""
        return [r.all_headers().get("cookie", "") for r in self.collect]

    def cookie_names(self) -> set[str]:
        return {c["name"] for c in self.context.cookies()}

    def scores_count(self) -> int:
        return self.page.evaluate("window.__scores.length")


def _set_config(data_dir, site_id: str, **updates) -> None:
    from clickstream_lake.control import config as config_mod
    from clickstream_lake.control.db import ControlDB

    db = ControlDB(data_dir.control_db)
    config_mod.set_config(db, site_id, updates)
    db.close()


@needs_worker
def test_consent_required_nothing_is_kept_and_no_hash_is_sent_before_consent(
        server_factory, tenants, data_dir, pages, browser_factory):
    site = tenants["site_a"]
    _set_config(data_dir, "site_a", consent_required=True)  # written into /sdk.js for t.alpha.test
    srv = server_factory()
    browser = browser_factory(launch_args({site.hostname: srv.port, site.domain: pages.port}))
    v = Visit(browser, f"http://{site.domain}/shop.html")
    v.page.wait_for_function("window.__scores.length >= 1")
    hem = v.page.evaluate("(e) => clickstream.identify(e)", EMAIL)
    v.page.click("#buy")
    v.page.wait_for_timeout(1300)
    v.page.evaluate("clickstream.flush()")
    v.page.wait_for_function("window.__scores.length >= 2")
    before = v.events()
    assert {e["type"] for e in before} == {"page_view", "click"}, "identify waits for consent"
    assert all(e["consent"] is False and "hem" not in e for e in before)
    assert v.cookie_headers() == [""] * len(v.collect), "credentials are omitted before consent"
    assert "_cs_vid" not in v.cookie_names(), "no cookie is kept before consent"
    assert v.page.evaluate("[localStorage.length, sessionStorage.length]") == [0, 0]

    v.page.evaluate("clickstream.consent(true)")  # the held-back identify goes out now
    v.page.wait_for_function("window.__scores.length >= 3")
    after = v.events()[len(before):]
    assert [e["type"] for e in after] == ["identify"] and after[0]["hem"] == hem == HEM
    assert after[0]["consent"] is True
    assert "_cs_vid" in v.cookie_names(), "after consent the worker's cookie is kept"
    v.page.evaluate("clickstream.track('after_consent')")
    v.page.wait_for_function("window.__scores.length >= 4")
    assert v.cookie_headers()[-1].startswith("_cs_vid="), "and sent with the next batch"
    v.context.close()

    rows = wait_for_lake(srv.data.lake, "site_a", lambda rs: {"identify", "custom"} <= {r["event_type"] for r in rs})
    consent = {r["event_type"]: r["consent"] for r in rows if r["event_type"] != "engagement"}
    assert consent == {"page_view": "0", "click": "0", "identify": "1", "custom": "1"}, consent
    assert all((r["hem"] == HEM) == (r["consent"] == "1") for r in rows), "only events after consent carry the hash"


@needs_worker
def test_global_privacy_control_is_respected_when_the_site_says_so(
        server_factory, tenants, data_dir, pages, browser_factory):
    site = tenants["site_a"]
    _set_config(data_dir, "site_a", respect_dnt=True)
    srv = server_factory()
    browser = browser_factory(launch_args({site.hostname: srv.port, site.domain: pages.port}))
    gpc = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    private = Visit(browser, f"http://{site.domain}/shop.html", init_script=gpc)
    normal = Visit(browser, f"http://{site.domain}/shop.html")
    for v in (private, normal):
        v.page.click("#buy")
        v.page.evaluate("clickstream.track('seen', {})")
    normal.page.wait_for_function("window.__scores.length >= 1")
    private.page.wait_for_timeout(1500)
    assert private.page.evaluate("clickstream.disabled") is True
    assert private.collect == [], "a GPC visitor sends nothing"
    assert normal.page.evaluate("clickstream.disabled") is False and normal.collect


@needs_worker
@pytest.mark.slow
def test_events_are_retried_with_the_same_event_id_while_the_worker_is_down(
        server_factory, tenants, pages, browser_factory):
    site = tenants["site_a"]
    srv = server_factory()
    browser = browser_factory(launch_args({site.hostname: srv.port, site.domain: pages.port}))
    v = Visit(browser, f"http://{site.domain}/shop.html")
    v.page.wait_for_function("window.__scores.length >= 1")
    srv.kill()  # SIGKILL: the next sends fail at the network level
    v.page.evaluate("clickstream.track('while_down', {n: 1})")
    v.page.wait_for_timeout(1500)
    sent_down = len(v.collect)
    restarted = server_factory(port=srv.port)
    v.page.wait_for_function("window.__scores.length >= 2", timeout=30_000)
    tries = [e for e in v.events() if e.get("name") == "while_down"]
    assert len(tries) >= 2 and len(v.collect) > sent_down
    assert len({e["event_id"] for e in tries}) == 1, "a retry reuses the event_id"
    event_id = tries[0]["event_id"]
    rows = wait_for_lake(restarted.data.lake, "site_a", lambda rs: any(r["event_id"] == event_id for r in rs))
    assert [r["event_id"] for r in rows].count(event_id) == 1


@needs_worker
@pytest.mark.slow
def test_demo_hook_drives_visits_through_a_real_browser(server, tenants):
    from ingest_worker.sdk_demo import drive_browser_visits

    messages: list[str] = []
    done = drive_browser_visits(server.url, tenants["site_a"].hostname, 2, log=messages.append)
    assert done == 2, messages
    rows = wait_for_lake(server.data.lake, "site_a",
                         lambda rs: sum(r["event_name"] == "demo_visit" for r in rs) >= 2)
    visits = [r for r in rows if r["event_name"] == "demo_visit"]
    assert len(visits) == 2 and len({r["visitor_id"] for r in visits}) == 2, "each visit is a new visitor"
    assert {"page_view", "click", "scroll", "custom"} <= {r["event_type"] for r in rows}
    assert any("got scores" in m for m in messages)


def test_engagement_counts_only_visible_and_focused_time(server, tenants, pages, browser_factory):
    """Headless pages are always visible and focused, so the page is told otherwise: focus
    moves away (hasFocus false + blur), then the tab is hidden (visibilityState + event)."""
    site = tenants["site_a"]
    browser = browser_factory(launch_args({site.hostname: server.port, site.domain: pages.port}))
    v = Visit(browser, f"http://{site.domain}/shop.html")
    v.page.wait_for_timeout(800)
    v.page.evaluate("""() => {
        window.__hasFocus = Document.prototype.hasFocus;
        Document.prototype.hasFocus = () => false;
        window.dispatchEvent(new Event('blur'));
    }""")
    v.page.wait_for_timeout(1500)  # not focused: not counted
    v.page.evaluate("""() => {
        Document.prototype.hasFocus = window.__hasFocus;
        window.dispatchEvent(new Event('focus'));
    }""")
    v.page.wait_for_timeout(500)
    v.page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {get: () => 'hidden', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    v.page.wait_for_timeout(1500)  # hidden: not counted
    v.page.evaluate("""() => {
        delete document.visibilityState;
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    v.page.wait_for_timeout(500)
    wall_ms = v.page.evaluate("performance.now()")
    v.page.click("#spa-link")  # leaving the page by pushState: its engagement event goes out
    v.page.evaluate("clickstream.flush()")
    v.page.wait_for_timeout(500)
    engagement = [e for e in v.events() if e["type"] == "engagement"]
    assert len(engagement) == 2, engagement  # on hide, then on leaving by SPA navigation
    at_hide, at_leave = (e["time_on_page_ms"] for e in engagement)
    assert all(e["url"].endswith("/shop.html") for e in engagement)
    assert 1200 <= at_hide <= 1300 + 500 + 800, at_hide  # ~800 before blur + ~500 after focus
    assert at_leave - at_hide >= 400, "visible again: counted again"
    assert at_leave <= wall_ms - 2 * 1400, (at_leave, wall_ms)
    v.context.close()


@needs_worker
def test_on_plain_http_the_sdk_tracks_but_refuses_to_identify(server, tenants, pages, browser_factory):
    """Without the secure-origin flag the mapped http origins are not secure contexts: the
    worker's Secure cookie is dropped by Chromium and crypto.subtle is missing; the SDK still
    tracks, and identify() rejects instead of ever sending the address."""
    site = tenants["site_a"]
    browser = browser_factory(launch_args({site.hostname: server.port, site.domain: pages.port},
                                          secure_origins=False))
    v = Visit(browser, f"http://{site.domain}/shop.html")
    v.page.wait_for_function("window.__scores.length >= 1")
    assert v.page.evaluate("isSecureContext") is False
    error = v.page.evaluate("(e) => clickstream.identify(e).then(() => '', (err) => err.message)", EMAIL)
    assert "secure" in error
    v.page.evaluate("clickstream.track('still_tracking')")
    v.page.wait_for_function("window.__scores.length >= 2")
    assert "_cs_vid" not in v.cookie_names(), "Chromium drops a Secure cookie from a plain-http origin"
    bodies = "\n".join(r.post_data for r in v.collect).lower()
    assert "jane.doe" not in bodies and '"identify"' not in bodies
    v.context.close()
