"""Codec benchmark: AE-row encode/decode in Python, and the SQL decoded view over 1M rows.

    python benchmarks/codec.py [--rows N] [--view-rows M] [--json]

Rows are realistic: simulated traffic (clickstream_lake.simulate) through the tracking
contract (ingest_worker.normalize) and the row builder (ingest_worker.events.to_row_values),
with scores filled in.  Python figures: rows/s of ``codec.encode`` and ``codec.decode`` over
``--rows`` rows.  SQL figures: ``--view-rows`` encoded rows are written to one zstd Parquet
file, then the same aggregate is run through the decoded ``events`` view (split_part +
url_decode of the packed blobs) and, as the baseline, over the raw ``clickstream_events``
columns; the ratio says what decoding costs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from clickstream_lake import codec
from clickstream_lake.resources import read_sql
from clickstream_lake.simulate import SimConfig, generate
from ingest_worker.events import TrackedEvent, to_row_values
from ingest_worker.normalize import parse_event, request_info

END_MS = 1772323200000  # 2026-03-01, fixed so every run measures the same rows

VIEW_SQL = """SELECT count(*), sum(length(utm_source)), sum(length(city)), sum(coalesce(value, 0)),
       count(DISTINCT browser), sum(intent) FROM events"""
RAW_SQL = """SELECT count(*), sum(length(blob8)), sum(length(blob10)), sum(length(blob15)),
       count(DISTINCT blob9), sum(double1) FROM clickstream_events"""


def sample_values(n: int) -> list[dict]:
    """``n`` flat row dicts from simulated traffic (cycled when the simulation is shorter)."""
    rnd = random.Random(1)
    out: list[dict] = []
    for sim in generate(SimConfig(sites=3, days=2, seed=7, end_ms=END_MS, visitors_per_site=max(20, n // 60))):
        ev = parse_event(sim.body, request_info(sim.site_id, sim.headers, "127.0.0.1", END_MS))
        assert isinstance(ev, TrackedEvent)
        ev.visitor_id = ev.request.cookie_visitor_id or ev.sdk_visitor_id or sim.visitor_key
        ev.session_id = sim.session_key
        ev.device_type, ev.browser, ev.os = "desktop", "Chrome", "Windows"
        ev.scores = {name: rnd.uniform(0, 100) for name in codec.SCORE_NAMES}
        out.append(to_row_values(ev))
        if len(out) >= n:
            break
    base = len(out)
    while len(out) < n:
        out.append(out[len(out) % base])
    return out


def rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def best_time(con: duckdb.DuckDBPyConnection, sql: str, repeat: int) -> tuple[float, tuple]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = con.sql(sql).fetchall()[0]
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def write_parquet(rows: list[codec.AERow], total: int, path: Path) -> None:
    """``total`` rows: the encoded rows repeated (timestamps shifted so rows stay distinct)."""
    table = codec.rows_to_table(rows)
    writer = pq.ParquetWriter(path, codec.ROW_SCHEMA, compression="zstd")
    ts = table.column("timestamp").cast(pa.int64())
    written, shift = 0, 0
    while written < total:
        chunk = table.slice(0, min(table.num_rows, total - written))
        shifted = pa.compute.add(ts.slice(0, chunk.num_rows), shift).cast(pa.timestamp("ms", tz="UTC"))
        chunk = chunk.set_column(0, codec.ROW_SCHEMA.field("timestamp"), shifted)
        writer.write_table(chunk, row_group_size=122_880)
        written += chunk.num_rows
        shift += 1
    writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows for the Python encode/decode timings")
    ap.add_argument("--view-rows", type=int, default=1_000_000, help="rows in the Parquet file for the SQL view")
    ap.add_argument("--repeat", type=int, default=3, help="runs per SQL query (median reported)")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = ap.parse_args(argv)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))

    say(f"building {args.rows:,} realistic rows from simulated traffic ...")
    values = sample_values(min(args.rows, 50_000))
    values = (values * (args.rows // len(values) + 1))[: args.rows]
    rows: list[codec.AERow] = []
    encode_rps = rate(len(values), lambda: rows.extend(codec.encode(v) for v in values))
    decode_rps = rate(len(rows), lambda: [codec.decode(r) for r in rows])
    to_table_rps = rate(len(rows), lambda: codec.rows_to_table(rows))
    # the flusher's bulk path beside the row encoder it replaces (encode + rows_to_table), same values
    row_wise_s = len(values) / encode_rps + len(rows) / to_table_rps
    encode_table_rps = rate(len(values), lambda: codec.encode_table(values))

    with tempfile.TemporaryDirectory(prefix="codec-bench-") as tmp:
        path = Path(tmp) / "events.parquet"
        say(f"writing {args.view_rows:,} rows to Parquet ...")
        write_parquet(rows[:50_000], args.view_rows, path)
        con = duckdb.connect()
        con.execute(f"CREATE VIEW clickstream_events AS SELECT * FROM read_parquet('{path}')")
        con.execute(read_sql("views/events.sql"))
        view_s, view_res = best_time(con, VIEW_SQL, args.repeat)
        raw_s, raw_res = best_time(con, RAW_SQL, args.repeat)
        assert view_res[0] == raw_res[0] == args.view_rows
        size_mb = path.stat().st_size / 1e6
        con.close()

    figures = {
        "python_rows": args.rows,
        "encode_rows_per_s": round(encode_rps),
        "decode_rows_per_s": round(decode_rps),
        "rows_to_table_rows_per_s": round(to_table_rps),
        "encode_table_rows_per_s": round(encode_table_rps),
        "encode_table_speedup_vs_row_wise": round(row_wise_s / (len(values) / encode_table_rps), 2),
        "view_rows": args.view_rows,
        "parquet_mb": round(size_mb, 1),
        "sql_view_rows_per_s": round(args.view_rows / view_s),
        "sql_raw_rows_per_s": round(args.view_rows / raw_s),
        "sql_view_seconds": round(view_s, 3),
        "sql_raw_seconds": round(raw_s, 3),
        "view_over_raw_time_ratio": round(view_s / raw_s, 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="AE-row codec")
        t.add_column("what")
        t.add_column("rows", justify="right")
        t.add_column("rows/s", justify="right")
        t.add_row("Python encode (codec.encode)", f"{args.rows:,}", f"{encode_rps:,.0f}")
        t.add_row("Python decode (codec.decode)", f"{args.rows:,}", f"{decode_rps:,.0f}")
        t.add_row("Python rows_to_table (Arrow)", f"{args.rows:,}", f"{to_table_rps:,.0f}")
        t.add_row("Python encode_table (column-wise: flusher)", f"{args.rows:,}", f"{encode_table_rps:,.0f}")
        t.add_row("  vs encode + rows_to_table (baseline)", "",
                  f"{figures['encode_table_speedup_vs_row_wise']:.2f}x faster")
        t.add_row("SQL decoded view (events)", f"{args.view_rows:,}", f"{args.view_rows / view_s:,.0f}")
        t.add_row("SQL raw columns (baseline)", f"{args.view_rows:,}", f"{args.view_rows / raw_s:,.0f}")
        Console().print(t)
        print(f"decoded view takes {view_s / raw_s:.2f}x the time of the raw query "
              f"({view_s:.3f}s vs {raw_s:.3f}s over a {size_mb:.1f} MB zstd Parquet file)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
