"""The traffic simulator: determinism, believable behaviour, ground truth, and sending to a
real HTTP server on loopback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from clickstream_lake.cli import app
from clickstream_lake.simulate import SimConfig, SimEvent, generate, ground_truth, send
from clickstream_lake.simulate.model import parse_end
from ingest_worker.events import TrackedEvent
from ingest_worker.normalize import parse_event, request_info
from tests.conftest import free_port

END = "2026-03-01T00:00:00Z"
END_MS = parse_end(END)
DAY = 86_400_000
GAP = 30 * 60_000


@pytest.fixture(scope="module")
def events() -> list[SimEvent]:
    return list(generate(SimConfig(sites=3, days=3, seed=11, end_ms=END_MS, visitors_per_site=250)))


# --- determinism and the CLI ------------------------------------------------------------------------
def test_same_seed_same_events_other_seed_other_events():
    cfg = SimConfig(sites=2, days=1, seed=5, end_ms=END_MS, visitors_per_site=30)
    a = [e.to_json() for e in generate(cfg)]
    b = [e.to_json() for e in generate(SimConfig(sites=2, days=1, seed=5, end_ms=END_MS, visitors_per_site=30))]
    c = [e.to_json() for e in generate(SimConfig(sites=2, days=1, seed=6, end_ms=END_MS, visitors_per_site=30))]
    assert a == b
    assert a != c
    assert len(a) > 200


def _recount(lines: list[dict]) -> dict:
    """Ground truth recomputed from the JSON lines alone, independently of the simulator's code."""
    out: dict = {}
    first_seen: set = set()
    for line in lines:
        s = out.setdefault(line["site_id"], {"events": 0, "page_views": 0, "purchases": 0, "cents": 0, "visitors": set(),
                                             "bots": set(), "sessions": set(), "bot_events": 0, "days": defaultdict(int),
                                             "day_sessions": defaultdict(int)})
        body, truth = line["body"], line["truth"]
        s["events"] += 1
        s["page_views"] += body["type"] == "page_view"
        if body["type"] == "purchase":
            s["purchases"] += 1
            s["cents"] += round(body["value"] * 100)
        s["visitors"].add(truth["visitor"])
        s["sessions"].add(truth["session"])
        if truth["bot"]:
            s["bots"].add(truth["visitor"])
            s["bot_events"] += 1
        day = time.strftime("%Y-%m-%d", time.gmtime(body["ts"] / 1000))
        s["days"][day] += 1
        if truth["session"] not in first_seen:
            first_seen.add(truth["session"])
            s["day_sessions"][day] += 1
    return out


def test_cli_out_is_deterministic_and_truth_agrees(tmp_path: Path):
    args = ["simulate", "--sites", "3", "--days", "2", "--seed", "7", "--end", END]
    # once as a real process (the console entry point) ...
    a = tmp_path / "a" / "x.jsonl"
    proc = subprocess.run([sys.executable, "-m", "clickstream_lake", *args, "--out", str(a), "-q"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    # ... and once in process: byte for byte the same
    b = tmp_path / "b" / "x.jsonl"
    res = CliRunner().invoke(app, [*args, "--out", str(b), "-q"])
    assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()
    ta, tb = a.with_name("x.truth.json"), b.with_name("x.truth.json")
    assert ta.read_bytes() == tb.read_bytes()

    lines = [json.loads(x) for x in a.read_text(encoding="utf-8").splitlines()]
    truth = json.loads(ta.read_text())
    assert truth["config"]["seed"] == 7 and truth["config"]["end_ms"] == END_MS
    assert set(truth["sites"]) == {"site_01", "site_02", "site_03"}
    recount = _recount(lines)
    assert truth["totals"]["events"] == len(lines)
    for sid, s in recount.items():
        t = truth["sites"][sid]
        assert t["events"] == s["events"]
        assert t["page_views"] == s["page_views"]
        assert t["purchases"] == s["purchases"]
        assert round(t["revenue"] * 100) == s["cents"]
        assert t["visitors"] == len(s["visitors"])
        assert t["bots"] == len(s["bots"])
        assert t["bot_events"] == s["bot_events"]
        assert t["sessions"] == len(s["sessions"])
        assert {d: v["events"] for d, v in t["by_day"].items()} == dict(s["days"])
        assert {d: v["sessions"] for d, v in t["by_day"].items() if v["sessions"]} == dict(s["day_sessions"])
        assert t["hostname"] == f"t.site{sid[-2:]}.example"
    # the per-site volumes differ
    assert len({t["events"] for t in truth["sites"].values()}) == 3
    # and the Python API reads the lines back to the same truth
    again = ground_truth(SimEvent.from_json(x) for x in lines)
    assert again["sites"] == truth["sites"] and again["totals"] == truth["totals"]


def test_cli_errors_are_clear(tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "--sites", "1"])
    assert res.exit_code != 0 and "--out" in res.output
    res = runner.invoke(app, ["simulate", "--end", "next tuesday", "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code != 0 and "--end" in res.output


def test_default_end_is_a_whole_day():
    cfg = SimConfig()
    assert cfg.resolved_end_ms() % DAY == 0
    assert time.time() * 1000 - cfg.resolved_end_ms() < DAY


# --- behaviour --------------------------------------------------------------------------------------
def test_order_and_time_window(events):
    sends = [e.send_ms for e in events]
    assert sends == sorted(sends)
    assert all(e.body["ts"] == e.send_ms for e in events)
    assert END_MS - 3 * DAY <= sends[0] and sends[-1] < END_MS
    assert len({e.body["event_id"] for e in events}) == len(events)


def test_every_event_satisfies_the_tracking_contract(events):
    for e in events:
        req = request_info(e.site_id, e.headers, "127.0.0.1", END_MS)
        ev = parse_event(e.body, req)
        assert isinstance(ev, TrackedEvent), (ev, e.body)
        assert ev.ts_ms == e.send_ms


def _sessions(events):
    by_session = defaultdict(list)
    for e in events:
        by_session[e.session_key].append(e)
    return by_session


def test_sessions_and_returning_visitors(events):
    by_session = _sessions(events)
    by_visitor = defaultdict(list)
    for evs in by_session.values():
        times = [e.send_ms for e in evs]
        assert all(b - a < GAP for a, b in zip(times, times[1:], strict=False))
        by_visitor[evs[0].visitor_key].append((times[0], times[-1]))
    multi_day = 0
    for spans in by_visitor.values():
        spans.sort()
        for (_, end1), (start2, _) in zip(spans, spans[1:], strict=False):
            assert start2 - end1 > GAP  # a new session is a new session by the 30-minute rule
        if len({s // DAY for s, _ in spans}) > 1:
            multi_day += 1
    assert multi_day >= 20, "visitors should come back on other days"


def test_site_map_and_event_types(events):
    types = Counter(e.body["type"] for e in events)
    for t in ("page_view", "click", "scroll", "engagement", "form_submit", "add_to_cart", "purchase", "error",
              "identify", "custom"):
        assert types[t] > 0, t
    paths = {urlsplit(e.body["url"]).path for e in events if e.body["type"] == "page_view"}
    for prefix in ("/", "/c/", "/p/", "/pricing", "/cart", "/checkout", "/blog/", "/docs/"):
        assert any(p == prefix or (prefix.endswith("/") and p.startswith(prefix) and prefix != "/") for p in paths), prefix
    assert all(0 <= e.body["scroll_depth"] <= 100 for e in events if e.body["type"] == "scroll")


def test_rage_and_dead_clicks(events):
    by_session = _sessions(events)

    def has_burst(evs) -> bool:
        clicks = [e.body for e in evs if e.body["type"] == "click"]
        for i, c in enumerate(clicks):
            same = [d for d in clicks[i:] if d["target"] == c["target"] and d["ts"] - c["ts"] <= 1000
                    and abs(d["x"] - c["x"]) <= 30 and abs(d["y"] - c["y"]) <= 30]
            if len(same) >= 3:
                return True
        return False

    rage = [k for k, evs in by_session.items() if evs[0].rage]
    calm = [k for k, evs in by_session.items() if not evs[0].rage and not evs[0].is_bot]
    assert len(rage) >= 10
    assert all(has_burst(by_session[k]) for k in rage)
    assert sum(has_burst(by_session[k]) for k in calm) <= 0.01 * len(calm)
    dead = [e for e in events if e.body["type"] == "click" and (e.body.get("props") or {}).get("dead")]
    assert len(dead) > 20


def test_buyers_are_separable(events):
    by_session = _sessions(events)
    commerce = re.compile(r"^/(p/|pricing|cart|checkout)")
    buyer_views, other_views, buyer_cart, other_cart = [], [], [], []
    for evs in by_session.values():
        if evs[0].is_bot:
            continue
        purchases = [e for e in evs if e.body["type"] == "purchase"]
        assert bool(purchases) == evs[0].buyer
        assert all(x.buyer == evs[0].buyer for x in evs)
        views = [urlsplit(e.body["url"]).path for e in evs if e.body["type"] == "page_view"]
        (buyer_views if purchases else other_views).append(sum(bool(commerce.match(p)) for p in views))
        (buyer_cart if purchases else other_cart).append("/cart" in views)
        for p in purchases:
            assert p.body["value"] > 0 and p.body["currency"] and p.body["order_id"].startswith("ord-")
    assert len(buyer_views) >= 20
    # buyers look at product, pricing, cart and checkout pages far more
    assert sum(buyer_views) / len(buyer_views) > 3 * sum(other_views) / len(other_views)
    assert all(buyer_cart) and sum(other_cart) < 0.15 * len(other_cart)


def test_identity_and_acquisition(events):
    hems = [e.body["hem"] for e in events if e.body["type"] == "identify"]
    assert hems and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hems)
    params = Counter()
    for e in events:
        if e.body["type"] == "page_view":
            for k in parse_qs(urlsplit(e.body["url"]).query):
                params[k] += 1
    for k in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid", "fbclid", "msclkid"):
        assert params[k] > 0, k
    refs = {urlsplit(e.body.get("referrer", "")).netloc for e in events if e.body["type"] == "page_view"}
    assert {"www.google.com", "www.bing.com"} & refs and {"www.facebook.com", "t.co", "www.reddit.com"} & refs
    humans = [e for e in events if not e.is_bot]
    assert sum("visitor_id" in e.body for e in humans) > 0.7 * len(humans)


def test_devices_and_geo(events):
    humans = [e for e in events if not e.is_bot]
    uas = Counter(e.headers["User-Agent"] for e in humans)
    assert any("iPhone" in u for u in uas) and any("Windows NT" in u for u in uas) and any("Android" in u for u in uas)
    assert len({e.body.get("screen") for e in humans}) > 8
    countries = {e.headers.get("cf-ipcountry") for e in events} - {None}
    assert len(countries) >= 12
    with_geo = [e for e in humans if "cf-ipcountry" in e.headers]
    assert len(with_geo) > 0.9 * len(humans)
    for e in with_geo[:500]:
        assert -90 <= float(e.headers["cf-iplatitude"]) <= 90 and -180 <= float(e.headers["cf-iplongitude"]) <= 180
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", e.headers["X-Forwarded-For"])


def test_bots(events):
    bot_events = [e for e in events if e.is_bot]
    share = len(bot_events) / len(events)
    assert 0.03 <= share <= 0.08, share
    uas = " ".join({e.headers["User-Agent"] for e in bot_events})
    assert "Googlebot" in uas or "bingbot" in uas or "AhrefsBot" in uas
    assert "HeadlessChrome" in uas
    assert any((e.body.get("props") or {}).get("webdriver") for e in bot_events)
    assert not any(e.body["type"] in ("scroll", "engagement") for e in bot_events)
    # inhumanly regular: a bot's page views come at one fixed interval
    for evs in _sessions(bot_events).values():
        pv = [e.send_ms for e in evs if e.body["type"] == "page_view"]
        if len(pv) >= 3:
            assert len({b - a for a, b in zip(pv, pv[1:], strict=False)}) == 1
    # and the truth counts them
    truth = ground_truth(events)
    assert truth["totals"]["bot_events"] == len(bot_events)
    assert truth["totals"]["bots"] == len({e.visitor_key for e in bot_events})


def test_site_ids_and_hostnames_can_be_given():
    cfg = SimConfig(site_ids=["site_a", "site_b"], hostnames=["t.alpha.test", "t.beta.test"], days=1, seed=1,
                    end_ms=END_MS, visitors_per_site=5)
    evs = list(generate(cfg))
    assert {(e.site_id, e.hostname) for e in evs} == {("site_a", "t.alpha.test"), ("site_b", "t.beta.test")}
    assert all(e.body["url"].startswith(("https://alpha.test/", "https://beta.test/")) for e in evs)
    with pytest.raises(ValueError):
        SimConfig(site_ids=["a"], hostnames=["x", "y"]).validate()


# --- sending to a real HTTP server -----------------------------------------------------------------
class RecordingCollector:
    """A tiny worker double on loopback that answers like the tracking contract and records."""

    def __init__(self, hostnames: set[str]):
        self.hostnames = hostnames
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.n = 0

    async def collect(self, request: Request) -> JSONResponse:
        host = request.headers.get("host", "")
        if host not in self.hostnames:
            return JSONResponse({"error": f"unknown host {host}"}, status_code=404)
        doc = json.loads(await request.body())
        events = doc["events"] if "events" in doc else [doc]
        cookie = request.cookies.get("_cs_vid", "")
        with self.lock:
            self.n += 1
            set_cookie = "" if cookie else f"v{self.n:06d}"
            self.requests.append({"host": host, "cookie": cookie, "set": set_cookie, "events": events,
                                  "ua": request.headers.get("user-agent"), "xff": request.headers.get("x-forwarded-for"),
                                  "city": request.headers.get("cf-ipcity")})
        rejected = [{"index": i, "error": "error events are refused here"} for i, e in enumerate(events)
                    if e.get("type") == "error"]
        resp = JSONResponse({"visitor_id": cookie or set_cookie, "session_id": "s", "scores": {"intent": 1.0},
                             "accepted": len(events) - len(rejected), "rejected": rejected})
        if set_cookie:
            resp.set_cookie("_cs_vid", set_cookie, max_age=3600, httponly=True, samesite="lax")
        return resp


@pytest.fixture
def collector():
    rec = RecordingCollector({"t.site01.example", "t.site02.example"})
    app_ = Starlette(routes=[Route("/v1/collect", rec.collect, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield rec, f"http://127.0.0.1:{port}"
    server.should_exit = True
    th.join(timeout=10)


def test_send_hosts_cookies_batches(collector):
    rec, url = collector
    evs = list(generate(SimConfig(sites=2, days=2, seed=3, end_ms=END_MS, visitors_per_site=25)))
    report = send(evs, url, batch=5, concurrency=4, progress=False)
    owner = {e.body["event_id"]: e for e in evs}
    got = [b for r in rec.requests for b in r["events"]]
    assert sorted(b["event_id"] for b in got) == sorted(owner)
    errors = sum(e.body["type"] == "error" for e in evs)
    assert (report.events, report.accepted, report.rejected, report.http_errors) == (
        len(evs), len(evs) - errors, errors, 0)
    assert report.requests == len(rec.requests)
    sizes = Counter(len(r["events"]) for r in rec.requests)
    assert max(sizes) == 5 and sizes[1] > 0 and sizes[5] > 0

    per_visitor = defaultdict(list)
    for r in rec.requests:
        keys = {owner[b["event_id"]].visitor_key for b in r["events"]}
        assert len(keys) == 1, "a batch holds one visitor's events"
        first = owner[r["events"][0]["event_id"]]
        assert r["host"] == first.hostname  # the right Host per site
        assert r["ua"] == first.headers["User-Agent"] and r["xff"] == first.headers["X-Forwarded-For"]
        if "cf-ipcity" in first.headers:  # non-ASCII city names arrive as UTF-8 bytes
            assert r["city"].encode("latin-1").decode("utf-8") == first.headers["cf-ipcity"]
        per_visitor[keys.pop()].append(r)
    for reqs in per_visitor.values():
        # in order: the first request gets the cookie, every later one sends it back
        assert reqs[0]["cookie"] == "" and reqs[0]["set"]
        assert all(r["cookie"] == reqs[0]["set"] for r in reqs[1:])
        ts = [b["ts"] for r in reqs for b in r["events"]]
        assert ts == sorted(ts)


def test_send_reports_http_errors(collector):
    rec, url = collector
    evs = list(generate(SimConfig(site_ids=["site_x"], hostnames=["t.unknown.example"], days=1, seed=3,
                                  end_ms=END_MS, visitors_per_site=3)))
    report = send(evs, url, batch=20, concurrency=2, progress=False)
    assert report.http_errors == report.requests > 0
    assert report.accepted == 0 and report.status_counts == {404: report.requests}
    assert any("unknown host" in r for r in report.reasons)
    dead = send(evs[:3], f"http://127.0.0.1:{free_port()}", batch=1, concurrency=1, progress=False, retries=0)
    assert dead.http_errors == 3 and dead.errors


def test_cli_target(collector, tmp_path: Path):
    rec, url = collector
    truth = tmp_path / "sent.truth.json"
    res = CliRunner().invoke(app, ["simulate", "--sites", "2", "--days", "1", "--seed", "4", "--visitors", "10",
                                   "--end", END, "--target", url, "--batch", "3", "--truth", str(truth), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    sent = summary["send"]
    assert sent["events"] == summary["totals"]["events"] == sum(len(r["events"]) for r in rec.requests)
    assert sent["http_errors"] == 0 and max(len(r["events"]) for r in rec.requests) <= 3
    assert json.loads(truth.read_text())["totals"]["events"] == sent["events"]
