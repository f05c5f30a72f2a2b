"""The 16 scores: bounds, documented directions, determinism, disabled models, bot markers."""

from __future__ import annotations

import json
import math
from importlib import resources

import crawleruseragents
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream_lake import codec
from clickstream_lake.codec import SCORE_NAMES
from clickstream_lake.control.config import SiteConfig
from ingest_worker import channel, device
from ingest_worker.events import EVENT_TYPES, RequestInfo, TrackedEvent, to_row_values
from ingest_worker.scoring import MODEL_VERSION, WEIGHTS, Scorer, load_weights, score
from ingest_worker.sessions import VisitorState

T0 = 1_790_000_000_000
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Mobile/15E148 Safari/604.1")
URLS = ["/", "/pricing", "/products/a", "/p/b", "/cart", "/checkout", "/blog/x", "/reviews", "/sale",
        "/docs/start", "/c/shoes?sort=price", "/?utm_source=google&utm_medium=cpc"]
TARGETS = ["", "button#buy", "a.review-stars", "span.price", "div.card[dead]", "a.menu"]

# crawler UAs: the example instances the crawler-user-agents package ships with its patterns
CRAWLER_UAS = sorted({inst for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA
                      for inst in entry.get("instances", [])[:1] if inst.strip()})[:400]


def make_event(t: int, typ: str = "page_view", url: str = "/", ua: str = CHROME, **kw) -> TrackedEvent:
    req = RequestInfo(site_id="site_a", received_ms=t, user_agent=ua, ip="198.51.100.7")
    kw.setdefault("screen", "1440x900")
    return TrackedEvent(type=typ, ts_ms=t, event_id=f"e{t}", url=url, request=req, visitor_id="v_" + "2" * 32, **kw)


# one step of an arbitrary stream: (gap ms, type, url, x, y, target, scroll, time on page, value, props, campaign)
step = st.tuples(
    st.one_of(st.integers(0, 2_000), st.integers(0, 35 * 60_000)),
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(URLS),
    st.one_of(st.none(), st.floats(0, 2000, allow_nan=False)),
    st.one_of(st.none(), st.floats(0, 2000, allow_nan=False)),
    st.sampled_from(TARGETS),
    st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
    st.one_of(st.none(), st.floats(0, 3_600_000, allow_nan=False)),
    st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),
    st.sampled_from([{}, {"dead": True}, {"webdriver": True}, {"dead": "1"}]),
    st.sampled_from(["", "", "", "google", "newsletter"]),
    st.sampled_from(["", "", "1440x900"]),
)
streams = st.lists(step, min_size=1, max_size=30)
uas = st.sampled_from([CHROME, IPHONE, "", "HeadlessChrome/120.0", "curl/8.4.0", CHROME + " extra"])


def build(stream, ua: str = CHROME, t0: int = T0) -> list[TrackedEvent]:
    events, t = [], t0
    for gap, typ, url, x, y, target, sd, top, value, props, campaign, screen in stream:
        t += gap
        events.append(make_event(t, typ, url, ua, x=x, y=y, target=target, scroll_depth=sd, time_on_page_ms=top,
                                 value=value, props=dict(props), utm_source=campaign, screen=screen))
    return events


def run(events: list[TrackedEvent], state: VisitorState | None = None, **kw) -> tuple[list[dict[str, float]], VisitorState]:
    out = []
    for e in events:
        scores, state = score(e, state, **kw)
        out.append(scores)
    assert state is not None
    return out, state


def after(events: list[TrackedEvent], gap: int = 1000) -> int:
    return max(e.ts_ms for e in events) + gap


PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- bounds -------------------------------------------------------------------------------------------------
@PROPS
@given(stream=streams, ua=uas)
def test_every_score_is_within_0_and_100(stream, ua):
    results, _ = run(build(stream, ua))
    for scores in results:
        assert set(scores) == set(SCORE_NAMES)
        for name, v in scores.items():
            assert isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 100.0, (name, v)


# -- directions ----------------------------------------------------------------------------------------------
def rage_burst(t: int, ua: str = CHROME) -> list[TrackedEvent]:
    return [make_event(t + i * 150, "click", "/", ua, x=300.0 + i, y=200.0, target="button#pay") for i in range(3)]


@PROPS
@given(stream=streams, ua=uas)
def test_more_rage_clicks_never_lower_frustration(stream, ua):
    events = build(stream, ua)
    results, state = run(events)
    before = results[-1]["frustration"]
    rage_before = state.rage_clicks
    burst_results, state = run(rage_burst(after(events), ua), state)
    assert state.rage_clicks >= rage_before + 3
    frustration = [r["frustration"] for r in burst_results]
    assert all(f >= before for f in frustration)
    assert frustration == sorted(frustration)
    assert frustration[-1] > before or before > 99.99


@PROPS
@given(stream=streams, ua=uas, extra=st.lists(st.sampled_from(["/pricing", "/cart", "/plans/pro", "/basket"]),
                                                min_size=1, max_size=6))
def test_more_pricing_and_cart_visits_never_lower_intent_or_purchase_timing(stream, ua, extra):
    events = build(stream, ua)
    results, state = run(events)
    prev = results[-1]
    t = after(events)
    for i, url in enumerate(extra):
        scores, state = score(make_event(t + i * 1000, "page_view", url, ua), state)
        assert scores["intent"] >= prev["intent"]
        assert scores["purchase_timing"] >= prev["purchase_timing"]
        assert scores["price_sensitivity"] >= prev["price_sensitivity"]
        prev = scores


@PROPS
@given(stream=streams)
def test_frustration_and_intent_never_fall_within_a_session(stream):
    # every feature they read is a session counter: any later event of the same session keeps them
    events = build(stream)
    results, _ = run(events)
    for i in range(1, len(events)):
        a, b = results[i - 1], results[i]
        if events[i - 1].session_id == events[i].session_id:
            assert b["frustration"] >= a["frustration"]
            assert b["intent"] >= a["intent"]


@PROPS
@given(stream=streams, crawler=st.sampled_from(CRAWLER_UAS))
def test_crawler_user_agents_score_at_least_90(stream, crawler):
    results, _ = run(build(stream, crawler))
    for scores in results:
        assert scores["bot_probability"] >= 90.0


def test_the_crawler_list_comes_from_the_package():
    assert len(CRAWLER_UAS) > 100
    e = make_event(T0, ua="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    scores, _ = score(e, None)
    assert scores["bot_probability"] >= 90 and "crawler_ua" in e.bot_reasons and e.device_type == "bot"


def test_automation_markers_and_timing_raise_bot_probability():
    human = [make_event(T0 + t, typ, url, scroll_depth=sd) for t, typ, url, sd in [
        (0, "page_view", "/", None), (4_000, "scroll", "/", 40.0), (31_000, "click", "/", None),
        (33_500, "page_view", "/products/a", None), (95_000, "scroll", "/products/a", 75.0),
        (101_000, "page_view", "/pricing", None)]]
    h, _ = run(human)
    assert h[-1]["bot_probability"] < 10
    headless, _ = run([make_event(T0, ua="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36")])
    assert headless[-1]["bot_probability"] >= 90
    webdriver, _ = run([make_event(T0, props={"webdriver": True})])
    assert webdriver[-1]["bot_probability"] >= 85
    # a normal browser UA that loads a page every 2 s exactly, with no screen
    regular, _ = run([make_event(T0 + i * 2000, "page_view", f"/p/{i}", screen="") for i in range(8)])
    assert regular[-1]["bot_probability"] >= 90
    assert regular[0]["bot_probability"] < regular[-1]["bot_probability"]


# -- determinism, disabled models ------------------------------------------------------------------------
@PROPS
@given(stream=streams, ua=uas)
def test_same_input_same_output(stream, ua):
    a_results, a_state = run(build(stream, ua))
    events = build(stream, ua)
    b_results, b_state = run(events)
    assert a_results == b_results
    assert a_state.as_dict().keys() == b_state.as_dict().keys()
    assert {k: v for k, v in a_state.as_dict().items() if v == v} == {k: v for k, v in b_state.as_dict().items() if v == v}


@PROPS
@given(stream=streams, enabled=st.sets(st.sampled_from(SCORE_NAMES)))
def test_disabled_models_are_absent_and_nan_on_the_row(stream, enabled):
    events = build(stream)
    state = None
    full_state = None
    for e in events:
        twin = make_event(e.ts_ms, e.type, e.url, x=e.x, y=e.y, target=e.target, scroll_depth=e.scroll_depth,
                          time_on_page_ms=e.time_on_page_ms, value=e.value, props=dict(e.props),
                          utm_source=e.utm_source, screen=e.screen)
        scores, state = score(e, state, models_enabled=tuple(enabled))
        full, full_state = score(twin, full_state)
        assert set(scores) == set(enabled)
        assert all(scores[k] == full[k] for k in enabled)  # switching a model off changes no other score
        row = codec.encode(to_row_values(e))
        for name in SCORE_NAMES:
            v = row.doubles[codec.DOUBLE_INDEX[name] - 1]
            assert (math.isnan(v)) == (name not in enabled)


def test_scorer_applies_the_sites_models_enabled():
    scorer = Scorer(secret=b"k")
    cfg = SiteConfig(site_id="site_a", models_enabled=("intent", "bot_probability"))
    e = make_event(T0)
    scores = scorer.process(e, cfg)
    assert set(scores) == {"intent", "bot_probability"} and e.scores == scores


# -- what the event carries ----------------------------------------------------------------------------------
def test_score_fills_the_event():
    e = make_event(T0, url="/?gclid=abc", gclid="abc", ua=IPHONE)
    score(e, None)
    assert e.session_id.startswith("s_") and e.session_number == 1
    assert (e.device_type, e.browser, e.os) == ("mobile", "Mobile Safari", "iOS")
    assert e.channel == "Paid Search" and e.model_version == MODEL_VERSION == WEIGHTS["model_version"]
    c = make_event(T0 + 500, "click", x=1.0, y=1.0)
    c2 = make_event(T0 + 900, "click", x=400.0, y=1.0)
    _, st_ = score(e, None)
    score(c, st_)
    score(c2, st_)
    assert (c.click_count, c2.click_count) == (1.0, 2.0)
    row = codec.decode(codec.encode(to_row_values(c2)))
    assert row["model_version"] == MODEL_VERSION and row["session_id"] == c2.session_id
    assert row["click_count"] == 2.0 and row["channel"] == "Paid Search"


def test_weights_file_is_package_data_with_a_version():
    doc = json.loads(resources.files("ingest_worker.scoring").joinpath("weights_v1.json").read_text())
    assert doc == load_weights() and doc["model_version"].startswith("cs-")
    assert all(name in doc for name in SCORE_NAMES)


# -- device and channel --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ua", "expected"), [
    (CHROME, ("desktop", "Chrome", "Windows")),
    (IPHONE, ("mobile", "Mobile Safari", "iOS")),
    ("Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
     ("tablet", "Mobile Safari", "iOS")),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
     ("tablet", "Chrome", "Android")),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
     ("mobile", "Chrome*", "Android")),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", ("bot", "bingbot", "")),
    ("", ("other", "", "")),
])
def test_device_parsing(ua, expected):
    got = device.parse_device(ua)
    if expected[1].endswith("*"):  # uap-core names Chrome on Android "Chrome" or "Chrome Mobile" by version
        assert got[1].startswith(expected[1][:-1])
        got, expected = (got[0], got[2]), (expected[0], expected[2])
    assert got == expected


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, "Direct"),
    ({"gclid": "x"}, "Paid Search"),
    ({"msclkid": "x"}, "Paid Search"),
    ({"fbclid": "x", "referrer": "https://m.facebook.com/"}, "Organic Social"),
    ({"utm_source": "facebook", "utm_medium": "paid_social", "fbclid": "x"}, "Paid Social"),
    ({"utm_source": "newsletter", "utm_medium": "email"}, "Email"),
    ({"referrer": "https://www.google.co.uk/"}, "Organic Search"),
    ({"referrer": "https://duckduckgo.com/"}, "Organic Search"),
    ({"referrer": "https://t.co/abc"}, "Organic Social"),
    ({"referrer": "https://www.youtube.com/watch"}, "Organic Video"),
    ({"referrer": "https://blog.example.org/post"}, "Referral"),
    ({"utm_source": "partner", "utm_medium": "affiliate"}, "Affiliates"),
    ({"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "shopping-q3"}, "Paid Shopping"),
    ({"utm_source": "x", "utm_medium": "display"}, "Display"),
    ({"utm_source": "x", "utm_medium": "cpc", "utm_campaign": "cross-network-pmax"}, "Cross-network"),
    ({"utm_source": "somewhere"}, "Unassigned"),
    ({"referrer": "https://shop.test/other"}, "Direct"),  # our own host is not a referral
])
def test_channel_grouping(kw, expected):
    assert channel.classify(**kw, own_hosts=frozenset({"shop.test"})) == expected
