"""Ingest benchmark: a real ``clickstream serve`` subprocess and a load generator on the same machine.

Measures, in one run:

1. single-event ``POST /v1/collect`` at a steady (open-loop) 500 req/s: p50/p99 latency,
   beside ``GET /healthz`` at the same rate as the framework's floor (baseline); each
   answer's ``Server-Timing`` splits it into the worker's share (and the durable log's part
   of that) and the rest of the round trip (HTTP, kernel, the load generator itself);
2. batched ingestion (batches of 100, closed loop over ``--connections`` keep-alive
   connections, default 8) for ``--duration`` seconds (default 60): events/s acknowledged,
   and events/s sustained into Parquet (acknowledged events / time until every one of them
   is readable in the lake).  Until 2026-11-30 the default was 4 connections: too few to
   keep a sharded server's cores busy, its requests spending part of their time waiting on
   the hop to a shard and on the log's fsync;
3. acknowledgement → visible in Parquet: p50/p99 over single events sent at 20/s.

The load comes from ``--visitors`` returning visitors (default 10,000, SDK ids): each batch
is one visitor's, each single event a random one's.  ``--visitors 0`` sends every event as
one cookieless visitor (the load of the figures before 2026-11-30).  ``--shards N`` runs the
server with N scoring shard processes (``clickstream serve --shards N``).

    python benchmarks/ingest.py [--duration 60] [--rate 500] [--visitors 10000] [--shards 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clickstream_lake.control import sites as sites_mod  # noqa: E402
from clickstream_lake.control.config import set_config  # noqa: E402
from clickstream_lake.control.db import ControlDB  # noqa: E402
from clickstream_lake.settings import DataDir  # noqa: E402

HOST = "t.bench.test"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"


# --- a minimal keep-alive HTTP/1.1 client (httpx costs more CPU than the server under test) ---------
class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.served_ms: float | None = None  # the last answer's Server-Timing: inside the worker
        self.log_ms: float | None = None  # ... of which waiting for the durable log

    @classmethod
    async def open(cls, port: int) -> Conn:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {UA}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        self.served_ms = self.log_ms = None
        for line in lines[1:]:
            name = line[:15].lower()
            if name == "content-length:":
                length = int(line.split(":", 1)[1])
            elif name == "server-timing: ":  # "collect;dur=0.812, log;dur=0.403": the worker's share
                metrics = dict(m.split(";dur=") for m in line[15:].split(", "))
                self.served_ms = float(metrics["collect"])
                self.log_ms = float(metrics["log"]) if "log" in metrics else None
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    def close(self) -> None:
        self.writer.close()


def visitor_id(n: int, visitors: int) -> str | None:
    """The SDK visitor id of the ``n``-th batch or event: one of ``visitors`` returning visitors
    (``v_`` + 32 hex digits, taken as it is), or None for ``visitors=0`` -- every event then
    comes from one cookieless visitor (same IP and User-Agent), the benchmark's load before
    2026-11-30."""
    return f"v_{n % visitors:032x}" if visitors else None


def _event(visitors: int = 0, **extra) -> dict:
    vid = visitor_id(random.randrange(1 << 30), visitors)
    return {"type": "page_view", "url": "/pricing?utm_source=bench", "event_id": uuid.uuid4().hex,
            "ts": int(time.time() * 1000), "title": "Pricing", "screen": "1920x1080", "visitor_id": vid, **extra}


# The batched phase's bodies come from a byte template: the same JSON json.dumps makes of
# _event(type="scroll", scroll_depth=40), with a unique event id (run prefix + counter) and
# the send time, for ~1 µs of the load generator's CPU per event instead of ~10 -- on a
# 2-core machine every µs the client spends is taken from the server under test.
_SCROLL_TEMPLATE = (b'{"type": "scroll", "url": "/pricing?utm_source=bench", "event_id": "%s%016x", "ts": %d, '
                    b'"title": "Pricing", "screen": "1920x1080", "visitor_id": %s, "scroll_depth": 40}')
_RUN_PREFIX = uuid.uuid4().hex[:16].encode()


def batch_body(first: int, batch: int, visitors: int = 0) -> bytes:
    """``{"events": [...]}`` of ``batch`` scroll events numbered from ``first``, all from one
    visitor (as an SDK sends them): batch ``first // batch`` picks it among ``visitors``."""
    ts = int(time.time() * 1000)
    vid = visitor_id(first // batch, visitors)
    visitor = json.dumps(vid).encode()
    template, prefix = _SCROLL_TEMPLATE, _RUN_PREFIX
    return b'{"events": [' + b", ".join([template % (prefix, n, ts, visitor)
                                          for n in range(first, first + batch)]) + b"]}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


# --- phases ---------------------------------------------------------------------------------------------
async def steady_rate(port: int, rate: float, seconds: float, method: str, path: str, make_body) -> dict:
    """Open loop: request i is due at t0 + i/rate, on one of a few keep-alive connections."""
    n = int(rate * seconds)
    conns = [await Conn.open(port) for _ in range(8)]
    latencies: list[float] = []
    served: list[float] = []  # inside the worker (its Server-Timing header), seconds
    outside: list[float] = []  # the rest of each round trip: HTTP, kernel, the client itself
    log_wait: list[float] = []  # inside the worker, waiting for the durable log (write + fsync)
    errors = 0
    t0 = time.perf_counter() + 0.05
    lateness: list[float] = []

    async def worker(k: int) -> None:
        nonlocal errors
        c = conns[k]
        for i in range(k, n, len(conns)):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lateness.append(-delay)
            body = make_body()
            start = time.perf_counter()
            status, _ = await c.request(method, path, body)
            latency = time.perf_counter() - start
            latencies.append(latency)
            if c.served_ms is not None:
                served.append(c.served_ms / 1000)
                outside.append(latency - c.served_ms / 1000)
            if c.log_ms is not None:
                log_wait.append(c.log_ms / 1000)
            if status != 200:
                errors += 1

    await asyncio.gather(*(worker(k) for k in range(len(conns))))
    for c in conns:
        c.close()
    elapsed = time.perf_counter() - t0
    out = {"requests": n, "errors": errors, "achieved_rps": n / elapsed,
           "p50_ms": pct(latencies, 50) * 1e3, "p99_ms": pct(latencies, 99) * 1e3,
           "max_ms": max(latencies) * 1e3, "late_sends": len([x for x in lateness if x > 0.002])}
    if served:
        out.update({"in_worker_p50_ms": pct(served, 50) * 1e3, "in_worker_p99_ms": pct(served, 99) * 1e3,
                    "outside_worker_p50_ms": pct(outside, 50) * 1e3,
                    "outside_worker_p99_ms": pct(outside, 99) * 1e3})
    if log_wait:
        out.update({"log_wait_p50_ms": pct(log_wait, 50) * 1e3, "log_wait_p99_ms": pct(log_wait, 99) * 1e3})
    return out


async def batched(port: int, seconds: float, batch: int, connections: int, visitors: int = 0) -> dict:
    conns = [await Conn.open(port) for _ in range(connections)]
    acked = 0
    errors = 0
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()

    numbers = iter(range(0, 1 << 62, batch))
    cpu0 = time.process_time()

    async def worker(c: Conn) -> None:
        nonlocal acked, errors
        while time.perf_counter() < deadline:
            status, _ = await c.request("POST", "/v1/collect", batch_body(next(numbers), batch, visitors))
            if status == 200:
                acked += batch
            else:
                errors += 1

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    for c in conns:
        c.close()
    return {"acked": acked, "errors": errors, "seconds": elapsed, "acked_eps": acked / elapsed,
            "client_cpu_us_per_event": client_cpu / max(acked, 1) * 1e6}


def process_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process and of its live children (the flush process),
    from /proc: a load-independent measure of what the server spends per event."""
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            return 0.0

    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return cpu(pid), sum(cpu(c) for c in children)


def shard_pids(port: int) -> list[int]:
    """The scoring shard processes of a ``clickstream serve --shards N`` (none without)."""
    import httpx

    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
    return [p for p in health["checks"]["collect"].get("shards", {}).get("pids", []) if p]


def server_cpu_s(pid: int, port: int) -> Callable[[], tuple[float, float, float]]:
    """A probe of a running server's CPU seconds so far: (server process, its scoring shards,
    its flush process), each from /proc; call it before and after a phase, subtract."""
    shards = shard_pids(port)

    def probe() -> tuple[float, float, float]:
        own, children = process_cpu_s(pid)
        in_shards = sum(process_cpu_s(p)[0] for p in shards)
        return own, in_shards, children - in_shards

    return probe


def lake_count(lake: Path) -> int:
    total = 0
    for f in lake.glob("events/site_id=*/dt=*/*.parquet"):
        try:
            total += pq.ParquetFile(f).metadata.num_rows
        except (FileNotFoundError, OSError):
            pass
    return total


def wait_drained(lakes: list[Path], target: int, timeout_s: float = 60.0) -> float:
    """Seconds until ``lakes`` together hold ``target`` event rows (the flush catching up
    after the load stopped; gives up after ``timeout_s``)."""
    t0 = time.perf_counter()
    while sum(lake_count(lake) for lake in lakes) < target and time.perf_counter() - t0 < timeout_s:
        time.sleep(0.05)
    return time.perf_counter() - t0


async def visibility(port: int, lake: Path, n: int, rate: float) -> dict:
    seen: dict[str, float] = {}
    known_files: set[Path] = set()
    stop = threading.Event()

    def watcher() -> None:
        while not stop.is_set():
            for f in lake.glob("events/site_id=*/dt=*/*.parquet"):
                if f in known_files:
                    continue
                known_files.add(f)
                now = time.perf_counter()
                try:
                    for eid in pq.read_table(f, columns=["blob18"]).column(0).to_pylist():
                        seen.setdefault(eid, now)
                except (FileNotFoundError, OSError):
                    known_files.discard(f)
            time.sleep(0.02)

    for f in lake.glob("events/site_id=*/dt=*/*.parquet"):
        known_files.add(f)
    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    conn = await Conn.open(port)
    acks: dict[str, float] = {}
    for _ in range(n):
        ev = _event()
        status, _ = await conn.request("POST", "/v1/collect", json.dumps(ev).encode())
        if status == 200:
            acks[ev["event_id"]] = time.perf_counter()
        await asyncio.sleep(1 / rate)
    deadline = time.perf_counter() + 15
    while time.perf_counter() < deadline and not set(acks) <= set(seen):
        await asyncio.sleep(0.05)
    stop.set()
    t.join()
    conn.close()
    delays = [seen[i] - acks[i] for i in acks if i in seen]
    return {"events": len(acks), "visible": len(delays), "p50_s": pct(delays, 50), "p99_s": pct(delays, 99),
            "max_s": max(delays) if delays else float("nan")}


# --- setup ------------------------------------------------------------------------------------------------
def bench_server(directory: Path, shards: int = 1) -> tuple[int, DataDir, subprocess.Popen]:
    """A ``clickstream serve [--shards N]`` on a free loopback port over a fresh data directory
    holding the bench site (no rate limit): (port, data dir, process)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = DataDir.resolve(directory).ensure()
    db = ControlDB(data.control_db)
    db.migrate()
    sites_mod.add_site(db, "bench", domain="bench.test", hostnames=[HOST], plan="enterprise")
    set_config(db, "bench", {"rate_limit_eps": 1e9, "rate_limit_burst": 1_000_000_000})
    db.close()
    return port, data, start_server(data, port, shards)


def start_server(data: DataDir, port: int, shards: int = 1) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "CLICKSTREAM_DATA": str(data.path)}
    proc = subprocess.Popen([sys.executable, "-m", "clickstream_lake", "serve", "--port", str(port),
                             "--data", str(data.path), "--shards", str(shards)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


GC_PROBE = """
import gc, json, sys, time
from clickstream_lake.context import AppContext
from ingest_worker.app import build_app
app = build_app(AppContext.open(sys.argv[1]))
import marimo, altair, duckdb, pyarrow  # what a serving process has loaded once dashboards ran
def pause_ms():
    t = time.perf_counter(); gc.collect(); return (time.perf_counter() - t) * 1000
before = sorted(pause_ms() for _ in range(3))[1]
gc.freeze()  # what ingest_worker.app.settle_heap does after start-up
after = sorted(pause_ms() for _ in range(3))[1]
print(json.dumps({"full_gc_pause_ms": before, "full_gc_pause_frozen_ms": after}))
"""


def histogram_buckets(port: int, prefix: str, label: str = "") -> dict[float, float]:
    """One of the worker's own histograms, cumulative count per bound: the bucket lines that
    start with ``prefix`` and hold ``label`` (e.g. ``route="post"``)."""
    import httpx

    out: dict[float, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith(prefix) and label in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def group_commit_buckets(port: int) -> dict[float, float]:
    """The worker's histogram of group commits (write + fsync)."""
    return histogram_buckets(port, "clickstream_log_group_commit_seconds_bucket{")


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (ms) of the bucket holding quantile ``q`` of what happened in between."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    for le in sorted(after):
        if after[le] - before.get(le, 0.0) >= q * total:
            return le * 1000
    return float("inf")


def log_floor(directory: Path, n: int = 2000, interval_s: float = 0.002) -> dict:
    """The durable log alone, in this process, one record at a time (500/s as in the single-
    event phase): the disk's own write+fsync and what an ``append`` waits for (the group commit
    thread's hand-offs included) -- the floor under the single-event latency."""
    from ingest_worker.durable_log import DurableLog

    async def run() -> dict:
        log = DurableLog(directory)
        groups: list[float] = []
        log.observe_group = groups.append
        log.open()
        await log.start()
        waits = []
        for _ in range(n):
            t0 = time.perf_counter()
            await log.append([b"x" * 700])
            waits.append(time.perf_counter() - t0)
            await asyncio.sleep(interval_s)
        await log.close()
        return {"write_fsync_p50_ms": pct(groups, 50) * 1000, "write_fsync_p99_ms": pct(groups, 99) * 1000,
                "append_p50_ms": pct(waits, 50) * 1000, "append_p99_ms": pct(waits, 99) * 1000}

    return asyncio.run(run())


def gc_pause(data: DataDir) -> dict:
    """A full garbage collection over the server's start-up heap, as is and frozen (in a
    fresh interpreter that builds the same app): the stall a request would wait behind."""
    res = subprocess.run([sys.executable, "-c", GC_PROBE, str(data.path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    return json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {"error": res.stderr[-500:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of batched ingestion (default 60)")
    ap.add_argument("--rate", type=float, default=500.0, help="single-event requests per second")
    ap.add_argument("--single-seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--connections", type=int, default=8,
                    help="batched load: concurrent keep-alive connections (default 8; 4 leave a sharded "
                         "server's cores idle while requests wait on the hop and the fsync)")
    ap.add_argument("--visitors", type=int, default=10_000,
                    help="returning visitors the load comes from: each batch is one visitor's, each single "
                         "event a random one's (SDK ids); 0 = every event from one cookieless visitor")
    ap.add_argument("--shards", type=int, default=1,
                    help="run the server with --shards N (scoring in N shard processes); default 1, in process")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="cs-bench-")
    port, data, proc = bench_server(Path(tmp.name) / "data", args.shards)
    out: dict = {"cpus": os.cpu_count(), "shards": args.shards}
    try:
        loop = asyncio.new_event_loop()
        # warm up past the start-up work (session rebuild, the flush process spawning and importing
        # pyarrow: ~2 s of CPU that would otherwise land in the first measured phase)
        loop.run_until_complete(steady_rate(port, 200, 4.0, "POST", "/v1/collect", lambda: json.dumps(_event(args.visitors)).encode()))
        out["baseline_healthz"] = loop.run_until_complete(
            steady_rate(port, args.rate, args.single_seconds, "GET", "/healthz", lambda: b""))
        commits0 = group_commit_buckets(port)
        out["single_event"] = loop.run_until_complete(
            steady_rate(port, args.rate, args.single_seconds, "POST", "/v1/collect",
                        lambda: json.dumps(_event(args.visitors)).encode()))
        commits1 = group_commit_buckets(port)
        # the disk's share of the latency: the worker's own group-commit histogram (bucket bounds)
        out["single_event"]["group_commit_p50_ms_le"] = bucket_quantile(commits0, commits1, 0.50)
        out["single_event"]["group_commit_p99_ms_le"] = bucket_quantile(commits0, commits1, 0.99)
        before = lake_count(data.lake)
        cpu = server_cpu_s(proc.pid, port)
        cpu0 = cpu()
        b = loop.run_until_complete(batched(port, args.duration, args.batch, args.connections, args.visitors))
        drained = wait_drained([data.lake], before + b["acked"])
        own_s, shards_s, flush_s = (after - before_s for after, before_s in zip(cpu(), cpu0, strict=True))
        cpu_s = own_s + shards_s + flush_s
        b["server_cpu_us_per_event"] = cpu_s / max(b["acked"], 1) * 1e6
        b["collect_process_cpu_us_per_event"] = own_s / max(b["acked"], 1) * 1e6
        b["scoring_shards_cpu_us_per_event"] = shards_s / max(b["acked"], 1) * 1e6
        b["flush_process_cpu_us_per_event"] = flush_s / max(b["acked"], 1) * 1e6
        b["events_per_server_cpu_second"] = b["acked"] / cpu_s if cpu_s > 0 else None
        b["drain_after_load_s"] = drained
        b["sustained_into_parquet_eps"] = b["acked"] / (b["seconds"] + drained)
        out["batched"] = b
        out["ack_to_parquet"] = loop.run_until_complete(visibility(port, data.lake, 200, 20.0))
        loop.close()
        out["gc"] = gc_pause(data)
        out["log_floor"] = log_floor(data.path / "log-floor")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        tmp.cleanup()
    s, base, bt, vis = out["single_event"], out["baseline_healthz"], out["batched"], out["ack_to_parquet"]
    out["ratios"] = {"single_p99_vs_healthz_p99": s["p99_ms"] / base["p99_ms"] if base["p99_ms"] else None}
    out["targets"] = {"single_p99_le_3ms": s["p99_ms"] <= 3.0, "batched_ge_20k_eps": bt["sustained_into_parquet_eps"] >= 20_000,
                      "visible_p99_le_5s": vis["p99_s"] <= 5.0}
    if args.json:
        print(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    sharding = f", --shards {args.shards}" if args.shards > 1 else ""
    t = Table(title=f"ingest benchmark ({out['cpus']} CPUs, server{sharding} + load generator on one machine)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_row(f"single event p50 @ {args.rate:.0f} req/s", f"{s['p50_ms']:.2f} ms", "")
    t.add_row(f"single event p99 @ {args.rate:.0f} req/s", f"{s['p99_ms']:.2f} ms", "≤ 3 ms")
    t.add_row("  inside the worker (its Server-Timing) p50 / p99",
              f"{s['in_worker_p50_ms']:.2f} / {s['in_worker_p99_ms']:.2f} ms", "")
    t.add_row("    of which waiting for the durable log p50 / p99",
              f"{s['log_wait_p50_ms']:.2f} / {s['log_wait_p99_ms']:.2f} ms", "")
    t.add_row("  the rest of the round trip (HTTP, kernel, client) p50 / p99",
              f"{s['outside_worker_p50_ms']:.2f} / {s['outside_worker_p99_ms']:.2f} ms", "")
    t.add_row("  group commit (write+fsync) p50 / p99 ≤",
              f"{s['group_commit_p50_ms_le']:.1f} / {s['group_commit_p99_ms_le']:.1f} ms", "")
    t.add_row("  baseline GET /healthz p50 / p99", f"{base['p50_ms']:.2f} / {base['p99_ms']:.2f} ms", "")
    t.add_row("  achieved rate / errors", f"{s['achieved_rps']:.0f} / {s['errors']}", "")
    t.add_row(f"batched ({args.batch}/req) acknowledged", f"{bt['acked_eps']:,.0f} ev/s", "")
    t.add_row("batched sustained into Parquet", f"{bt['sustained_into_parquet_eps']:,.0f} ev/s", "≥ 20,000")
    t.add_row("  server CPU per event (+ flush process)", f"{bt['server_cpu_us_per_event']:.0f} µs", "")
    t.add_row("    of which the collect process / scoring shards / the flush process",
              f"{bt['collect_process_cpu_us_per_event']:.0f} / {bt['scoring_shards_cpu_us_per_event']:.0f} / "
              f"{bt['flush_process_cpu_us_per_event']:.0f} µs", "")
    t.add_row("  events per server CPU-second", f"{bt['events_per_server_cpu_second'] or 0:,.0f}", "")
    t.add_row("  load generator CPU per event", f"{bt['client_cpu_us_per_event']:.1f} µs", "")
    fl = out["log_floor"]
    t.add_row("durable log alone: write+fsync p50 / p99",
              f"{fl['write_fsync_p50_ms']:.2f} / {fl['write_fsync_p99_ms']:.2f} ms", "")
    t.add_row("  append (with the group-commit hand-offs) p50 / p99",
              f"{fl['append_p50_ms']:.2f} / {fl['append_p99_ms']:.2f} ms", "")
    if "full_gc_pause_ms" in out["gc"]:
        t.add_row("full GC pause, start-up heap: as is / frozen",
                  f"{out['gc']['full_gc_pause_ms']:.1f} / {out['gc']['full_gc_pause_frozen_ms']:.2f} ms", "")
    t.add_row("ack → visible in Parquet p50 / p99", f"{vis['p50_s']:.2f} / {vis['p99_s']:.2f} s", "p99 ≤ 5 s")
    Console().print(t)


if __name__ == "__main__":
    main()
