"""Query-layer benchmark: a dashboard query set over one tenant in a lake of 10 tenants.

Measures, per query, p50/p95 cold (first run on a freshly opened lake) and hot (repeats):

* ``guarded``: ``QueryService.run_query`` — guard + sandboxed per-query connection +
  timeout + row cap (cache off);
* ``raw``: the same SQL on a plain DuckDB connection over the same files and views, no
  guard and no sandbox (the baseline);
* ``grown``: guarded again after every *other* tenant's data grew 10×;
* ``cached``: ``run_query`` answered from the result cache.

Rows are generated vectorised inside DuckDB (no per-row Python) straight into the hive
layout ``events/site_id=<id>/dt=<day>/*.parquet``.

    python benchmarks/query.py [--events 5000000] [--json] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from clickstream_lake.lake import LakeLayout  # noqa: E402
from clickstream_lake.query import guard  # noqa: E402
from clickstream_lake.query.cache import ResultCache  # noqa: E402
from clickstream_lake.query.lake import Lake  # noqa: E402
from clickstream_lake.query.runner import QueryService  # noqa: E402

TARGET = "site_00"
N_TENANTS = 10
DAYS = 7
BASE = "2025-03-03 00:00:00+00"

QUERIES = {
    "kpis": "SELECT count() AS events, uniq(blob2) AS visitors, uniq(blob3) AS sessions FROM clickstream_events",
    "top_pages": "SELECT blob5 AS path, SUM(_sample_interval) AS views FROM clickstream_events "
                 "WHERE blob4 = 'page_view' GROUP BY path ORDER BY views DESC LIMIT 10",
    "hourly": "SELECT toStartOfInterval(timestamp, INTERVAL '1' HOUR, 'America/New_York') AS t, count() AS n "
              "FROM clickstream_events GROUP BY t ORDER BY t",
    "revenue_by_channel": "SELECT channel, count(*) AS orders, sum(value) AS revenue FROM events "
                          "WHERE event_type = 'purchase' GROUP BY channel ORDER BY revenue DESC",
    "devices_countries": "SELECT device_type, country, countIf(event_type = 'page_view') AS views "
                         "FROM events GROUP BY ALL ORDER BY views DESC LIMIT 20",
    "intent_p90": "SELECT blob4 AS type, quantile(0.9)(double1) AS p90, avg(double2) AS engagement "
                  "FROM clickstream_events GROUP BY type ORDER BY type",
}


def _gen_sql(site: str, n: int, day: int, seed: int) -> str:
    """One day of ``n`` AE rows for ``site``, generated inside DuckDB."""
    return f"""
    SELECT
      TIMESTAMPTZ '{BASE}' + INTERVAL ({day}) DAY + to_milliseconds(CAST(i * (86400000 / {n}) AS BIGINT)) AS timestamp,
      '{site}' AS index1, '{site}' AS blob1,
      'v' || CAST(hash(i, {seed}) % 200000 AS BIGINT) AS blob2,
      's' || {day} || '-' || (i // 9) AS blob3,
      ['page_view','page_view','page_view','click','scroll','engagement','add_to_cart','purchase'][CAST(1 + hash(i, 1) % 8 AS BIGINT)]
        AS blob4,
      ['/', '/pricing', '/blog/a', '/blog/b', '/product/1', '/product/2', '/cart', '/checkout', '/about',
       '/docs'][CAST(1 + hash(i, 2) % 10 AS BIGINT)] AS blob5,
      '' AS blob6, 'c' || CAST(hash(i, 3) % 200000 AS BIGINT) || '||||' AS blob7,
      ['google|cpc|spring||', '||||', 'newsletter|email|may||', 'facebook|social|x||'][CAST(1 + hash(i, 4) % 4 AS BIGINT)] AS blob8,
      ['desktop|Chrome|Linux|1920x1080', 'mobile|Safari|iOS|390x844'][CAST(1 + hash(i, 5) % 2 AS BIGINT)] AS blob9,
      ['US|CA|SF|37.7|-122.4', 'FR|IDF|Paris|48.8|2.3', 'DE|BE|Berlin|52.5|13.4'][CAST(1 + hash(i, 6) % 3 AS BIGINT)] AS blob10,
      'Title' AS blob11, '' AS blob12, '' AS blob13, '' AS blob14,
      CAST(round((hash(i, 7) % 30000) / 100.0, 2) AS VARCHAR) || '|USD|o' || i AS blob15,
      '' AS blob16, 'm1' AS blob17, 'e' || i AS blob18, 'en|UTC|1280x720|1' AS blob19,
      ['Paid Search|1|', 'Direct|1|', 'Email|2|', 'Paid Social|1|'][CAST(1 + hash(i, 4) % 4 AS BIGINT)] AS blob20,
      {', '.join(f'(hash(i, {10 + d}) % 10000) / 100.0 AS double{d}' for d in range(1, 20))},
      CAST(epoch_ms(TIMESTAMPTZ '{BASE}') + {day} * 86400000 + i * (86400000 // {n}) AS DOUBLE) AS double20,
      CAST(1 AS BIGINT) AS _sample_interval
    FROM range({n}) r(i)"""


def write_tenant(con: duckdb.DuckDBPyConnection, layout: LakeLayout, site: str, n: int, seed: int) -> list[Path]:
    per_day = max(1, n // DAYS)
    files = []
    for day in range(DAYS):
        d = Path(layout.events_dir(site)) / f"dt=2025-03-{3 + day:02d}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"bench-{uuid.uuid4().hex[:8]}.parquet"
        con.execute(f"COPY ({_gen_sql(site, per_day, day, seed)}) TO '{path}' "
                    f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
        files.append(path)
    return files


def grow(files: list[Path], factor: int) -> None:
    """Each file gets ``factor - 1`` copies beside it (other tenants' data ×factor)."""
    for f in files:
        for _ in range(factor - 1):
            shutil.copyfile(f, f.with_name(f"grow-{uuid.uuid4().hex[:8]}.parquet"))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def raw_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """Baseline: plain DuckDB, same views over the same files, no sandbox."""
    src = lake.sources(TARGET)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for stmt in [*guard.dialect.macro_statements(), *Lake.build_views(TARGET, src.events, src.quarantine)]:
        con.execute(stmt)
    return con


def measure(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=5_000_000, help="events of the measured tenant")
    ap.add_argument("--others", type=int, default=None, help="events of each other tenant (default events/10)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed afterwards)")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = ap.parse_args(argv)
    console = Console(stderr=args.json)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-query-"))
    others_n = args.others if args.others is not None else max(1000, args.events // 10)
    layout = LakeLayout.local(work / "lake")
    try:
        gen = duckdb.connect()
        other_files: list[Path] = []
        with Progress(console=console, transient=True) as prog:
            task = prog.add_task("generating tenants", total=N_TENANTS)
            write_tenant(gen, layout, TARGET, args.events, 0)
            prog.advance(task)
            for t in range(1, N_TENANTS):
                other_files += write_tenant(gen, layout, f"site_{t:02d}", others_n, t)
                prog.advance(task)
        gen.close()

        figures: dict[str, dict] = {}
        (work / "tmp").mkdir(exist_ok=True)
        with Progress(console=console, transient=True) as prog:
            task = prog.add_task("measuring", total=len(QUERIES) * 2)
            for name, sql in QUERIES.items():
                checked = guard.check(sql, Lake(layout).relations(TARGET))
                # cold: a freshly opened lake / connection, first run
                svc = QueryService(Lake(layout, tmp_dir=str(work / "tmp")), ttl_for=lambda s: 0,
                                   timeout_s=600, max_rows=10**9)
                t0 = time.perf_counter()
                svc.run_query(TARGET, sql, use_cache=False)
                g_cold = time.perf_counter() - t0
                raw = raw_connection(Lake(layout))
                t0 = time.perf_counter()
                raw.sql(checked.sql).to_arrow_table()
                r_cold = time.perf_counter() - t0
                # hot: interleaved repeats
                g_hot, r_hot = [], []
                for _ in range(args.repeat):
                    g_hot += measure(lambda: svc.run_query(TARGET, sql, use_cache=False), 1)  # noqa: B023
                    r_hot += measure(lambda: raw.sql(checked.sql).to_arrow_table(), 1)  # noqa: B023
                raw.close()
                figures[name] = {"guarded_cold_s": g_cold, "raw_cold_s": r_cold,
                                 "guarded_p50_s": pct(g_hot, 0.5), "guarded_p95_s": pct(g_hot, 0.95),
                                 "raw_p50_s": pct(r_hot, 0.5), "raw_p95_s": pct(r_hot, 0.95)}
                figures[name]["ratio_to_raw"] = figures[name]["guarded_p50_s"] / figures[name]["raw_p50_s"]
                prog.advance(task)
            # cached answers
            svc = QueryService(Lake(layout, tmp_dir=str(work / "tmp")), ttl_for=lambda s: 3600,
                               cache=ResultCache(), timeout_s=600, max_rows=10**9)
            cached: list[float] = []
            for sql in QUERIES.values():
                svc.run_query(TARGET, sql)
                cached += measure(lambda: svc.run_query(TARGET, sql), 20)  # noqa: B023
            # other tenants ×10
            grow(other_files, 10)
            svc = QueryService(Lake(layout, tmp_dir=str(work / "tmp")), ttl_for=lambda s: 0,
                               timeout_s=600, max_rows=10**9)
            for name, sql in QUERIES.items():
                svc.run_query(TARGET, sql, use_cache=False)
                grown = measure(lambda: svc.run_query(TARGET, sql, use_cache=False), args.repeat)  # noqa: B023
                figures[name]["grown_p50_s"] = pct(grown, 0.5)
                figures[name]["ratio_grown"] = figures[name]["grown_p50_s"] / figures[name]["guarded_p50_s"]
                prog.advance(task)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)

    ratios = [f["ratio_to_raw"] for f in figures.values()]
    grown_ratios = [f["ratio_grown"] for f in figures.values()]
    summary = {
        "events": args.events, "other_tenant_events": others_n, "tenants": N_TENANTS, "repeat": args.repeat,
        "queries": figures,
        "ratio_to_raw_median": statistics.median(ratios), "ratio_to_raw_max": max(ratios),
        "ratio_other_tenants_10x_median": statistics.median(grown_ratios),
        "ratio_other_tenants_10x_max": max(grown_ratios),
        "cached_p50_ms": pct(cached, 0.5) * 1000, "cached_p95_ms": pct(cached, 0.95) * 1000,
        "targets": {"ratio_to_raw": 1.25, "ratio_other_tenants_10x": 1.2, "cached_p50_ms": 2.0},
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    t = Table("query", "guarded cold", "raw cold", "guarded p50", "guarded p95", "raw p50", "raw p95",
              "× raw", "others×10 p50", "× grown", title=f"{args.events:,} events, {N_TENANTS} tenants (ms)")
    for name, f in figures.items():
        t.add_row(name, *(f"{f[k] * 1000:.1f}" for k in ("guarded_cold_s", "raw_cold_s", "guarded_p50_s",
                                                         "guarded_p95_s", "raw_p50_s", "raw_p95_s")),
                  f"{f['ratio_to_raw']:.2f}", f"{f['grown_p50_s'] * 1000:.1f}", f"{f['ratio_grown']:.2f}")
    console.print(t)
    console.print(f"ratio to raw DuckDB: median {summary['ratio_to_raw_median']:.2f}, max "
                  f"{summary['ratio_to_raw_max']:.2f} (target ≤ 1.25)")
    console.print(f"other tenants ×10: median {summary['ratio_other_tenants_10x_median']:.2f}, max "
                  f"{summary['ratio_other_tenants_10x_max']:.2f} (target ≤ 1.2)")
    console.print(f"cached p50 {summary['cached_p50_ms']:.3f} ms, p95 {summary['cached_p95_ms']:.3f} ms (target ≤ 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
