"""Property test: ``flush_segments`` publishes exactly what a plain row-by-row reading of the
log gives -- the same rows, values and order in every partition, the same quarantine rows,
and the same counts of events, duplicates and corrupt records -- for wild logs: r1, v, e and
q records mixed, duplicates, corrupt ones (bad JSON, NaN tokens, lone surrogate escapes,
short r1 records, bad site ids or timestamps, unknown kinds), huge ints, odd value types."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream_lake import codec
from clickstream_lake.lake import LakeLayout, check_site_id, day_of
from ingest_worker.durable_log import frame
from ingest_worker.events import ROW_FIELDS_V1
from ingest_worker.flusher import ROW_KINDS, _quarantine_table, flush_segments, record_key, record_values

T0 = 1741612800000  # a midnight: rows on both sides of it land in two partitions
_SITES = st.sampled_from(["site_a", "site_a", "site_b", "bad site", "a..b", "", 7, None, ["site_a"]])
_TS = st.sampled_from([T0, T0 + 5, T0 - 1, T0 + 86_400_000, float(T0 + 7), str(T0), 2**70, None, "soon", 1.5e12])
_EIDS = st.sampled_from(["e1", "e2", "e3", "e1", "", None, 17, ["e"]])
_ODD = st.sampled_from(["a|b", "50%", "é" * 200, "x" * 300, "\u2028", {"k": 1}, [1, 2], True, False,
                        2**64 - 1, 2**70, -(2**63) - 1, 1e300, -0.0, 0.5, 940.0, "1.5", ""])
_VALUE = st.none() | st.text(max_size=6) | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | _ODD
_TAIL = st.sampled_from([None] * 8 + ["nan", "inf", "surrogate", "truncated", "kind"])  # how a record is spoiled


def _base_values(i: int) -> list:
    values = [None] * len(ROW_FIELDS_V1)
    for k, name in enumerate(ROW_FIELDS_V1):
        if name in codec.SCORE_NAMES:
            values[k] = float(i % 7) * 3.5
    named = {"site_id": "site_a", "timestamp": T0 + i, "event_id": f"e{i}", "event_type": "click",
             "url": f"/p/{i}", "x": float(i * 10), "y": 20.0, "session_number": i % 3 or None,
             "ts_ms": float(T0 + i), "screen": "1440x900", "utm_source": "news" if i % 2 else ""}
    for name, v in named.items():
        values[ROW_FIELDS_V1.index(name)] = v
    return values


@st.composite
def _record(draw, i: int) -> bytes:
    kind = draw(st.sampled_from(["r1", "r1", "r1", "v", "e", "q"]))
    values = _base_values(i)
    if draw(st.booleans()):
        values[ROW_FIELDS_V1.index("site_id")] = draw(_SITES)
    if draw(st.booleans()):
        values[ROW_FIELDS_V1.index("timestamp")] = draw(_TS)
    if draw(st.booleans()):
        values[ROW_FIELDS_V1.index("event_id")] = draw(_EIDS)
    for _ in range(draw(st.integers(0, 4))):
        values[draw(st.integers(0, len(ROW_FIELDS_V1) - 1))] = draw(_VALUE)
    if kind == "r1":
        rec = ["r1", values[: draw(st.sampled_from([len(values)] * 5 + [len(values) - 1]))]]
    elif kind == "v":
        rec = ["v", {k: v for k, v in zip(ROW_FIELDS_V1, values, strict=True) if v is not None}]
    elif kind == "e":  # (a timestamp Arrow refuses would fail the flush, before and after: not drawn)
        row = codec.encode({**dict(zip(ROW_FIELDS_V1, values, strict=True)), "timestamp": T0 + i})
        rec = ["e", ts if type(ts := values[0]) is int or ts is None else T0 + i, values[1], row.blobs, row.doubles]
    else:
        rec = ["q", ts if type(ts := values[0]) is int or ts is None else T0 + i, values[1], draw(st.sampled_from(["q1", "q2", "q1", f"q{i}"])), "invalid_type",
               "bad type", 400, 0, "application/json", "ua", '{"type": "nope"}']
    spoil = draw(_TAIL)
    if spoil == "nan":
        return json.dumps(rec[:-1] + [math.nan] if kind != "r1" else ["r1", rec[1][:-1] + [math.nan]]).encode()
    if spoil == "surrogate":
        return json.dumps(rec + ["\ud800"]).encode()  # an escaped lone surrogate: orjson refuses it
    try:
        payload = orjson.dumps(rec)
    except orjson.JSONEncodeError:  # an int beyond 64 bits: orjson reads it back as a float
        payload = json.dumps(rec).encode()
    if spoil == "truncated":
        return payload[:-2]
    if spoil == "kind":
        return payload.replace(b'"' + kind.encode() + b'"', b'"zz"', 1)
    if spoil == "inf":
        return payload.replace(b"]", b",1e400]", 1)
    return payload


@st.composite
def _log(draw) -> list[bytes]:
    return [draw(_record(i)) for i in range(draw(st.integers(1, 24)))]


def _reference(payloads: list[bytes]) -> tuple[dict, dict, int, int]:
    """The log read record by record with the row encoder: ``{(site, day): rows}``,
    ``{(site, day): quarantine records}``, duplicates, corrupt records."""
    events: dict = {}
    quarantine: dict = {}
    duplicates = corrupt = 0
    for payload in payloads:
        try:
            rec = orjson.loads(payload)
            kind = rec[0]
            if kind in ROW_KINDS:
                site, ts, eid = record_key(rec)
                check_site_id(site)
                bucket, key = events.setdefault((site, day_of(ts)), {}), eid or object()
            elif kind == "q":
                check_site_id(rec[2])
                bucket, key = quarantine.setdefault((rec[2], day_of(rec[1])), {}), rec[3]
            else:
                raise ValueError(kind)
        except (ValueError, IndexError, TypeError, OverflowError, KeyError, OSError):
            corrupt += 1
            continue
        if key in bucket:
            duplicates += 1
        else:
            bucket[key] = rec
    rows = {}
    for part, recs in events.items():
        by_kind = {"r1": [], "v": [], "e": []}  # each kind packed apart, then one stable sort by time
        for rec in recs.values():
            if rec[0] == "e":
                by_kind["e"].append(codec.AERow(int(rec[1]), rec[2], rec[3], [math.nan if d is None else d
                                                                           for d in rec[4]]))
            else:
                by_kind[rec[0]].append(codec.encode(record_values(rec)))
        rows[part] = sorted(by_kind["r1"] + by_kind["v"] + by_kind["e"], key=lambda r: r.timestamp)
    return rows, {p: list(q.values()) for p, q in quarantine.items()}, duplicates, corrupt


def _same_rows(got: list[codec.AERow], want: list[codec.AERow]) -> None:
    assert [(r.timestamp, r.index1, r.blobs) for r in got] == [(r.timestamp, r.index1, r.blobs) for r in want]
    for a, b in zip(got, want, strict=True):
        assert [("nan" if d != d else d) for d in a.doubles] == [("nan" if d != d else d) for d in b.doubles]


@given(_log())
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_flush_publishes_what_the_log_says_record_by_record(tmp_path_factory, payloads):
    tmp = tmp_path_factory.mktemp("flushprop")
    seg = tmp / "seg-000000000001.log"
    seg.write_bytes(b"".join(frame(p) for p in payloads))
    lake = LakeLayout.local(tmp / "lake")
    try:
        rows, quarantine, duplicates, corrupt = _reference(payloads)
    except Exception as e:  # noqa: BLE001 - e.g. OSError of a timestamp beyond the platform's time_t
        with pytest.raises(type(e)):  # the flush fails the same way (and is retried, as before)
            flush_segments([seg], lake, dedupe_against_lake=False)
        assert gc.isenabled()
        return
    res = flush_segments([seg], lake, dedupe_against_lake=False)
    assert gc.isenabled()
    assert (res.events, res.quarantined, res.duplicates, res.corrupt_records) == (
        sum(map(len, rows.values())), sum(map(len, quarantine.values())), duplicates, corrupt)
    for (site, day), want in rows.items():
        files = list(Path(lake.partition_dir(site, day)).glob("*.parquet"))
        assert len(files) == 1
        table = pq.read_table(files[0])
        assert table.schema.metadata[b"clickstream.schema"] == b"ae-row/1"
        _same_rows(codec.table_to_rows(table), want)
    published = sorted(str(p.parent) for p in Path(lake.events_dir()).glob("*/*/*.parquet"))
    assert published == sorted(lake.partition_dir(site, day) for site, day in rows)
    for (site, day), recs in quarantine.items():
        files = list(Path(f"{lake.quarantine_dir(site)}/dt={day}").glob("*.parquet"))
        assert len(files) == 1
        assert pq.read_table(files[0]).to_pylist() == _quarantine_table(recs).to_pylist()


def test_a_timestamp_beyond_time_t_is_a_corrupt_record_not_a_stalled_flush(tmp_path):
    far = _base_values(1)
    far[ROW_FIELDS_V1.index("timestamp")] = 2**70  # orjson reads it back as 1.18e21: no such day
    records = [json.dumps(["r1", far]).encode(), orjson.dumps(["r1", _base_values(2)]),
               json.dumps(["q", 2**70, "site_a", "q-1", "bad_json", "", 400, None, "", "", ""]).encode()]
    seg = tmp_path / "seg-000000000001.log"
    seg.write_bytes(b"".join(frame(r) for r in records))
    lake = LakeLayout.local(tmp_path / "lake")
    res = flush_segments([seg], lake, dedupe_against_lake=False)
    assert (res.events, res.corrupt_records) == (1, 2)
    files = list(Path(lake.events_dir("site_a")).glob("dt=*/*.parquet"))
    assert [r.blobs for f in files for r in codec.table_to_rows(pq.read_table(f))] == [
        codec.encode(record_values(["r1", _base_values(2)])).blobs]
