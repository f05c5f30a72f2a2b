"""CPU the flush process spends per event: ``flush_segments`` on real log segments.

The segments are written once, by the real collect ``Pipeline`` (scored events as the
request path logs them: ``r1`` records, plus ``q`` records for the rejected events of the
``mixed`` workload), then ``flush_segments`` publishes them into a fresh temporary local
lake ``--repeat`` times per round; the figure is CPU µs per event
(``time.process_time``: every thread of the process, Arrow's included), min / median.
Two workloads, as in ``benchmarks/pipeline.py``:

* ``scroll`` -- one visitor, 100 scroll events per request on one URL;
* ``mixed``  -- 50 visitors, page views / clicks / scrolls / engagement over 300 URLs,
  some with UTM or click ids, a few props, ~1 % invalid events (quarantine).

Side by side, in alternating rounds on the same segments, the table shows two flushes, the
ratio of their CPU, and whether they publish the same rows (value for value, in order) and
the same Parquet files' bytes:

* by default, the compiled reader of ``"r1"`` records (``current``) against the same code
  with every record decoded by orjson (``orjson path``: ``CLICKSTREAM_COMPILED_FLUSH=0``);
* with ``--baseline REV``, the code of git revision REV (exported to a temporary directory)
  against the current code::

    python benchmarks/flush.py [--baseline main] [--events 10000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from _side_by_side import add_speedup, cpu_figures, export_revision, print_cpu_table, run_in_tree

ROOT = Path(__file__).resolve().parent.parent
HOST = "t.bench.test"


def _pipeline_bench():
    spec = importlib.util.spec_from_file_location("_pipeline_bench", ROOT / "benchmarks" / "pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_segments(workload: str, events: int, batch: int, out: Path) -> int:
    """Log ``events`` scored events of ``workload`` through the real collect pipeline into
    segments under ``out`` (fsync off); returns how many records the log holds."""
    bench = _pipeline_bench()
    rng = random.Random(11)

    async def run() -> int:
        from ingest_worker import pipeline as pl

        async with bench.bench_pipeline(out) as (p, log):
            for body, ip, ua in bench._bodies(workload, max(1, events // batch), batch, pl.now_ms()):
                if workload == "mixed":  # a few invalid events: quarantine records beside the rows
                    doc = json.loads(body)
                    for ev in doc["events"]:
                        if rng.random() < 0.01:
                            ev["type"] = "no such type"
                    body = json.dumps(doc).encode()
                a = await p.collect(bench.bench_request(body, ip, ua))
                assert a.status == 200, a.body
        return log.stats.records

    return asyncio.run(run())


def _lake_digest(root: Path) -> tuple[str, str]:
    """sha256 of every published row (events, then quarantine), partition by partition, and
    sha256 of the published files' bytes."""
    import pyarrow.parquet as pq

    rows, files_h = hashlib.sha256(), hashlib.sha256()
    for kind in ("events", "quarantine"):
        for part in sorted({p.parent for p in (root / kind).rglob("*.parquet")}):
            files = sorted(part.glob("*.parquet"))
            assert len(files) == 1, files
            t = pq.read_table(files[0])
            rows.update(str(part.relative_to(root)).encode())
            rows.update(t.schema.to_string(show_schema_metadata=True).encode())
            rows.update(json.dumps(t.to_pydict(), default=str).encode())
            files_h.update(str(part.relative_to(root)).encode())
            files_h.update(files[0].read_bytes())
    return rows.hexdigest(), files_h.hexdigest()


def measure(segments: Path, repeat: int) -> dict:
    """Flush the segments into a fresh lake ``repeat`` times, with the code importable now."""
    import time

    from clickstream_lake.lake import LakeLayout
    from ingest_worker.durable_log import list_segments
    from ingest_worker.flusher import flush_segments

    segs = list_segments(segments)
    cpu, digest, file_digest, events, compiled = [], "", "", 0, 0
    for i in range(repeat + 1):  # the first one warms up (imports, caches)
        with tempfile.TemporaryDirectory(prefix="cs-flushlake-") as lake_dir:
            lake = LakeLayout.local(lake_dir)
            c0 = time.process_time()
            res = flush_segments(segs, lake, dedupe_against_lake=False)
            c1 = time.process_time()
            n = res.events + res.quarantined
            if i:
                cpu.append((c1 - c0) / n * 1e6)
            else:
                (digest, file_digest), events = _lake_digest(Path(lake.base)), res.events
                compiled = getattr(res, "compiled_rows", 0)  # (a baseline tree may predate the field)
    return {"cpu_us": cpu, "events": events, "compiled_rows": compiled, "digest": digest, "file_digest": file_digest}


def _run_round(src: Path, env: dict[str, str], segments: Path, repeat: int) -> dict:
    return run_in_tree(__file__, src, "--segments", str(segments), "--repeat", str(repeat), env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="git revision to measure side by side (e.g. the branch point)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per tree (default 3)")
    ap.add_argument("--repeat", type=int, default=3, help="flushes per round, after one warm-up (default 3)")
    ap.add_argument("--events", type=int, default=10_000,
                    help="events per flush (default 10000: 0.5 s at 20k events/s)")
    ap.add_argument("--batch", type=int, default=100, help="events per collect request (default 100)")
    ap.add_argument("--workload", choices=("scroll", "mixed", "both"), default="both")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one measure with the code under this directory
    ap.add_argument("--segments", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        sys.path.insert(0, args.worker)
        print(json.dumps(measure(Path(args.segments), args.repeat)))
        return

    tmp = tempfile.TemporaryDirectory(prefix="cs-flushbench-")
    trees: dict[str, tuple[Path, dict[str, str]]] = {  # name: (source tree, environment)
        "orjson path": (ROOT, {"CLICKSTREAM_COMPILED_FLUSH": "0"}), "current": (ROOT, {})}
    if args.baseline:
        trees = {f"baseline {args.baseline}": (export_revision(args.baseline, Path(tmp.name) / "baseline"), {}),
                 "current": (ROOT, {})}
    workloads = ("scroll", "mixed") if args.workload == "both" else (args.workload,)
    runs: dict[str, dict[str, list[dict]]] = {w: {t: [] for t in trees} for w in workloads}
    records: dict[str, int] = {}
    try:
        seg_dirs = {}
        for w in workloads:
            seg_dirs[w] = Path(tmp.name) / f"log-{w}"
            records[w] = write_segments(w, args.events, args.batch, seg_dirs[w])
        for _ in range(args.rounds):
            for w in workloads:
                for name, (src, env) in trees.items():
                    runs[w][name].append(_run_round(src, env, seg_dirs[w], args.repeat))
    finally:
        shutil.rmtree(tmp.name, ignore_errors=True)

    out: dict = {"cpus": os.cpu_count(), "events": args.events, "batch": args.batch, "rounds": args.rounds,
                 "repeat": args.repeat, "workloads": {}}
    for w in workloads:
        res: dict = {"records": records[w]}
        for name in trees:
            first = runs[w][name][0]
            res[name] = {**cpu_figures([c for r in runs[w][name] for c in r["cpu_us"]]), "events": first["events"],
                         "compiled_rows": first["compiled_rows"], "digest": first["digest"], "file_digest": first["file_digest"]}
        add_speedup(res, list(trees))
        if len(trees) == 2:
            base, cur = (res[n] for n in trees)
            res["same_rows"] = base["digest"] == cur["digest"]
            res["same_bytes"] = base["file_digest"] == cur["file_digest"]
        out["workloads"][w] = res
    if args.json:
        print(json.dumps(out))
        return
    print_cpu_table(f"flush_segments: CPU µs per event ({args.events} events per flush, {args.rounds} rounds × "
                    f"{args.repeat} flushes, {out['cpus']} CPUs, local lake)", list(trees), out["workloads"],
                    extra=("same rows /\nsame bytes",
                           lambda res: " / ".join("yes" if res[k] else "[red]NO[/red]" for k in ("same_rows", "same_bytes"))))

if __name__ == "__main__":
    main()
