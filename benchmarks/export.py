"""Benchmark the customer lake export: rows/s to local disk and to a real S3-protocol server
(moto's server on loopback, through s3fs), file sizes per window, and the cost of a re-run
that finds nothing new (the exactly-once check), side by side with a baseline that writes
the same rows as plain Parquet with no bookkeeping.

    python benchmarks/export.py [--rows 240000] [--hours 24] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clickstream_lake import codec  # noqa: E402
from clickstream_lake.control import config as config_mod  # noqa: E402
from clickstream_lake.control import sites as sites_mod  # noqa: E402
from clickstream_lake.control.db import ControlDB  # noqa: E402
from clickstream_lake.export import Exporter, ExportSettings, ExportTarget  # noqa: E402
from clickstream_lake.lake import LakeLayout, day_of, new_file_name, publish_parquet  # noqa: E402
from clickstream_lake.settings import DataDir  # noqa: E402

T0 = 1_773_100_800_000  # 2026-03-10T00:00Z
HOUR = 3_600_000


def build_lake(data: DataDir, n_rows: int, hours: int) -> pa.Table:
    """n_rows spread evenly over `hours` hours, published as ~10-minute flush files."""
    template = codec.rows_to_table(
        [
            codec.encode(
                {
                    "timestamp": T0,
                    "site_id": "bench",
                    "visitor_id": f"v{i % 997}",
                    "session_id": f"s{i % 4001}",
                    "event_type": ("page_view", "click", "scroll", "engagement")[i % 4],
                    "url": f"/products/{i % 113}?ref=x{i % 7}",
                    "referrer": "https://search.example/?q=shoes" if i % 3 == 0 else "",
                    "country": ("DE", "FR", "US", "GB")[i % 4],
                    "browser": ("Chrome", "Firefox", "Safari")[i % 3],
                    "intent": (i * 37) % 100,
                    "engagement": (i * 11) % 100,
                    "scroll_depth": i % 100,
                }
            )
            for i in range(5000)
        ]
    )
    reps = -(-n_rows // template.num_rows)
    table = pa.concat_tables([template] * reps).slice(0, n_rows)
    step = hours * HOUR / n_rows
    ts = pa.array([int(T0 + i * step) for i in range(n_rows)], type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    ids = pa.array([f"e{i:09d}" for i in range(n_rows)])
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", ts)
    table = table.set_column(table.schema.get_field_index("blob18"), "blob18", ids)
    lake = LakeLayout(data.lake_url())
    flush = max(1, n_rows // (hours * 6))
    for off in range(0, n_rows, flush):
        part = table.slice(off, flush)
        day = day_of(int(part.column("timestamp")[0].value))
        publish_parquet(part, lake.fs, f"{lake.partition_dir('bench', day)}/{new_file_name()}")
    return table


def run_export(data: DataDir, url: str, options: dict, hours: int) -> dict:
    settings = ExportSettings.from_env(data, env={}, url=url, storage_options=options)
    now = (T0 + hours * HOUR + 600_000) / 1000

    def make() -> Exporter:
        return Exporter(ControlDB(data.control_db), LakeLayout(data.lake_url()), settings,
                        target=ExportTarget(url, options), clock=lambda: now)

    t = time.perf_counter()
    report = make().export_site("bench")
    first = time.perf_counter() - t
    t = time.perf_counter()
    again = make().export_site("bench")
    rerun = time.perf_counter() - t
    assert again.rows == 0, "re-export wrote rows"
    sizes = [r.bytes for r in report.windows if r.bytes]
    return {
        "rows": report.rows,
        "files": len(report.files),
        "seconds": round(first, 3),
        "rows_per_s": round(report.rows / first),
        "bytes_total": sum(sizes),
        "file_bytes_min": min(sizes),
        "file_bytes_median": int(statistics.median(sizes)),
        "file_bytes_max": max(sizes),
        "rerun_seconds": round(rerun, 3),
    }


def baseline(data: DataDir, hours: int, out: Path) -> dict:
    """The naive export: read the site's partitions, split per hour, write zstd Parquet - no
    exactly-once bookkeeping, no read-back of exported ids, no fsync, no manifest."""
    import pyarrow.dataset as pads

    t = time.perf_counter()
    files = [str(p) for p in Path(data.lake, "events", "site_id=bench").rglob("*.parquet")]
    table = pads.dataset(files, format="parquet").to_table()
    ts = table.column("timestamp").cast(pa.int64())
    for h in range(hours):
        lo, hi = T0 + h * HOUR, T0 + (h + 1) * HOUR
        part = table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
        buf = io.BytesIO()
        pq.write_table(part, buf, compression="zstd")
        (out / f"{h}.parquet").write_bytes(buf.getvalue())
    s = time.perf_counter() - t
    return {"rows": table.num_rows, "seconds": round(s, 3), "rows_per_s": round(table.num_rows / s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=240_000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from tests.s3server import MotoServer, make_bucket, storage_options

    with tempfile.TemporaryDirectory() as tmp:
        results: dict = {"rows": args.rows, "windows": args.hours}
        for name in ("local", "s3"):
            data = DataDir.resolve(Path(tmp) / name).ensure()
            db = ControlDB(data.control_db)
            db.migrate()
            sites_mod.add_site(db, "bench", domain="bench.test", hostnames=["t.bench.test"])
            config_mod.set_config(db, "bench", {"parquet_export_enabled": True})
            build_lake(data, args.rows, args.hours)
            if name == "local":
                results["local"] = run_export(data, f"file://{tmp}/export", {}, args.hours)
                (Path(tmp) / "baseline").mkdir()
                results["baseline_plain_parquet"] = baseline(data, args.hours, Path(tmp) / "baseline")
            else:
                server = MotoServer.start()
                try:
                    bucket = make_bucket(server.url)
                    results["s3"] = run_export(data, f"s3://{bucket}/export", storage_options(server.url), args.hours)
                finally:
                    server.stop()
        base = results["baseline_plain_parquet"]["rows_per_s"]
        results["ratio_local_vs_baseline"] = round(results["local"]["rows_per_s"] / base, 3)
        results["ratio_s3_vs_local"] = round(results["s3"]["rows_per_s"] / results["local"]["rows_per_s"], 3)

    if args.json:
        print(json.dumps(results))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("target", "rows/s", "seconds", "files", "bytes/file min·median·max", "re-run (no-op) s")
    for name in ("local", "s3"):
        r = results[name]
        t.add_row(name, f"{r['rows_per_s']:,}", str(r["seconds"]), str(r["files"]),
                  f"{r['file_bytes_min']:,} · {r['file_bytes_median']:,} · {r['file_bytes_max']:,}",
                  str(r["rerun_seconds"]))
    b = results["baseline_plain_parquet"]
    t.add_row("baseline (naive, local)", f"{b['rows_per_s']:,}", str(b["seconds"]), str(args.hours), "-", "-")
    Console().print(t)
    print(f"local export / baseline: {results['ratio_local_vs_baseline']}x   s3 / local: {results['ratio_s3_vs_local']}x")


if __name__ == "__main__":
    main()
