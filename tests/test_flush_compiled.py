"""The flush's compiled reader of ``"r1"`` log records (ingest_worker/_r1_columns.pyx).

It must publish exactly what the orjson path publishes -- the same files, byte for byte,
and the same counts -- for any log, and read the usual log itself (not hand everything to
the orjson path, which would pass the first test trivially).  Its number reading must give
the double Python gives for every JSON number it takes; anything it does not take, it
refuses with a reason (the orjson path then decides)."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream_lake import codec
from clickstream_lake.lake import LakeLayout
from ingest_worker.durable_log import frame
from ingest_worker.events import ROW_FIELDS_V1
from ingest_worker.flusher import COLUMNAR_ENV, R1_KINDS, columnar_reader, flush_segments

READER, WHY = columnar_reader()
needs_reader = pytest.mark.skipif(READER is None, reason=f"compiled log reader not in use: {WHY}")

T0 = 1741612800000  # a midnight: rows on both sides of it land in two partitions
KIND = dict(zip(ROW_FIELDS_V1, R1_KINDS.decode(), strict=True))


def test_the_compiled_reader_is_in_use():
    """CI proves the build: a fresh clone's make test must flush with the compiled reader."""
    if os.environ.get(COLUMNAR_ENV) == "0":
        pytest.skip(f"{COLUMNAR_ENV}=0 turns the compiled reader off")
    assert READER is not None, WHY


# --- values the reader must take, and values it must refuse ----------------------------------
_TEXT = (st.text(max_size=12)
         | st.text(alphabet="|%\\\"/\n\t\x00\x1féñ€😀\u2028", max_size=10)
         | st.sampled_from(["", "x" * 300, "é" * 140, "|" * 90, "50% off|now", "a\\u0041"]))
_NUMBER = (st.none() | st.floats(allow_nan=False, allow_infinity=False)
           | st.integers(-(10**15) + 1, 10**15 - 1) | st.sampled_from([0.0, -0.0, 940.0, 1e15, 1e16, 0.1, 5e-324]))
_REFUSED = st.sampled_from([True, False, [1], {"k": 1}, 10**15, -(10**17), 2**70, "\ud800"])


@st.composite
def _row(draw, i: int, odd: bool) -> list:
    values = []
    for name in ROW_FIELDS_V1:
        kind = KIND[name]
        if kind == "T":
            values.append(T0 + draw(st.sampled_from([i, -1 - i, 86_400_000 + i, 7])))
        elif name == "site_id":
            values.append(draw(st.sampled_from(["site_a", "site_a", "site_b"])))
        elif name == "event_id":
            values.append(draw(st.sampled_from([f"e{i}", f"e{i}", "e1", "e2", "", None])))
        elif kind == "S":
            values.append(draw(st.none() | _TEXT))
        else:
            values.append(draw(_NUMBER))
    if odd and draw(st.integers(0, 3)) == 0:  # a value the reader does not take
        values[draw(st.integers(0, len(values) - 1))] = draw(_REFUSED | _TEXT | _NUMBER)
    return values


def _payload(draw, values: list) -> bytes:
    how = draw(st.sampled_from(["orjson", "orjson", "ascii", "json"]))
    if how == "orjson":
        try:
            return orjson.dumps(["r1", values])
        except orjson.JSONEncodeError:  # a lone surrogate, an int beyond 64 bits
            how = "ascii"
    # \uXXXX escapes and pairs; a lone surrogate raw (surrogatepass): invalid UTF-8
    return json.dumps(["r1", values], ensure_ascii=how == "ascii").encode("utf-8", "surrogatepass")


@st.composite
def _log(draw, odd: bool) -> list[bytes]:
    """r1 rows, with quarantine records and now and then a "v" or "e" record (a site with
    models off, a value orjson refuses) among them -- their ids may meet the rows'."""
    out = []
    for i in range(draw(st.integers(1, 16))):
        what = draw(st.integers(0, 19))
        if what < 2:
            out.append(orjson.dumps(["q", T0 + i, "site_a", f"q{i % 3}", "invalid_type", "bad type", 400, i,
                                     "application/json", "ua", '{"type": "nope"}']))
        elif what == 2:
            values = dict(zip(ROW_FIELDS_V1, draw(_row(i, odd=False)), strict=True))
            out.append(orjson.dumps(["v", {k: v for k, v in values.items() if v is not None}]))
        elif what == 3:
            row = codec.encode(dict(zip(ROW_FIELDS_V1, draw(_row(i, odd=False)), strict=True)))
            out.append(orjson.dumps(["e", row.timestamp, row.index1, row.blobs, row.doubles]))
        else:
            out.append(_payload(draw, draw(_row(i, odd))))
    return out


def _flush(tmp: Path, name: str, payloads: list[bytes], *, columnar: bool):
    seg = tmp / f"log-{name}" / "seg-000000000001.log"
    seg.parent.mkdir(parents=True)
    seg.write_bytes(b"".join(frame(p) for p in payloads))
    lake = LakeLayout.local(tmp / f"lake-{name}")
    res = flush_segments([seg], lake, dedupe_against_lake=False, columnar=columnar)
    root = Path(lake.base)
    files = {}
    for f in root.rglob("*.parquet"):
        part = str(f.parent.relative_to(root))
        assert part not in files, f"two files in {part}"
        files[part] = f.read_bytes()
    return res, files


def _same_flush(tmp: Path, payloads: list[bytes]):
    want, want_files = _flush(tmp, "orjson", payloads, columnar=False)
    got, got_files = _flush(tmp, "compiled", payloads, columnar=True)
    assert want.compiled_rows == 0
    assert (got.events, got.quarantined, got.duplicates, got.corrupt_records, got.files) == (
        want.events, want.quarantined, want.duplicates, want.corrupt_records, want.files)
    assert sorted(got_files) == sorted(want_files)
    for part in want_files:
        assert got_files[part] == want_files[part], f"{part}: the Parquet files differ"
    return got


@needs_reader
@given(_log(odd=False))
@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_the_compiled_reader_publishes_the_same_files_and_reads_them_itself(tmp_path_factory, payloads):
    res = _same_flush(tmp_path_factory.mktemp("flushc"), payloads)
    if not any(p.startswith((b'["v"', b'["e"')) for p in payloads):  # (their ids may meet the rows')
        assert res.compiled_rows == sum(p.startswith(b'["r1",') for p in payloads)  # it read every row itself


@needs_reader
@given(_log(odd=True))
@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_a_log_the_reader_refuses_publishes_the_same_files(tmp_path_factory, payloads):
    _same_flush(tmp_path_factory.mktemp("flushodd"), payloads)


@needs_reader
def test_corrupt_rows_or_ids_meeting_across_kinds_leave_the_whole_flush_to_orjson(tmp_path):
    rows = [["r1", [T0 + i if n == "timestamp" else "site_a" if n == "site_id" else f"e{i}" if n == "event_id"
                    else (1.5 if KIND[n] == "N" else "x") for n in ROW_FIELDS_V1]] for i in range(4)]
    plain = [orjson.dumps(r) for r in rows]
    v_record = orjson.dumps(["v", {"timestamp": T0 + 9, "site_id": "site_a", "event_id": "e1", "url": "/v"}])
    short = orjson.dumps(["r1", rows[0][1][:-1]])
    bad_site = orjson.dumps(["r1", [("bad site" if n == "site_id" else v) for n, v in zip(ROW_FIELDS_V1, rows[1][1],
                                                                                             strict=True)]])
    for i, payloads in enumerate([plain + [v_record], plain + [short], plain + [bad_site], [v_record] + plain]):
        res = _same_flush(tmp_path / str(i), payloads)  # (the "v" record's id is a row's: the log order decides)
        assert res.compiled_rows == 0
    assert _same_flush(tmp_path / "plain", plain).compiled_rows == 4
    # a "v" record of its own id (a site with models off) does not stop the reader
    other_id = orjson.dumps(["v", {"timestamp": T0 + 1, "site_id": "site_a", "event_id": "v1", "url": "/v"}])
    res = _same_flush(tmp_path / "mixed", [plain[0], other_id, *plain[1:]])
    assert (res.compiled_rows, res.events) == (4, 5)


# --- the reader itself -----------------------------------------------------------------------
def _read(values: list, kinds: bytes = b"TN"):
    return READER.r1_columns([orjson.dumps(["r1", values])], kinds)


@needs_reader
@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=1000, deadline=None)
def test_every_double_reads_back_exactly(x):
    cols, why = _read([T0, x])
    assert why is None
    assert struct.pack("<d", cols[1][0].as_py()) == struct.pack("<d", x)


@needs_reader
@given(st.integers(0, 10**19 - 1), st.integers(0, 19), st.integers(-40, 40), st.booleans())
@settings(max_examples=1000, deadline=None)
def test_decimal_text_reads_as_python_reads_it(digits, point, exponent, negative):
    text = str(digits).rjust(point + 1, "0")
    text = f"{'-' if negative else ''}{text[:len(text) - point]}.{text[len(text) - point:] or '0'}e{exponent}"
    cols, why = READER.r1_columns([b'["r1",[1,' + text.encode() + b"]]"], b"TN")
    assert why is None, text
    assert struct.pack("<d", cols[1][0].as_py()) == struct.pack("<d", float(text)), text


@needs_reader
def test_values_become_the_columns_the_encoder_takes():
    cols, why = READER.r1_columns([b'["r1",[1741612800000,"a\\"b\\u00e9\\ud83d\\ude00|%",null,null,-0,12.5e1]]',
                                   b'[ "r1" , [ 5 , "" , "x\\n" , 7 , 123456789012345 , 0.1 ] ]'], b"TSSNNN")
    assert why is None
    assert [c.type for c in cols] == ["int64", "string", "string", "double", "double", "double"]
    assert cols[0].to_pylist() == [1741612800000, 5]
    assert cols[1].to_pylist() == ['a"bé😀|%', ""]
    assert cols[2].to_pylist() == ["", "x\n"]  # null → "" as the row encoder makes of it
    assert math.isnan(cols[3][0].as_py()) and cols[3][1].as_py() == 7.0  # null → NaN
    assert cols[4].to_pylist() == [0.0, 123456789012345.0]
    assert cols[5].to_pylist() == [125.0, 0.1]


@needs_reader
@pytest.mark.parametrize("record, reason", [
    (b'["r1",[1,"a",2]]', "a third value"),
    (b'["r1",[1,"a"]] x', "trailing bytes"),
    (b'["r2",[1,"a"]]', "another kind"),
    (b'["r1",[1.5,"a"]]', "a float timestamp"),
    (b'["r1",[null,"a"]]', "a null timestamp"),
    (b'["r1",[1,true]]', "a boolean"),
    (b'["r1",[1,["a"]]]', "a nested value"),
    (b'["r1",[1,3]]', "a number in a string column"),
    (b'["r1",[1,"\\ud800"]]', "a lone surrogate escape"),
    (b'["r1",[1,"\\udc00\\ud800"]]', "a reversed pair"),
    (b'["r1",[1,"\xff"]]', "invalid UTF-8"),
    (b'["r1",[1,"\xed\xa0\x80"]]', "an encoded surrogate"),
    (b'["r1",[1,"\xc0\xaf"]]', "an overlong encoding"),
    (b'["r1",[1,"a\x01"]]', "a raw control character"),
    (b'["r1",[1,"a\\x"]]', "an unknown escape"),
    (b'["r1",[1,"a', "a torn string"),
    (b'["r1",[01,"a"]]', "a leading zero"),
])
def test_what_the_reader_refuses_it_says(record, reason):
    cols, why = READER.r1_columns([orjson.dumps(["r1", [1, "ok"]]), record], b"TS")
    assert cols is None, reason
    assert "record 1" in why


@needs_reader
@pytest.mark.parametrize("number", [b"1234567890123456", b"-10000000000000000", b"1e400", b"-1e999", b"1.", b".5",
                                    b"1e", b"-", b"NaN", b"Infinity", b"1." + b"0" * 70,
                                    # found by review: an exponent cut short once read a wrong value
                                    b"0." + b"0" * 99_999 + b"1e1000000", b"0." + b"0" * 100_026 + b"1e1000000"],
                         ids=lambda n: n[:24].decode() + ("..." if len(n) > 24 else ""))
def test_numbers_it_does_not_take_are_refused(number):
    cols, why = READER.r1_columns([b'["r1",[1,' + number + b"]]"], b"TN")
    assert cols is None and why


@needs_reader
def test_only_bytes_are_read():
    with pytest.raises(TypeError, match="record 1 is bytearray"):
        READER.r1_columns([b'["r1",[1]]', bytearray(b'["r1",[1]]')], b"T")
    with pytest.raises(ValueError, match="exactly one T column"):
        READER.r1_columns([b'["r1",["a"]]'], b"S")
