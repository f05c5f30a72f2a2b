"""In-process cost of the collect pipeline: µs of CPU per event, no HTTP, log fsync off.

Runs ``Pipeline.collect`` on pre-built batches (``--batch`` events per request) and reports
wall and CPU µs per event (CPU = ``time.process_time``, all threads: a shared machine
inflates wall time, far less CPU time).  Two workloads:

* ``scroll`` -- the ingest benchmark's batches: one visitor, 100 scroll events on one URL;
* ``mixed``  -- 50 visitors (IP × UA), page views / clicks / scrolls / engagement over 300
  URLs, some with UTM or click ids, a few props.

With ``--baseline REV`` the same measure runs on the code of git revision REV (exported to
a temporary directory) in alternating rounds, and the table shows both side by side and
the ratio::

    python benchmarks/pipeline.py --baseline 397b432 [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _side_by_side import add_speedup, cpu_figures, export_revision, print_cpu_table, run_in_tree

ROOT = Path(__file__).resolve().parent.parent
UAS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
)
HOST = "t.bench.test"


def _bodies(workload: str, n_requests: int, batch: int, now_ms: int) -> list[tuple[bytes, str, str]]:
    """(body, client IP, User-Agent) per request."""
    import uuid

    rng = random.Random(7)
    out = []
    if workload == "scroll":
        for _ in range(n_requests):
            evs = [{"type": "scroll", "url": "/pricing?utm_source=bench", "event_id": uuid.uuid4().hex, "ts": now_ms,
                    "title": "Pricing", "screen": "1920x1080", "visitor_id": None, "scroll_depth": 40}
                   for _ in range(batch)]
            out.append((json.dumps({"events": evs}).encode(), "10.0.0.1", UAS[0]))
        return out
    sections = ("pricing", "product", "blog", "docs", "cart", "checkout", "about", "reviews", "shop", "")
    urls = [f"/{rng.choice(sections)}/{i}" + rng.choice(["", "", "", "?utm_source=news&utm_medium=email",
                                                           "?gclid=abc123", "?q=shoes&page=2", "?ref=x%20y"])
            for i in range(300)]
    visitors = [(f"10.1.{i // 200}.{i % 200}", UAS[i % len(UAS)]) for i in range(50)]
    for r in range(n_requests):
        ip, ua = visitors[r % len(visitors)]
        evs = []
        for _ in range(batch):
            kind = rng.choice(("page_view", "page_view", "click", "click", "scroll", "engagement"))
            ev = {"type": kind, "url": rng.choice(urls), "event_id": uuid.uuid4().hex, "ts": now_ms - rng.randint(0, 5000),
                  "title": "Page", "screen": "1440x900", "referrer": rng.choice(["", "https://www.google.com/"])}
            if kind == "click":
                ev.update(x=rng.randint(0, 1400), y=rng.randint(0, 900), target=rng.choice(["button#buy", "a.nav"]))
            elif kind == "scroll":
                ev["scroll_depth"] = rng.randint(0, 100)
            elif kind == "engagement":
                ev["time_on_page_ms"] = rng.randint(0, 60_000)
            if rng.random() < 0.1:
                ev["props"] = {"plan": "pro", "n": rng.randint(0, 9)}
            evs.append(ev)
        out.append((json.dumps({"events": evs}).encode(), ip, ua))
    return out


@contextlib.asynccontextmanager
async def bench_pipeline(log_dir: Path | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """The collect ``Pipeline`` of the code importable now, on a temporary data directory with
    the bench site (no rate limit) and an unsynced durable log in ``log_dir`` (default: the
    data directory's); yields ``(pipeline, log)``.  Shared with benchmarks/flush.py."""
    from prometheus_client import CollectorRegistry

    from clickstream_lake.control import sites as sites_mod
    from clickstream_lake.control.config import ConfigCache, set_config
    from clickstream_lake.control.db import ControlDB
    from clickstream_lake.settings import DataDir
    from ingest_worker import pipeline as pl
    from ingest_worker.durable_log import DurableLog
    from ingest_worker.metrics import WorkerMetrics

    tmp = tempfile.TemporaryDirectory(prefix="cs-pipe-")
    d = DataDir.resolve(Path(tmp.name)).ensure()
    db = ControlDB(d.control_db)
    try:
        db.migrate()
        sites_mod.add_site(db, "bench", domain="bench.test", hostnames=[HOST], plan="enterprise")
        set_config(db, "bench", {"rate_limit_eps": 1e9, "rate_limit_burst": 1_000_000_000})
        log = DurableLog(log_dir or d.log, fsync=False)
        log.open()
        await log.start()
        try:
            yield pl.Pipeline(ConfigCache(db), log, WorkerMetrics(CollectorRegistry()),
                              scoring=pl.ScoringStage(secret=b"x" * 32)), log
        finally:
            await log.close()
    finally:
        db.close()
        tmp.cleanup()


def bench_request(body: bytes, ip: str, ua: str) -> Any:
    """A ``POST /v1/collect`` to the bench site's host, as the pipeline receives it."""
    from ingest_worker import pipeline as pl

    return pl.IncomingRequest(host=HOST, headers={"user-agent": ua, "host": HOST}, client_ip=ip,
                              received_ms=pl.now_ms(), body=body, content_type="application/json")


def measure(workload: str, requests: int, batch: int) -> dict[str, float]:
    """Run the pipeline on the code importable now (the baseline's or this tree's)."""
    import asyncio
    import time

    from ingest_worker import pipeline as pl

    async def run() -> dict[str, float]:
        async with bench_pipeline() as (p, _log):
            warm = _bodies(workload, max(5, requests // 10), batch, pl.now_ms())
            bodies = _bodies(workload, requests, batch, pl.now_ms())

            async def go(items: list[tuple[bytes, str, str]]) -> None:
                for body, ip, ua in items:
                    a = await p.collect(bench_request(body, ip, ua))
                    assert a.status == 200, a.body

            await go(warm)
            w0, c0 = time.perf_counter(), time.process_time()
            await go(bodies)
            w1, c1 = time.perf_counter(), time.process_time()
        n = requests * batch
        return {"wall_us": (w1 - w0) / n * 1e6, "cpu_us": (c1 - c0) / n * 1e6}

    return asyncio.run(run())


def _run_round(src: Path, workload: str, requests: int, batch: int) -> dict[str, float]:
    return run_in_tree(__file__, src, "--workload", workload, "--requests", str(requests), "--batch", str(batch))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="git revision to measure side by side (e.g. the branch point)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per tree (default 3)")
    ap.add_argument("--requests", type=int, default=200, help="requests per round (default 200)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--workload", choices=("scroll", "mixed", "both"), default="both")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one measure with the code under this directory
    args = ap.parse_args()

    if args.worker:
        sys.path.insert(0, args.worker)
        print(json.dumps(measure(args.workload, args.requests, args.batch)))
        return

    trees: dict[str, Path] = {"current": ROOT}
    tmp = None
    if args.baseline:
        tmp = tempfile.TemporaryDirectory(prefix="cs-baseline-")
        trees = {f"baseline {args.baseline}": export_revision(args.baseline, Path(tmp.name)), "current": ROOT}
    workloads = ("scroll", "mixed") if args.workload == "both" else (args.workload,)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {w: {t: [] for t in trees} for w in workloads}
    try:
        for _ in range(args.rounds):
            for w in workloads:
                for name, src in trees.items():
                    runs[w][name].append(_run_round(src, w, args.requests, args.batch))
    finally:
        if tmp is not None:
            tmp.cleanup()

    out: dict = {"cpus": os.cpu_count(), "batch": args.batch, "requests": args.requests, "rounds": args.rounds,
                 "workloads": {}}
    for w in workloads:
        res = {}
        for name in trees:
            wall = [r["wall_us"] for r in runs[w][name]]
            res[name] = {**cpu_figures([r["cpu_us"] for r in runs[w][name]]),
                         "wall_us_min": min(wall), "wall_us_median": statistics.median(wall)}
        add_speedup(res, list(trees))
        out["workloads"][w] = res
    if args.json:
        print(json.dumps(out))
        return
    print_cpu_table(f"collect pipeline, in process: µs per event ({args.batch}/request, {args.requests} requests × "
                    f"{args.rounds} rounds, {out['cpus']} CPUs, fsync off)", list(trees), out["workloads"])

if __name__ == "__main__":
    main()
