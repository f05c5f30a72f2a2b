"""Scoring shards side by side: one server scoring in process, one with ``--shards N``, and
N independent servers (the bound any sharding can reach on this machine).

One collect process is one core's worth of Python (``benchmarks/ingest.py``).
``clickstream serve --shards N`` keeps HTTP, the dedupe window, the durable log and the
flush in the server process and scores each visitor's events in one of N shard processes
(``ingest_worker/shards.py``).  This runs, in the same session and in alternating rounds (the
machine's speed drifts; ratios hold), the same batched load (ingest.py's: batches of 100, each
one visitor's, 10,000 returning visitors) against each setup:

* ``1``    -- one ``clickstream serve`` scoring in process (the default);
* ``1:N``  -- one ``clickstream serve --shards N``;
* ``N``    -- N independent servers over N data directories, each holding its share of the
  visitors, the load spread over them: no routing, no shared dedupe window or log -- what a
  sharded server could at best do.

It reports events/s acknowledged and sustained into Parquet (acknowledged events / time until
every one is in the lake), the CPU per event of the server process, of the scoring shards and
of the flush process, and the ratio of each setup to the first.

    python benchmarks/ingest_shards.py [--setups 1,1:2,2] [--duration 20] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (  # noqa: E402
    _event,
    batched,
    bench_server,
    lake_count,
    server_cpu_s,
    steady_rate,
    wait_drained,
)


def run(setup: str, seconds: float, batch: int, connections: int, visitors: int) -> dict:
    """One round of one setup: ``"S"`` = S independent servers, ``"S:K"`` = S servers with
    ``--shards K`` each."""
    n_servers, _, shards = setup.partition(":")
    n, k = int(n_servers), int(shards or 1)
    with tempfile.TemporaryDirectory(prefix="cs-shards-") as tmp:
        servers = [bench_server(Path(tmp) / f"data{i}", k) for i in range(n)]
        try:
            loop = asyncio.new_event_loop()
            for port, _, _ in servers:  # warm up past start-up (flush process spawn, imports)
                loop.run_until_complete(steady_rate(port, 200, 2.0, "POST", "/v1/collect",
                                                    lambda: json.dumps(_event(visitors)).encode()))
            before = sum(lake_count(d.lake) for _, d, _ in servers)
            probes = [server_cpu_s(p.pid, port) for port, _, p in servers]
            cpu0 = [probe() for probe in probes]
            per_server = max(1, connections // n)
            # each independent server holds the visitors a shard would: its share of them
            share = max(1, visitors // n) if visitors else 0

            async def load() -> list[dict]:
                return await asyncio.gather(*(batched(port, seconds, batch, per_server, share)
                                              for port, _, _ in servers))

            results = loop.run_until_complete(load())
            loop.close()
            acked = sum(r["acked"] for r in results)
            drained = wait_drained([d.lake for _, d, _ in servers], before + acked)
            cpu1 = [probe() for probe in probes]
        finally:
            for _, _, p in servers:
                p.terminate()
            for _, _, p in servers:
                p.wait(timeout=60)
    elapsed = max(r["seconds"] for r in results)
    server_s, shards_s, flush_s = (sum(b[i] - a[i] for a, b in zip(cpu0, cpu1, strict=True)) for i in range(3))
    per_event = 1e6 / max(acked, 1)
    return {"setup": setup, "servers": n, "shards": k, "acked": acked, "acked_eps": acked / elapsed,
            "sustained_into_parquet_eps": acked / (elapsed + drained), "drain_after_load_s": drained,
            "server_cpu_us_per_event": server_s * per_event,
            "shards_cpu_us_per_event": shards_s * per_event,
            "flush_cpu_us_per_event": flush_s * per_event,
            "errors": sum(r["errors"] for r in results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", default="1,1:2,2",
                    help="comma-separated setups: S = S independent servers, S:K = S servers with --shards K "
                         "(default 1,1:2,2)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of batched load per round (default 20)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per setup (default 2)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--connections", type=int, default=8, help="load generator connections in all (default 8)")
    ap.add_argument("--visitors", type=int, default=10_000,
                    help="returning visitors in all (ingest.py's --visitors), shared out among independent servers")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = ap.parse_args()
    setups = args.setups.split(",")
    runs = [run(s, args.duration, args.batch, args.connections, args.visitors)
            for _ in range(args.rounds) for s in setups]
    rows = []
    for s in setups:
        mine = [r for r in runs if r["setup"] == s]
        row = {key: statistics.median(r[key] for r in mine) for key in mine[0] if key not in ("setup",)}
        row["setup"] = s
        row["sustained_rounds"] = [round(r["sustained_into_parquet_eps"]) for r in mine]
        rows.append(row)
    base = rows[0]["sustained_into_parquet_eps"]
    for r in rows:
        r["ratio_vs_first"] = r["sustained_into_parquet_eps"] / base if base else None
    out = {"cpus": os.cpu_count(), "duration_s": args.duration, "rounds": args.rounds, "setups": rows, "runs": runs}
    if args.json:
        print(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"scoring shards side by side: medians of {args.rounds} alternating {args.duration:.0f} s rounds "
                    f"({out['cpus']} CPUs, load generator on the same machine)")
    for col in ("setup", "acked ev/s", "into Parquet ev/s", "rounds", "× first", "server µs/ev", "shards µs/ev",
                "flush µs/ev", "errors"):
        t.add_column(col, justify="right")
    for r in rows:
        name = {"1": "1 server"}.get(r["setup"], "")
        if not name:
            s, _, k = r["setup"].partition(":")
            name = f"{s} server(s), --shards {k}" if k else f"{s} independent servers"
        t.add_row(name, f"{r['acked_eps']:,.0f}", f"{r['sustained_into_parquet_eps']:,.0f}",
                  " / ".join(f"{x:,}" for x in r["sustained_rounds"]), f"{r['ratio_vs_first']:.2f}",
                  f"{r['server_cpu_us_per_event']:.0f}", f"{r['shards_cpu_us_per_event']:.0f}",
                  f"{r['flush_cpu_us_per_event']:.0f}", f"{r['errors']:.0f}")
    Console().print(t)


if __name__ == "__main__":
    main()
