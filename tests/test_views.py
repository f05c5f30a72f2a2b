"""The SQL decoded view (sql/views/events.sql) agrees with the Python decoder."""

from __future__ import annotations

import math
import random

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream_lake import codec
from clickstream_lake.resources import read_sql

TYPED = {"lat", "lon", "x", "y", "value", "session_number"}


def _view_rows(rows: list[codec.AERow]) -> list[dict]:
    con = duckdb.connect()
    con.register("clickstream_events_arrow", codec.rows_to_table(rows))
    con.execute("CREATE VIEW clickstream_events AS SELECT * FROM clickstream_events_arrow")
    con.execute(read_sql("views/events.sql"))
    rel = con.sql("SELECT * FROM events")
    cols = rel.columns
    return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


def assert_view_matches_decoder(rows: list[codec.AERow]) -> None:
    got = _view_rows(rows)
    assert len(got) == len(rows)
    for row, sql_row in zip(rows, got, strict=True):
        py = codec.decode(row)
        assert int(sql_row["timestamp"].timestamp() * 1000) == py["timestamp"]
        for name, value in py.items():
            if name == "timestamp":
                continue
            s = sql_row[name]
            if name in codec.DOUBLE_NAMES:
                assert (s is None and math.isnan(value)) or (s is not None and math.isnan(s) and math.isnan(value)) or s == value, name
            elif name in TYPED:
                expect = None
                if value != "":
                    try:
                        expect = float(value)
                    except ValueError:
                        expect = None
                assert (s is None and expect is None) or (s is not None and expect is not None and math.isclose(s, expect)), (name, s, value)
            else:
                assert s == value, (name, s, value)
        assert sql_row["path"] == py["url"].split("?", 1)[0]


printable = st.text(alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(list("|%+?")), max_size=30)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.fixed_dictionaries(
    {"timestamp": st.integers(946684800000, 4102444800000)},
    optional={"url": printable, "utm_source": printable, "utm_campaign": printable, "city": printable,
              "cookie": printable, "hem": printable, "browser": printable, "target": printable,
              "lat": st.floats(-90, 90), "value": st.floats(0, 1e6), "intent": st.floats(0, 100),
              "channel": printable, "session_number": st.integers(1, 1000), "title": st.text(max_size=300)},
), min_size=1, max_size=15))
def test_view_equals_python_decoder_on_arbitrary_rows(events):
    assert_view_matches_decoder([codec.encode(e) for e in events])


def test_view_equals_python_decoder_on_realistic_rows():
    rnd = random.Random(3)
    events = []
    for i in range(500):
        events.append({
            "timestamp": 1741612800000 + i * 1000, "site_id": "site_a", "visitor_id": f"v{rnd.randrange(50)}",
            "session_id": f"s{rnd.randrange(80)}", "event_type": rnd.choice(["page_view", "click", "purchase"]),
            "url": rnd.choice(["/", "/pricing?plan=pro&x=1", "/p/100%25-cotton", "/a|b"]),
            "utm_source": rnd.choice(["google", "", "news|letter", "50% off"]), "utm_medium": "cpc",
            "country": "US", "region": "CA", "city": "San Francisco", "lat": 37.77, "lon": -122.42,
            "value": rnd.choice([None, 19.99, 120]), "currency": "USD", "intent": rnd.uniform(0, 100),
            "session_number": rnd.randrange(1, 5), "channel": "Paid Search",
        })
    assert_view_matches_decoder([codec.encode(e) for e in events])


def test_view_equals_python_decoder_on_simulated_rows():
    """Simulated traffic through the tracking contract (normalize) and the row builder
    (events.to_row_values) into AE rows: the SQL view decodes them exactly as Python does."""
    from clickstream_lake.simulate import SimConfig, generate
    from ingest_worker.events import TrackedEvent, to_row_values
    from ingest_worker.normalize import parse_event, request_info

    end_ms = 1772323200000  # 2026-03-01
    rows = []
    kinds = set()
    for sim in generate(SimConfig(sites=2, days=1, seed=21, end_ms=end_ms, visitors_per_site=40)):
        ev = parse_event(sim.body, request_info(sim.site_id, sim.headers, "127.0.0.1", end_ms))
        assert isinstance(ev, TrackedEvent), ev
        # what the identity / session stages would fill in (scores stay empty: NaN doubles)
        ev.visitor_id = ev.request.cookie_visitor_id or ev.sdk_visitor_id or sim.visitor_key
        ev.session_id = sim.session_key
        ev.device_type, ev.browser, ev.os = "desktop", sim.headers["User-Agent"][:40], "Some|OS 100%"
        ev.bot_reasons = ("declared_crawler",) if sim.is_bot else ()
        rows.append(codec.encode(to_row_values(ev)))
        kinds.add(ev.type)
    assert len(rows) > 500 and {"page_view", "click", "purchase", "identify"} <= kinds
    assert any(r.blobs[codec.BLOB_INDEX["utm"] - 1] for r in rows)  # UTM-tagged landings are in there
    assert any("|" in r.blobs[codec.BLOB_INDEX["geo"] - 1] and r.blobs[codec.BLOB_INDEX["geo"] - 1] != "||||" for r in rows)
    assert_view_matches_decoder(rows)
