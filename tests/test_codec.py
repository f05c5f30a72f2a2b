"""Property tests for the AE row codec: packing, escaping, cutting, Arrow round trip."""

from __future__ import annotations

import math

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream_lake import codec
from clickstream_lake.codec import BLOB_MAX_BYTES, PACKED_COMPONENTS

# Arbitrary unicode, biased towards the characters that matter to the codec.
chars = st.characters(blacklist_categories=("Cs",))  # valid UTF-8 (surrogates: see below)
tricky = st.text(alphabet=st.sampled_from(list("|%\\+,?&=/ aé€😀\x00\n")) | chars, max_size=40)
long_text = st.text(alphabet=chars, min_size=0, max_size=400)


@given(st.lists(tricky, min_size=1, max_size=6))
def test_pack_round_trips_short_components(components):
    blob, was_cut = codec.pack(components)
    if len(blob.encode()) <= BLOB_MAX_BYTES and not was_cut:
        assert codec.unpack(blob, len(components)) == components
    assert len(blob.encode("utf-8")) <= BLOB_MAX_BYTES


@given(st.lists(long_text, min_size=1, max_size=6))
def test_pack_cuts_fairly_and_never_breaks_a_neighbour(components):
    blob, was_cut = codec.pack(components)
    assert len(blob.encode("utf-8")) <= BLOB_MAX_BYTES
    back = codec.unpack(blob, len(components))
    assert len(back) == len(components)
    for original, got in zip(components, back, strict=True):
        assert original.startswith(got), "a cut component is a prefix of the original"
    whole = sum(len(codec.escape_component(c).encode()) for c in components) + len(components) - 1
    assert was_cut == (whole > BLOB_MAX_BYTES)
    if not was_cut:
        assert back == components


@given(st.text(alphabet=chars, max_size=600))
def test_cut_utf8_respects_character_boundaries(s):
    cut = codec.cut_utf8(s, BLOB_MAX_BYTES)
    assert s.startswith(cut)
    assert len(cut.encode()) <= BLOB_MAX_BYTES
    if len(s.encode()) > BLOB_MAX_BYTES:
        # the next character would not have fitted
        assert len((s[: len(cut) + 1]).encode()) > BLOB_MAX_BYTES


@given(tricky)
def test_escape_round_trip(s):
    e = codec.escape_component(s)
    assert "|" not in e
    assert codec.unescape_component(e) == s


def _events():
    names = [c for comps in PACKED_COMPONENTS.values() for c in comps if c not in ("cut",)]
    singles = [n for n, comps in codec.BLOB_SPECS if comps is None]
    fields = {n: tricky for n in names + singles}
    doubles = {n: st.floats(allow_nan=False, allow_infinity=False, width=64) for n in codec.DOUBLE_NAMES}
    return st.fixed_dictionaries(
        {"timestamp": st.integers(946684800000, 4102444800000)},
        optional={**fields, **doubles},
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_events())
def test_encode_decode_round_trip(event):
    row = codec.encode(event)
    assert len(row.blobs) == 20 and len(row.doubles) == 20
    for b in row.blobs:
        assert len(b.encode("utf-8")) <= BLOB_MAX_BYTES
    back = codec.decode(row)
    cut = set(filter(None, back["cut"].split(",")))
    for name, value in event.items():
        if name == "timestamp":
            assert back["timestamp"] == value
        elif name in codec.DOUBLE_NAMES:
            assert back[name] == value
        else:
            blob = next(i for i, (n, comps) in enumerate(codec.BLOB_SPECS, 1) if n == name or (comps and name in comps))
            if f"blob{blob}" in cut:
                assert str(value).startswith(back[name])
            else:
                assert back[name] == str(value), name
    assert row.as_dict()["_sample_interval"] == 1


@given(st.text(alphabet=chars, min_size=257, max_size=2000))
def test_over_long_single_blob_is_cut_and_recorded(url):
    row = codec.encode({"timestamp": 1741612800000, "url": url, "referrer": "keep|me%"})
    back = codec.decode(row)
    if len(url.encode()) > BLOB_MAX_BYTES:
        assert "blob5" in back["cut"].split(",")
        assert url.startswith(back["url"])
    assert back["referrer"] == "keep|me%"


@given(st.lists(_events(), min_size=1, max_size=20))
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
def test_arrow_round_trip(events):
    rows = [codec.encode(e) for e in events]
    table = codec.rows_to_table(rows)
    assert table.schema.equals(codec.ROW_SCHEMA, check_metadata=False)
    back = codec.table_to_rows(table)
    for a, b in zip(rows, back, strict=True):
        assert a.timestamp == b.timestamp and a.blobs == b.blobs
        for x, y in zip(a.doubles, b.doubles, strict=True):
            assert (math.isnan(x) and math.isnan(y)) or x == y


def test_field_map_matches_design():
    # DESIGN.md: blob1 site, blob2 visitor, blob3 session, blob4 type, blob5 url, blob6 referrer,
    # blob7 identity, blob8 utm, blob9 device, blob10 geo; double1..16 scores, 17 scroll, 18 top, 19 clicks, 20 ts
    assert [n for n, _ in codec.BLOB_SPECS[:10]] == [
        "site_id", "visitor_id", "session_id", "event_type", "url", "referrer", "identity", "utm", "device", "geo"]
    assert PACKED_COMPONENTS["identity"] == ("cookie", "hem", "gclid", "fbclid", "msclkid")
    assert PACKED_COMPONENTS["utm"] == ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
    assert PACKED_COMPONENTS["device"] == ("device_type", "browser", "os", "screen")
    assert PACKED_COMPONENTS["geo"] == ("country", "region", "city", "lat", "lon")
    assert codec.DOUBLE_NAMES[:3] == ("intent", "engagement", "frustration")
    assert codec.DOUBLE_NAMES[14] == "bot_probability" and codec.DOUBLE_NAMES[19] == "ts_ms"
    assert codec.ROW_SCHEMA.field("timestamp").type == pa.timestamp("ms", tz="UTC")


def test_article_example_row():
    row = codec.encode({
        "timestamp": 1741612800000, "site_id": "site_abc123", "visitor_id": "v_lq8x2f3k_abc123def",
        "session_id": "s_m1n2o3p4", "event_type": "page_view", "url": "/pricing",
        "cookie": "v_abc", "hem": "b4c9", "gclid": "EAI",
        "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand", "utm_term": "identity",
        "utm_content": "ad1", "device_type": "desktop", "browser": "Chrome", "os": "macOS", "screen": "1920x1080",
        "country": "US", "region": "CA", "city": "San Francisco", "lat": 37.77, "lon": -122.42, "intent": 73.0,
    })
    assert row.blobs[:10] == ["site_abc123", "v_lq8x2f3k_abc123def", "s_m1n2o3p4", "page_view", "/pricing", "",
                              "v_abc|b4c9|EAI||", "google|cpc|brand|identity|ad1", "desktop|Chrome|macOS|1920x1080",
                              "US|CA|San Francisco|37.77|-122.42"]
    assert row.doubles[0] == 73.0 and row.doubles[19] == 1741612800000.0
    assert row.index1 == "site_abc123"


def test_lone_surrogates_become_replacement_characters():
    row = codec.encode({"timestamp": 1741612800000, "url": "/a\ud800b", "cookie": "x\udfffy"})
    back = codec.decode(row)
    assert back["url"] == "/a\ufffdb" and back["cookie"] == "x\ufffdy"
    codec.rows_to_table([row])  # writable


def _wild_events():
    """Events as the flusher meets them: strings (incl. lone surrogates and over-long ones),
    numbers, bools, None, a props mapping, string doubles, huge ints, an earlier cut."""
    names = [c for comps in PACKED_COMPONENTS.values() for c in comps if c != "cut"]
    singles = [n for n, comps in codec.BLOB_SPECS if comps is None]
    value = (tricky | long_text | st.text(max_size=12) | st.none() | st.booleans()
             | st.integers(-(2**70), 2**70) | st.floats(width=64))
    doubles = (st.floats(width=64) | st.none() | st.integers(-(2**60), 2**60) | st.booleans()
               | st.sampled_from(["", "1.5", "nope"]))
    return st.fixed_dictionaries(
        {"timestamp": st.integers(946684800000, 4102444800000)},
        optional={**{n: value for n in names + singles}, **{n: doubles for n in codec.DOUBLE_NAMES},
                  "props": st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
                  "cut": st.sampled_from(["", "blob5", "blob5,blob6"])},
    )


def _same_tables(a, b) -> None:
    assert a.schema.equals(b.schema, check_metadata=True)
    assert a.num_rows == b.num_rows
    for name in a.schema.names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if name.startswith("double"):
            x = ["nan" if v != v else v for v in x]
            y = ["nan" if v != v else v for v in y]
        assert x == y, name


@given(st.lists(_wild_events(), min_size=0, max_size=12))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_encode_table_equals_the_row_encoder(events):
    _same_tables(codec.encode_table(events), codec.rows_to_table([codec.encode(e) for e in events]))


def test_encode_table_keeps_row_order_when_some_rows_are_cut():
    events = [{"timestamp": 1741612800000 + i, "url": ("/x" * 200 if i % 3 == 1 else f"/p{i}"),
               "utm_source": "a|b%" if i % 2 else "plain", "site_id": "site_a"} for i in range(9)]
    table = codec.encode_table(events)
    _same_tables(table, codec.rows_to_table([codec.encode(e) for e in events]))
    assert [r.timestamp for r in codec.table_to_rows(table)] == [e["timestamp"] for e in events]
    cut_rows = [i for i, r in enumerate(codec.table_to_rows(table)) if "blob5" in codec.decode(r)["cut"]]
    assert cut_rows == [1, 4, 7]


@given(st.lists(_wild_events(), min_size=0, max_size=8))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_encode_columns_equals_encode_table(events):
    names = sorted({k for e in events for k in e})
    columns = {k: [e.get(k) for e in events] for k in names}
    _same_tables(codec.encode_columns(columns, len(events)), codec.encode_table(events))


@given(st.lists(_wild_events(), min_size=0, max_size=8))
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
def test_encode_columns_from_json_equals_the_row_encoder(events):
    """``from_json`` skips the Python type scans: the same table for anything but bytes."""
    names = sorted({k for e in events for k in e})
    columns = {k: [e.get(k) for e in events] for k in names}
    want = codec.rows_to_table([codec.encode(e) for e in events])
    _same_tables(codec.encode_columns(columns, len(events), from_json=True), want)
    _same_tables(codec.encode_table(events, from_json=True), want)


# number columns of one type (pixel positions, session numbers): packed in Arrow, not per value
_edge_floats = st.sampled_from([0.0, -0.0, 1.0, -3.0, 0.5, 940.25, 1e15, -1e15, 999_999_999_999_999.0, 1e16, 1e-7,
                                2.0**53, 1e300, math.nan, math.inf, -math.inf])
_float_column = st.lists(st.none() | _edge_floats | st.floats(width=64), min_size=1, max_size=10)
_int_column = st.lists(st.none() | st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**70), 2**70)
                       | st.sampled_from([0, -1, 10**15, 2**64 - 1]), min_size=1, max_size=10)


@given(st.sampled_from(["x", "session_number", "lat", "value"]), _float_column | _int_column,
       st.booleans())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_number_columns_are_packed_exactly_like_the_row_encoder(name, column, from_json):
    events = [{"timestamp": 1741612800000 + i, name: v} for i, v in enumerate(column)]
    columns = {"timestamp": [e["timestamp"] for e in events], name: column}
    table = codec.encode_columns(columns, len(events), from_json=from_json)
    _same_tables(table, codec.rows_to_table([codec.encode(e) for e in events]))


def test_number_columns_in_arrow_format_like_fmt_number():
    blob = f"blob{codec.BLOB_INDEX['click']}"
    xs = [940.0, -0.0, 0.5, 1e15, 999_999_999_999_999.0, math.nan, None, math.inf, 1e-7]
    table = codec.encode_columns({"timestamp": [1] * len(xs), "x": xs}, len(xs), from_json=True)
    assert [b.split("|")[1] for b in table.column(blob).to_pylist()] == [
        "940", "0", "0.5", "1000000000000000.0", "999999999999999", "", "", "", "1e-07"]
    ns = [1, None, 2**64 - 1, -5]  # beyond int64: value by value
    table = codec.encode_columns({"timestamp": [1] * len(ns), "session_number": ns}, len(ns), from_json=True)
    meta = f"blob{codec.BLOB_INDEX['meta']}"
    assert [b.split("|")[1] for b in table.column(meta).to_pylist()] == ["1", "", str(2**64 - 1), "-5"]
