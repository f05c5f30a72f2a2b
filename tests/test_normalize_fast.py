"""The fast path of ``parse_event`` and its URL cache give exactly what the checked path gives."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker import normalize
from ingest_worker.events import EVENT_TYPES, RequestInfo, TrackedEvent
from ingest_worker.normalize import Rejection, parse_event, parse_event_checked, url_pieces

NOW = 1_764_000_000_000


def req() -> RequestInfo:
    return RequestInfo(site_id="site_a", received_ms=NOW, user_agent="UA", ip="10.0.0.1")


def same(obj, **kw) -> None:
    """parse_event(obj) == parse_event_checked(obj) (a server-made event_id aside)."""
    info = req()
    fast = parse_event(obj, info, **kw)
    slow = parse_event_checked(obj, info, **kw)
    assert type(fast) is type(slow)
    if isinstance(fast, TrackedEvent) and isinstance(obj, dict) and obj.get("event_id") in (None, ""):
        assert len(fast.event_id) == 32
        fast = dataclasses.replace(fast, event_id="")
        slow = dataclasses.replace(slow, event_id="")
    assert fast == slow
    if isinstance(fast, TrackedEvent):  # same types too (1 vs 1.0 compare equal)
        for f in dataclasses.fields(TrackedEvent):
            assert type(getattr(fast, f.name)) is type(getattr(slow, f.name)), f.name


scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(2**1030), 2**1030)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=8)
ts_values = st.integers(NOW - 40 * 86_400_000, NOW + 2 * 86_400_000) | st.floats(NOW - 1e9, NOW + 1e9) | json_values
urls = st.sampled_from([
    "", "/", "/pricing", "/p?utm_source=a&utm_source=b", "https://x.test/a?gclid=1#frag", "http://x.test",
    "/a?utm%5Fsource=enc&utm_medium=m", "/a?utm+source=x", "/a?fbclid=&msclkid=z", "mailto:a@b", "?q=1",
    "http://[::1", "javascript:alert(1)", "/a#b?utm_source=x", "https://x.test?utm_campaign=%ZZ",
]) | st.text(max_size=30)
numbers = st.integers(-10, 200) | st.floats(-10, 200) | json_values
fields = {
    "type": st.sampled_from(EVENT_TYPES) | json_values,
    "url": urls,
    "ts": ts_values,
    "event_id": st.text(max_size=130) | json_values,
    "hem": st.sampled_from(["", hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"a").hexdigest().upper(), "abc"])
    | json_values,
    "consent": st.booleans() | json_values,
    "props": st.dictionaries(st.text(max_size=8), scalars, max_size=4) | json_values,
    "order_id": st.text(max_size=10) | st.integers() | json_values,
    "screen": st.sampled_from(["1920x1080", "10x", "axb", ""]) | json_values,
    "viewport": st.sampled_from(["800x600", "x"]) | json_values,
    "scroll_depth": numbers,
    "time_on_page_ms": numbers,
    "x": numbers,
    "y": numbers,
    "value": numbers,
    **{f: st.text(max_size=20) | json_values for f in ("name", "referrer", "title", "visitor_id", "language",
                                                        "timezone", "target", "currency")},
}
events = st.fixed_dictionaries({"type": st.sampled_from(EVENT_TYPES)},
                               optional={k: v for k, v in fields.items() if k != "type"})
plain = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES), "ts": st.integers(NOW - 86_400_000, NOW), "event_id": st.text(min_size=1, max_size=20)},
    optional={"url": urls, "title": st.text(max_size=20), "scroll_depth": st.integers(0, 100) | st.floats(0, 100),
              "x": st.integers(-99, 99), "value": st.floats(0, 1e6), "props": st.dictionaries(st.text(max_size=5), scalars, max_size=3),
              "consent": st.booleans(), "screen": st.just("390x844"), "order_id": st.integers(0, 10**6) | st.text(max_size=8)},
)


specials = st.sampled_from([
    None, "", 0, -1, 101, True, False, 2**63, 2**1000 - 1, 2**1000, 2**1024, -(2**1024), float("inf"), float("-inf"),
    float("nan"), -0.0, 1e308, 5e-324, "1920x1080", "x" * 2048, "x" * 2049, "é" * 2048, "é" * 2049, [], {}, {"a": [1]},
])


@st.composite
def one_field_off(draw):
    """A plain valid event with one field (any of them) set to something odd."""
    obj = dict(draw(plain))
    name = draw(st.sampled_from(sorted(fields)))
    obj[name] = draw(fields[name] | specials)
    return obj


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(events | plain | one_field_off() | st.dictionaries(st.sampled_from(sorted(fields)), json_values, max_size=6)
       | json_values)
def test_fast_path_equals_checked_path(obj):
    same(obj)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(one_field_off())
def test_fast_path_equals_checked_path_one_field_off(obj):
    same(obj)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(plain, st.integers(4, 64), st.integers(0, 10**7))
def test_fast_path_equals_checked_path_with_limits(obj, max_bytes, window):
    same(obj, max_field_bytes=max_bytes, max_skew_ms=window, max_lateness_ms=window)


def test_each_check_of_the_checked_path_is_kept():
    base = {"type": "click", "ts": NOW - 1000, "event_id": "e1", "url": "/a", "x": 3, "screen": "1x1"}
    same(base)
    for name in fields:
        for bad in (None, "", -1, 101, 1.5, True, float("inf"), float("nan"), 2**1024, "10x", "x" * 200, [], {"a": []},
                    {"order_id": 1.5}, "mailto:x", "http://[::1", 1, NOW + 2 * 86_400_000, NOW - 40 * 86_400_000):
            same({**base, name: bad})
            same({**base, "type": "purchase", "value": 1, name: bad})


def test_long_and_non_ascii_fields_agree():
    for text in ("é" * 2047, "é" * 2048, "é" * 4096, "a" * 8192, "a" * 8193, "\ud800" * 3000, "😀" * 2049):
        for field in ("title", "url", "order_id"):
            same({"type": "custom", field: text})
            same({"type": "custom", "props": {"order_id": text}})


def test_subclasses_take_the_checked_path():
    class S(str):
        pass

    class D(dict):
        pass

    same({"type": "click", "title": S("x")})
    same(D(type="click"))
    same({"type": "click", "x": True})
    same({"type": "click", "x": 2**1000})  # a finite float, just past the fast path's range
    same({"type": "click", "x": 2**1024})  # too large a number


@given(urls)
@settings(max_examples=300, deadline=None)
def test_url_pieces_equal_url_and_parse_qsl(raw):
    normalize._url_pieces_cached.cache_clear()
    want = normalize._url(raw)
    for _ in range(2):  # uncached, then cached
        got = url_pieces(raw)
        if isinstance(want, Rejection):
            assert got == want
        else:
            url, params = want
            assert got == (url, *(params.get(k, "") for k in normalize.URL_PARAMS))


def test_url_cache_is_bounded_and_skips_long_urls():
    cache = normalize._url_pieces_cached
    cache.cache_clear()
    assert cache.cache_info().maxsize == normalize.URL_CACHE_SIZE
    for i in range(normalize.URL_CACHE_SIZE + 100):
        url_pieces(f"/page/{i}?utm_source=s{i}")
    assert cache.cache_info().currsize == normalize.URL_CACHE_SIZE
    cache.cache_clear()
    long = "/x?utm_source=" + "a" * normalize.URL_CACHE_MAX_CHARS
    assert url_pieces(long)[1] == "a" * normalize.URL_CACHE_MAX_CHARS
    assert cache.cache_info().currsize == 0


def test_batch_of_odd_events_round_trips_through_json():
    # what a body holds after json.loads: the fast path sees exactly these types
    body = json.loads(json.dumps([{"type": "page_view", "url": "/a?utm_source=x", "ts": NOW, "x": 1.5e308},
                                  {"type": "click", "ts": float(NOW), "x": -0.0, "props": {"k": None}}]))
    for obj in body:
        same(obj)


def test_remembered_screen_sizes_answer_as_the_regex():
    """The fast path remembers which screen/viewport strings are sizes: a second look gives
    the first answer, and the memo never grows past its bound."""
    values = ["1920x1080", "390x844", "1x1", "999999x999999", "1234567x1", "10x", "x10", "axb", "1920X1080", "１x1",
              "1920x1080\n", " 1920x1080", "0x0", "1920x1080x1", "9" * 40]
    for _ in range(2):
        for v in values:
            same({"type": "page_view", "screen": v, "viewport": v})
            assert normalize._is_size(v) == bool(normalize._SIZE.fullmatch(v))
    for i in range(normalize.SIZES_SEEN_MAX + 10):
        normalize._is_size(f"{i}x1")
    assert len(normalize._SIZES_SEEN) <= normalize.SIZES_SEEN_MAX
