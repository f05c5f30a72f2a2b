"""How far could visitor-sharded collect go on this machine?  The bound, measured.

One collect process is one core's worth of Python (``benchmarks/ingest.py``).  A worker that
routes each visitor to one of N collect processes -- each with its own durable log, dedupe
window and flush process -- can at best do what N *independent* servers do together.  This
runs exactly that, side by side with one server in the same run: N ``clickstream serve``
processes over N data directories, and one load generator (the ingest benchmark's batched
one, batches of 100) spreading its connections over them.  It reports events/s acknowledged
and sustained into Parquet (acknowledged events / time until every one is in the lake), and
each server's CPU per event.  No routing, no forwarding: a real sharded worker does less.

    python benchmarks/ingest_shards.py [--servers 1,2] [--duration 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import _event, batched, bench_server, lake_count, process_cpu_s, steady_rate, wait_drained  # noqa: E402


def run(n_servers: int, seconds: float, batch: int, connections: int, visitors: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cs-shards-") as tmp:
        servers = [bench_server(Path(tmp) / f"data{k}") for k in range(n_servers)]
        try:
            loop = asyncio.new_event_loop()
            for port, _, _ in servers:  # warm up past start-up (flush process spawn, imports)
                loop.run_until_complete(steady_rate(port, 200, 2.0, "POST", "/v1/collect",
                                                    lambda: json.dumps(_event(visitors)).encode()))
            before = sum(lake_count(d.lake) for _, d, _ in servers)
            cpu0 = [process_cpu_s(p.pid) for _, _, p in servers]
            per_server = max(1, connections // n_servers)
            # each server holds the visitors a shard would: its share of the returning ones
            shard_visitors = max(1, visitors // n_servers) if visitors else 0

            async def load() -> list[dict]:
                return await asyncio.gather(*(batched(port, seconds, batch, per_server, shard_visitors) for port, _, _ in servers))

            results = loop.run_until_complete(load())
            loop.close()
            acked = sum(r["acked"] for r in results)
            drained = wait_drained([d.lake for _, d, _ in servers], before + acked)
            cpu1 = [process_cpu_s(p.pid) for _, _, p in servers]
        finally:
            for _, _, p in servers:
                p.terminate()
            for _, _, p in servers:
                p.wait(timeout=60)
    elapsed = max(r["seconds"] for r in results)
    collect_s = sum(b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True))
    flush_s = sum(b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True))
    return {"servers": n_servers, "acked": acked, "acked_eps": acked / elapsed,
            "sustained_into_parquet_eps": acked / (elapsed + drained), "drain_after_load_s": drained,
            "collect_cpu_us_per_event": collect_s / max(acked, 1) * 1e6,
            "flush_cpu_us_per_event": flush_s / max(acked, 1) * 1e6,
            "errors": sum(r["errors"] for r in results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="1,2", help="comma-separated server counts to run side by side")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of batched load per count (default 20)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--connections", type=int, default=4, help="load generator connections in all")
    ap.add_argument("--visitors", type=int, default=10_000,
                    help="returning visitors in all (ingest.py's --visitors), shared out among the servers")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = ap.parse_args()
    counts = [int(x) for x in args.servers.split(",")]
    rows = [run(n, args.duration, args.batch, args.connections, args.visitors) for n in counts]
    base = rows[0]["sustained_into_parquet_eps"]
    for r in rows:
        r["ratio_vs_first"] = r["sustained_into_parquet_eps"] / base if base else None
    out = {"cpus": os.cpu_count(), "duration_s": args.duration, "runs": rows}
    if args.json:
        print(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"independent servers side by side ({out['cpus']} CPUs, load generator on the same machine)")
    for col in ("servers", "acked ev/s", "into Parquet ev/s", "× first", "collect µs/ev", "flush µs/ev", "errors"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["servers"]), f"{r['acked_eps']:,.0f}", f"{r['sustained_into_parquet_eps']:,.0f}",
                  f"{r['ratio_vs_first']:.2f}", f"{r['collect_cpu_us_per_event']:.0f}",
                  f"{r['flush_cpu_us_per_event']:.0f}", str(r["errors"]))
    Console().print(t)


if __name__ == "__main__":
    main()
