"""The tracking contract (ingest_worker.normalize): body → events → TrackedEvent."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.events import EVENT_TYPES, RequestInfo, TrackedEvent, to_row_values
from ingest_worker.normalize import (
    MAX_LATENESS_MS,
    MAX_SKEW_MS,
    Rejection,
    cookie_value,
    parse_body,
    parse_event,
    parse_query,
    request_info,
)

NOW = 1_764_000_000_000  # 2025-11-24


def req(now: int = NOW) -> RequestInfo:
    return RequestInfo(site_id="site_a", received_ms=now)


def ok(obj, **kw) -> TrackedEvent:
    ev = parse_event(obj, req(), **kw)
    assert isinstance(ev, TrackedEvent), ev
    return ev


def rejected(obj, field: str, **kw) -> Rejection:
    r = parse_event(obj, req(), **kw)
    assert isinstance(r, Rejection), r
    assert field in r.reason, (field, r.reason)
    assert r.field == field
    assert r.status == 400
    return r


# --- parse_body -------------------------------------------------------------------------------
def test_body_single_event_and_batch():
    assert parse_body(b'{"type":"page_view"}', "application/json") == [{"type": "page_view"}]
    assert parse_body(b'{"events":[{"type":"click"},{"type":"scroll"}]}', "text/plain") == [
        {"type": "click"},
        {"type": "scroll"},
    ]
    # a BOM and a charset parameter are fine
    assert parse_body('\ufeff{"type":"custom"}'.encode(), "application/json; charset=utf-8") == [{"type": "custom"}]


@pytest.mark.parametrize(
    ("raw", "status", "word"),
    [
        (b"", 400, "empty"),
        (b"{not json", 400, "JSON"),
        (b"[1,2]", 400, "events"),
        (b'"hello"', 400, "events"),
        (b'{"events": []}', 400, "events"),
        (b'{"events": {"type":"click"}}', 400, "events"),
        (b'{"type":"click","x":NaN}', 400, "NaN"),
        (b'{"type":"click","x":Infinity}', 400, "NaN"),
        (b"\xff\xfe{}", 400, "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "body"),
    ],
)
def test_body_rejections(raw, status, word):
    r = parse_body(raw, "application/json")
    assert isinstance(r, Rejection)
    assert r.status == status
    assert word in r.reason


def test_body_sizes_are_413():
    r = parse_body(b'{"type":"page_view","title":"' + b"x" * 2000 + b'"}', None, max_body=1000)
    assert isinstance(r, Rejection) and r.status == 413 and "1000 bytes" in r.reason
    batch = json.dumps({"events": [{"type": "click"}] * 11}).encode()
    r = parse_body(batch, None, max_batch=10)
    assert isinstance(r, Rejection) and r.status == 413 and "events" in r.reason
    assert len(parse_body(batch, None, max_batch=11)) == 11


def test_form_body_is_refused():
    r = parse_body(b"type=page_view", "application/x-www-form-urlencoded")
    assert isinstance(r, Rejection) and r.status == 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=12,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parse_body_never_raises(raw):
    out = parse_body(raw, "application/json", max_batch=3)
    assert isinstance(out, (list, Rejection))
    if isinstance(out, list):
        assert 1 <= len(out) <= 3


def _same_json(a, b) -> bool:
    """Equal documents, type for type (1 and 1.0 differ; -0.0 and 0.0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


wide_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
    | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=12,
)


def _texts(value) -> list[bytes]:
    text = json.dumps(value)  # ASCII with \u escapes (lone surrogates included), NaN/Infinity literals
    return [text.encode(), json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            json.dumps(value, separators=(",", ":")).encode(), json.dumps(value, indent="\t").encode(),
            b"\xef\xbb\xbf" + text.encode(), f"  {text}\n".encode()]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(wide_json | st.builds(lambda k, v: {"events": [{k: v}]}, st.text(max_size=5), wide_json))
def test_the_fast_json_decoder_reads_what_json_reads_or_leaves_it_to_json(value):
    from ingest_worker.normalize import _SLOW, _loads

    for raw in _texts(value) + [b"[1e400]", b"[-12345678901234567890]", b"{\"a\": 1, \"a\": 2}", b"[1.5e-400]"]:
        fast = _loads(raw)
        if fast is _SLOW:
            continue
        try:
            slow = json.loads(raw.decode("utf-8-sig"))
        except (ValueError, RecursionError) as e:
            raise AssertionError(f"orjson read {raw!r}, json refuses it: {e}") from None
        assert _same_json(fast, slow), (raw, fast, slow)


def test_long_integers_and_nan_take_json():
    assert parse_body(b'{"type": "page_view", "ts": 123456789012345678901234}')[0]["ts"] == 123456789012345678901234
    nan = parse_body(b'{"type": "page_view", "value": NaN}')
    assert isinstance(nan, Rejection) and "NaN" in nan.reason
    assert parse_body(b'\xef\xbb\xbf{"type": "click"}') == [{"type": "click"}]
    assert parse_body(b'{"type":"click","x":-12345678901234567890}')[0]["x"] == -12345678901234567890
    assert parse_body(b'[{"events": 0}, \n\t12345678901234567890]') is not None


def test_digit_runs_inside_strings_keep_the_fast_decoder():
    from ingest_worker.normalize import _SLOW, _has_long_number, _loads

    hex_id = b'{"type": "click", "visitor_id": "v_000000000000000000000000000020da"}'
    assert not _has_long_number(hex_id) and _loads(hex_id) is not _SLOW
    for raw in (b"12345678901234567890", b"[1,-12345678901234567890]", b'{"a":\t1234567890123456789}',
                b'"x 1234567890123456789"'):  # the last is a string: json decides, harmlessly
        assert _has_long_number(raw), raw
    assert not _has_long_number(b'{"a": 123456789012345678}')  # 18 digits: exact in 64 bits


# --- parse_event: arbitrary input -----------------------------------------------------------------
fieldish = st.sampled_from(
    ["type", "url", "ts", "event_id", "hem", "props", "value", "scroll_depth", "screen", "consent", "x", "order_id",
     "referrer", "viewport", "time_on_page_ms", "visitor_id", "title"]
)
event_like = st.dictionaries(fieldish, json_values, max_size=8).map(
    lambda d: d if "type" in d else {**d, "type": "page_view"}
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values | event_like | st.builds(lambda t, d: {**d, "type": t}, st.sampled_from(EVENT_TYPES), event_like))
def test_parse_event_never_raises(obj):
    out = parse_event(obj, req())
    assert isinstance(out, (TrackedEvent, Rejection))
    if isinstance(out, Rejection):
        assert out.reason and out.status == 400
    else:
        # whatever is accepted can be turned into a row
        assert isinstance(to_row_values(out), dict)


# --- parse_event: valid events round-trip ------------------------------------------------------
safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
path = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8), max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)


@st.composite
def valid_events(draw):
    etype = draw(st.sampled_from(EVENT_TYPES))
    ev = {"type": etype, "url": draw(path)}
    utm = draw(st.dictionaries(st.sampled_from(["utm_source", "utm_medium", "utm_campaign", "gclid", "fbclid"]),
                               st.text(alphabet="abcdefghijklmnop_-0123456789", min_size=1, max_size=10), max_size=3))
    if utm:
        ev["url"] += "?" + "&".join(f"{k}={v}" for k, v in utm.items())
        ev["url"] = draw(st.sampled_from(["", "https://shop.example.com"])) + ev["url"]
    ev["ts"] = NOW - draw(st.integers(0, MAX_LATENESS_MS))
    ev["event_id"] = draw(st.text(alphabet="0123456789abcdef", min_size=1, max_size=32))
    for f in ("title", "referrer", "target", "language", "timezone", "name", "visitor_id"):
        if draw(st.booleans()):
            ev[f] = draw(safe_text)
    if draw(st.booleans()):
        ev["scroll_depth"] = draw(st.floats(0, 100))
    if draw(st.booleans()):
        ev["x"] = draw(st.integers(-5000, 5000))
    if draw(st.booleans()):
        ev["consent"] = draw(st.booleans())
    if draw(st.booleans()):
        ev["screen"] = f"{draw(st.integers(1, 9999))}x{draw(st.integers(1, 9999))}"
    if draw(st.booleans()):
        ev["hem"] = hashlib.sha256(draw(safe_text).encode()).hexdigest().upper()
    if draw(st.booleans()):
        ev["props"] = draw(st.dictionaries(safe_text, st.none() | st.booleans() | st.integers(-1000, 1000) | safe_text,
                                           max_size=4))
    if etype == "purchase" or draw(st.booleans()):
        ev["value"] = draw(st.floats(0, 1e6))
        ev["currency"] = "EUR"
    return ev, utm


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(valid_events())
def test_valid_events_round_trip(pair):
    obj, utm = pair
    ev = ok(obj)
    assert ev.type == obj["type"]
    assert ev.ts_ms == obj["ts"] == ev.client_ts_ms
    assert ev.event_id == obj["event_id"]
    assert ev.url == obj["url"].removeprefix("https://shop.example.com")
    for f in ("title", "referrer", "target", "language", "timezone", "name"):
        assert getattr(ev, f) == obj.get(f, "")
    assert ev.sdk_visitor_id == obj.get("visitor_id", "")
    assert ev.scroll_depth == obj.get("scroll_depth")
    assert ev.x == obj.get("x")
    assert ev.consent is obj.get("consent")
    assert ev.screen == obj.get("screen", "")
    assert ev.hem == obj.get("hem", "").lower()
    assert ev.props == obj.get("props", {})
    assert ev.value == obj.get("value")
    for k in ("utm_source", "utm_medium", "utm_campaign", "gclid", "fbclid"):
        assert getattr(ev, k) == utm.get(k, "")
    assert ev.request is not None and ev.site_id == "site_a"


# --- parse_event: each bad-input class names its field ----------------------------------------------
@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({}, "type"),
        ({"type": 3}, "type"),
        ({"type": "pageview"}, "type"),
        ({"type": "scroll", "scroll_depth": "deep"}, "scroll_depth"),
        ({"type": "scroll", "scroll_depth": 140}, "scroll_depth"),
        ({"type": "scroll", "scroll_depth": True}, "scroll_depth"),
        ({"type": "page_view", "time_on_page_ms": -1}, "time_on_page_ms"),
        ({"type": "click", "x": float("nan")}, "x"),
        ({"type": "click", "y": float("inf")}, "y"),
        ({"type": "click", "x": 10**400}, "x"),
        ({"type": "custom", "props": ["a"]}, "props"),
        ({"type": "custom", "props": {"a": {"b": 1}}}, "props"),
        ({"type": "custom", "props": {"a": [1]}}, "props"),
        ({"type": "custom", "props": {"a": "x" * 9000}}, "props"),
        ({"type": "purchase"}, "value"),
        ({"type": "purchase", "value": "12"}, "value"),
        ({"type": "purchase", "value": -3}, "value"),
        ({"type": "page_view", "url": 5}, "url"),
        ({"type": "page_view", "url": "javascript:alert(1)"}, "url"),
        ({"type": "page_view", "url": "http://[::1/x"}, "url"),
        ({"type": "page_view", "title": "x" * 9000}, "title"),
        ({"type": "page_view", "referrer": "é" * 5000}, "referrer"),
        ({"type": "page_view", "ts": 12345}, "ts"),
        ({"type": "page_view", "ts": NOW + 2 * 86_400_000}, "ts"),
        ({"type": "page_view", "ts": "yesterday"}, "ts"),
        ({"type": "page_view", "event_id": "e" * 129}, "event_id"),
        ({"type": "page_view", "event_id": 17}, "event_id"),
        ({"type": "identify", "hem": "not-a-hash"}, "hem"),
        ({"type": "identify", "hem": "a" * 63}, "hem"),
        ({"type": "page_view", "screen": "big"}, "screen"),
        ({"type": "page_view", "viewport": "10x"}, "viewport"),
        ({"type": "page_view", "consent": "yes"}, "consent"),
        ({"type": "purchase", "value": 3, "order_id": {"a": 1}}, "order_id"),
    ],
)
def test_bad_input_names_the_field(obj, field):
    rejected(obj, field)


def test_non_object_event():
    for obj in (None, 3, "page_view", [{"type": "click"}]):
        r = parse_event(obj, req())
        assert isinstance(r, Rejection) and "object" in r.reason


def test_long_values_below_hard_limit_are_accepted():
    ev = ok({"type": "page_view", "title": "t" * 5000, "url": "/p?q=" + "x" * 3000})
    assert len(ev.title) == 5000


# --- time ---------------------------------------------------------------------------------------
def test_ts_window():
    assert ok({"type": "click", "ts": NOW - 1000}).ts_ms == NOW - 1000
    assert ok({"type": "click", "ts": NOW + MAX_SKEW_MS}).ts_ms == NOW + MAX_SKEW_MS
    # plausible but outside the window: the receive time is used, the client's ts is kept
    late = ok({"type": "click", "ts": NOW - MAX_LATENESS_MS - 1})
    assert late.ts_ms == NOW and late.client_ts_ms == NOW - MAX_LATENESS_MS - 1
    ahead = ok({"type": "click", "ts": NOW + MAX_SKEW_MS + 1})
    assert ahead.ts_ms == NOW
    assert ok({"type": "click"}).ts_ms == NOW
    assert ok({"type": "click", "ts": float(NOW - 5)}).ts_ms == NOW - 5


def test_event_id_made_by_server_when_missing():
    a, b = ok({"type": "click"}), ok({"type": "click", "event_id": ""})
    assert len(a.event_id) == 32 and a.event_id != b.event_id


# --- url ------------------------------------------------------------------------------------------
def test_url_utm_and_click_ids():
    ev = ok({"type": "page_view",
             "url": "https://shop.example/p/1?utm_source=google&utm_medium=cpc&utm_campaign=spring%7Csale"
                    "&utm_term=red+shoes&utm_content=ad1&gclid=G1&fbclid=F1&msclkid=M1#top"})
    assert ev.url == "/p/1?utm_source=google&utm_medium=cpc&utm_campaign=spring%7Csale&utm_term=red+shoes" \
                     "&utm_content=ad1&gclid=G1&fbclid=F1&msclkid=M1"
    assert (ev.utm_source, ev.utm_medium, ev.utm_campaign, ev.utm_term, ev.utm_content) == (
        "google", "cpc", "spring|sale", "red shoes", "ad1")
    assert (ev.gclid, ev.fbclid, ev.msclkid) == ("G1", "F1", "M1")
    assert ok({"type": "page_view", "url": "https://shop.example"}).url == "/"
    assert ok({"type": "page_view", "url": "/pricing?plan=pro"}).url == "/pricing?plan=pro"


# --- commerce --------------------------------------------------------------------------------------
def test_purchase_fields():
    ev = ok({"type": "purchase", "value": 49.5, "currency": "EUR", "order_id": "o-1"})
    assert (ev.value, ev.currency, ev.order_id) == (49.5, "EUR", "o-1")
    ev = ok({"type": "purchase", "value": 0, "props": {"order_id": 778}})
    assert (ev.value, ev.currency, ev.order_id) == (0.0, "", "778")


# --- request_info --------------------------------------------------------------------------------
def test_request_info_headers():
    info = request_info(
        "site_a",
        {"User-Agent": "Mozilla/5.0 X", "X-Forwarded-For": "203.0.113.9, 10.0.0.1", "Cookie": "a=1; _cs_vid=abc123; b=2",
         "CF-IPCountry": "de", "cf-region": "Bavaria", "cf-ipcity": "MÃ¼nchen", "cf-iplatitude": "48.137",
         "cf-iplongitude": "11.575"},
        "127.0.0.1",
        NOW,
    )
    assert info.user_agent == "Mozilla/5.0 X"
    assert info.ip == "203.0.113.9"
    assert info.cookie_visitor_id == "abc123"
    assert (info.country, info.region, info.city) == ("DE", "Bavaria", "München")
    assert (info.lat, info.lon) == (48.137, 11.575)
    assert info.received_ms == NOW and info.site_id == "site_a"


@pytest.mark.parametrize("lat,lon", [("north", "x"), ("91", "181"), ("nan", "inf"), ("", "")])
def test_request_info_bad_geo_is_none(lat, lon):
    info = request_info("s", {"cf-iplatitude": lat, "cf-iplongitude": lon, "x-forwarded-for": "garbage"}, "10.1.1.1", NOW)
    assert info.lat is None and info.lon is None
    assert info.ip == "10.1.1.1"


def test_cookie_value():
    assert cookie_value('_cs_vid="v-1.2"', "_cs_vid") == "v-1.2"
    assert cookie_value("_cs_vidx=1; x=2", "_cs_vid") == ""
    assert cookie_value("_cs_vid=<script>", "_cs_vid") == ""
    assert cookie_value("", "_cs_vid") == ""


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["user-agent", "x-forwarded-for", "cookie", "cf-ipcountry", "cf-iplatitude",
                                        "cf-iplongitude", "cf-ipcity"]), st.text(max_size=40)))
def test_request_info_never_raises(headers):
    info = request_info("s", headers, "127.0.0.1", NOW)
    assert info.lat is None or (math.isfinite(info.lat) and abs(info.lat) <= 90)


# --- pixel --------------------------------------------------------------------------------------
def test_parse_query_pixel():
    [obj] = parse_query({"type": "page_view", "url": "/x?utm_source=nl", "ts": str(NOW - 10), "scroll_depth": "40.5",
                         "consent": "1", "props.plan": "pro", "props.seats": "3"})
    ev = ok(obj)
    assert ev.ts_ms == NOW - 10 and ev.scroll_depth == 40.5 and ev.consent is True
    assert ev.props == {"plan": "pro", "seats": "3"} and ev.utm_source == "nl"
    [obj] = parse_query({"type": "custom", "props": '{"a": 1, "b": true}'})
    assert ok(obj).props == {"a": 1, "b": True}
    [obj] = parse_query({"type": "scroll", "scroll_depth": "deep"})
    rejected(obj, "scroll_depth")
    [obj] = parse_query({"type": "custom", "props": "{not json"})
    rejected(obj, "props")
