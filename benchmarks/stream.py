"""Live stream fan-out through the real ingest path.

A real ``clickstream serve`` subprocess; a load generator posts batches of 10 events to
``POST /v1/collect`` at a steady rate (default 1,000 events/s); 0, 1, 10 and 100 viewers of
the site are connected to ``/v1/stream`` from a separate process.  Reported per viewer
count:

* delivery latency p50/p99: from the HTTP response that acknowledged an event (received by
  the load generator) to its receipt by a viewer, over every (event, viewer) pair;
* events/s delivered (summed over viewers) and the share of events each viewer got;
* ingest throughput with closed-loop load (8 concurrent posters, as fast as the worker goes)
  and its ratio to the run with no viewers: what streaming costs the ingest path.

Also the cost of ``publish`` for a site nobody watches (the hub's idle path), in process.

    python benchmarks/stream.py [--json] [--rate 1000] [--seconds 5] [--viewers 1,10,100] [--batch-mode]

Both processes share the machine's monotonic clock (Linux CLOCK_MONOTONIC), so latencies
compare timestamps taken in two processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clickstream_lake.control import keys as keys_mod  # noqa: E402
from clickstream_lake.control import sites as sites_mod  # noqa: E402
from clickstream_lake.control.db import ControlDB  # noqa: E402
from clickstream_lake.settings import DataDir  # noqa: E402

HOST = "t.bench.test"
UA = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"
BATCH = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: DataDir) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(data.path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "clickstream_lake", "serve", "--port", str(port),
                             "--data", str(data.path)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "CLICKSTREAM_DATA": str(data.path)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start: " + (data.path / "serve.log").read_text(errors="replace"))


# -- viewers (a separate process) ----------------------------------------------------------------
def viewer_process(ws_url: str, n: int, batch_mode: bool, ready, stop, out) -> None:
    from websockets.asyncio.client import connect

    async def main():
        received: list[list[tuple[str, float]]] = [[] for _ in range(n)]
        suffix = "&batch=1" if batch_mode else ""
        conns = [await connect(ws_url + suffix, compression=None, max_size=2**24, max_queue=None)
                 for _ in range(n)]
        for c in conns:
            await c.recv()  # hello

        async def read(i: int, c) -> None:
            sink = received[i]
            try:
                async for msg in c:
                    now = time.monotonic()
                    pos = 0
                    while True:  # event ids without parsing the whole message
                        pos = msg.find('"event_id":"', pos)
                        if pos < 0:
                            break
                        pos += 12
                        sink.append((msg[pos:msg.index('"', pos)], now))
            except Exception:  # noqa: BLE001 - connection closed at the end
                pass

        tasks = [asyncio.create_task(read(i, c)) for i, c in enumerate(conns)]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the tail arrive
        for c in conns:
            await c.close()
        for t in tasks:
            t.cancel()
        out.put(received)

    asyncio.run(main())


# -- hub mode: the server publishes in process (the hook collect calls after acknowledging) --
def hub_server_process(data_path: str, port: int, rate: float, seconds: float, started, go, out) -> None:
    import threading

    import uvicorn

    from clickstream_lake.context import AppContext
    from ingest_worker.app import build_app
    from ingest_worker.events import RequestInfo, TrackedEvent

    ctx = AppContext.open(data_path)
    app = build_app(ctx, components=["ingest_worker.stream:component"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ws_per_message_deflate=False))
    hub = ctx.components["stream"].hub

    def publisher() -> None:
        while not server.started:
            time.sleep(0.01)
        started.set()
        while True:
            go.wait()
            go.clear()
            sent: dict[str, float] = {}
            interval = 1.0 / rate
            start = time.monotonic()
            total = int(rate * seconds)
            props = {"plan": "pro", "ab": "b"}
            for i in range(total):
                now = int(time.time() * 1000)
                ev = TrackedEvent(type="click", ts_ms=now, event_id=uuid.uuid4().hex, url="/pricing?utm_source=bench",
                                  title="Pricing", props=props, visitor_id=f"v{i % 50}", session_id=f"s{i % 50}",
                                  request=RequestInfo("bench", now, country="FR", city="Paris"))
                scores = {"intent": 50.0, "frustration": 12.5, "engagement": 61.0, "bot_probability": 2.0}
                sent[ev.event_id] = time.monotonic()
                hub.publish("bench", ev, scores)
                delay = start + (i + 1) * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            out.put(sent)

    threading.Thread(target=publisher, daemon=True).start()
    server.run()


def run_hub_case(hub_url: str, key: str, n: int, args, go, out, server_pid: int) -> dict:
    ctx = mp.get_context("spawn")
    ready, stop, got = ctx.Event(), ctx.Event(), ctx.Queue()
    ws_url = hub_url.replace("http://", "ws://") + f"/v1/stream?token={key}"
    proc = ctx.Process(target=viewer_process, args=(ws_url, n, args.batch_mode, ready, stop, got))
    proc.start()
    if not ready.wait(120):
        raise SystemExit("viewers did not connect")
    cpu0 = (cpu_seconds(server_pid), cpu_seconds(proc.pid), time.monotonic())
    go.set()
    sent = out.get(timeout=args.seconds * 10 + 60)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the server has written everything (it goes idle)
        before = cpu_seconds(server_pid)
        time.sleep(0.5)
        if cpu_seconds(server_pid) - before < 0.02:
            break
    cpu1 = (cpu_seconds(server_pid), cpu_seconds(proc.pid), time.monotonic() - 0.5)
    stop.set()
    received = got.get(timeout=120)
    proc.join(30)
    latencies, delivered, first, last = [], 0, float("inf"), 0.0
    for sink in received:
        for event_id, t in sink:
            a = sent.get(event_id)
            if a is None:
                continue
            delivered += 1
            latencies.append((t - a) * 1000)
            first, last = min(first, t), max(last, t)
    return {"viewers": n, "events_published": len(sent),
            "delivery_p50_ms": pct(latencies, 50), "delivery_p99_ms": pct(latencies, 99),
            "delivery_max_ms": max(latencies) if latencies else float("nan"),
            "delivered_share": delivered / max(1, len(sent) * n),
            "events_per_s_delivered": delivered / max(last - first, 1e-9),
            "server_cpu_cores": (cpu1[0] - cpu0[0]) / (cpu1[2] - cpu0[2]),
            "viewers_cpu_cores": (cpu1[1] - cpu0[1]) / (cpu1[2] - cpu0[2]),
            # load-independent: CPU per (event, viewer) delivery, and the cores the server would
            # need for rate x viewers deliveries per second
            "server_cpu_us_per_delivery": (cpu1[0] - cpu0[0]) / max(delivered, 1) * 1e6,
            "viewers_cpu_us_per_delivery": (cpu1[1] - cpu0[1]) / max(delivered, 1) * 1e6,
            "server_cores_needed": (cpu1[0] - cpu0[0]) / max(delivered, 1) * args.rate * n,
            "load_average_1m": os.getloadavg()[0]}


# -- ingest ------------------------------------------------------------------------------------------
def body() -> dict:
    now = int(time.time() * 1000)
    return {"events": [{"type": "click", "url": "/pricing?utm_source=bench", "event_id": uuid.uuid4().hex,
                        "visitor_id": f"v{i}", "ts": now} for i in range(BATCH)]}


async def paced_ingest(url: str, rate: float, seconds: float, failures: dict[str, int]) -> dict[str, float]:
    """Open-loop load: a batch every BATCH/rate seconds, not waiting for earlier answers.
    Answers other than 200 are counted in ``failures`` by status (or exception name)."""
    acks: dict[str, float] = {}
    interval = BATCH / rate
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        async def one(b: dict) -> None:
            try:
                r = await client.post(url + "/v1/collect", json=b, headers={"Host": HOST, "User-Agent": UA})
            except httpx.HTTPError as e:
                failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
                return
            now = time.monotonic()
            if r.status_code != 200:
                failures[str(r.status_code)] = failures.get(str(r.status_code), 0) + 1
            else:
                for e in b["events"]:
                    acks[e["event_id"]] = now

        tasks = []
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < seconds:
            tasks.append(asyncio.create_task(one(body())))
            k += 1
            await asyncio.sleep(max(0.0, start + k * interval - time.monotonic()))
        await asyncio.gather(*tasks)
    return acks


async def closed_loop_ingest(url: str, seconds: float, concurrency: int = 8) -> float:
    done = 0
    async with httpx.AsyncClient(timeout=30) as client:
        async def worker(deadline: float) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                r = await client.post(url + "/v1/collect", json=body(), headers={"Host": HOST, "User-Agent": UA})
                if r.status_code == 200:
                    done += BATCH
        start = time.monotonic()
        await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
        return done / (time.monotonic() - start)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def run_case(url: str, key: str, n: int, args) -> dict:
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = None
    if n:
        ws_url = url.replace("http://", "ws://") + f"/v1/stream?token={key}"
        proc = ctx.Process(target=viewer_process, args=(ws_url, n, args.batch_mode, ready, stop, out))
        proc.start()
        if not ready.wait(120):
            raise SystemExit("viewers did not connect")
    throughput = asyncio.run(closed_loop_ingest(url, args.closed_seconds))
    failures: dict[str, int] = {}
    acks = asyncio.run(paced_ingest(url, args.collect_rate, args.seconds, failures))
    ingest_span = max(acks.values()) - min(acks.values()) if acks else 0.0
    result = {"viewers": n, "events_acked": len(acks), "failed_requests": failures, "ingest_events_per_s_paced": len(acks) / max(ingest_span, 1e-9),
              "ingest_events_per_s_max": throughput}
    if proc is not None:
        stop.set()
        received = out.get(timeout=120)
        proc.join(30)
        latencies, delivered, first, last = [], 0, float("inf"), 0.0
        for sink in received:
            for event_id, t in sink:
                a = acks.get(event_id)
                if a is None:
                    continue  # from the closed-loop phase
                delivered += 1
                latencies.append((t - a) * 1000)
                first, last = min(first, t), max(last, t)
        result.update({
            "delivery_p50_ms": pct(latencies, 50), "delivery_p99_ms": pct(latencies, 99),
            "delivery_max_ms": max(latencies) if latencies else float("nan"),
            "delivered_share": delivered / max(1, len(acks) * n),
            "events_per_s_delivered": delivered / max(last - first, 1e-9),
        })
    return result


def idle_publish_cost() -> dict:
    """ns per ``hub.publish`` for a site without viewers, next to an empty function call."""
    from ingest_worker.events import RequestInfo, TrackedEvent
    from ingest_worker.stream import StreamHub

    hub = StreamHub()
    hub.attach("watched_site")  # another site has viewers: the idle site still costs a lookup
    ev = TrackedEvent(type="click", ts_ms=0, event_id="x", request=RequestInfo("idle_site", 0))
    scores = {"intent": 1.0}

    def noop(site_id, event, scores):  # the cheapest possible subscriber, for scale
        return None

    n = 1_000_000
    publish = min(timeit.repeat(lambda: hub.publish("idle_site", ev, scores), number=n, repeat=3)) / n * 1e9
    baseline = min(timeit.repeat(lambda: noop("idle_site", ev, scores), number=n, repeat=3)) / n * 1e9
    return {"idle_publish_ns": publish, "noop_call_ns": baseline, "idle_publish_vs_noop": publish / baseline}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s published in the hub phase")
    ap.add_argument("--collect-rate", type=float, default=200.0,
                    help="events/s posted to /v1/collect in the end-to-end phase")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the latency phase")
    ap.add_argument("--closed-seconds", type=float, default=3.0, help="length of the max-throughput phase")
    ap.add_argument("--viewers", default="1,10,100")
    ap.add_argument("--batch-mode", action="store_true", help="viewers ask for batched messages (?batch=1)")
    ap.add_argument("--skip-collect", action="store_true", help="only the in-process hub phase")
    args = ap.parse_args()
    counts = [int(x) for x in args.viewers.split(",") if x.strip()]

    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        data = DataDir.resolve(Path(tmp) / "data").ensure()
        db = ControlDB(data.control_db)
        db.migrate()
        sites_mod.add_site(db, "bench", domain="bench.test", hostnames=[HOST], plan="enterprise")
        key, _ = keys_mod.create_key(db, "bench", name="bench", permissions="read")
        hub_cases = []
        spawn = mp.get_context("spawn")
        started, go, out = spawn.Event(), spawn.Event(), spawn.Queue()
        hub_port = free_port()
        hub_proc = spawn.Process(target=hub_server_process,
                                 args=(str(data.path), hub_port, args.rate, args.seconds, started, go, out))
        hub_proc.start()
        try:
            if not started.wait(60):
                raise SystemExit("hub server did not start")
            for n in counts:
                if not args.json:
                    print(f"… hub phase, {n} viewer(s)", file=sys.stderr)
                hub_cases.append(run_hub_case(f"http://127.0.0.1:{hub_port}", key, n, args, go, out,
                                              hub_proc.pid))
        finally:
            hub_proc.terminate()
            hub_proc.join(20)
        cases = []
        if not args.skip_collect:
            proc, url = start_server(data)
            try:
                for n in [0, *counts]:
                    if not args.json:
                        print(f"… collect phase, {n} viewer(s)", file=sys.stderr)
                    cases.append(run_case(url, key, n, args))
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    base = cases[0]["ingest_events_per_s_max"] if cases else 0.0
    for c in cases:
        c["ingest_ratio_to_no_viewers"] = c["ingest_events_per_s_max"] / base if base else float("nan")
    idle = idle_publish_cost()
    worst_p99 = max((c["delivery_p99_ms"] for c in hub_cases), default=float("nan"))
    result = {"rate": args.rate, "collect_rate": args.collect_rate, "seconds": args.seconds,
              "batch_mode": args.batch_mode, "hub": hub_cases, "collect": cases, **idle,
              "target_p99_ms": 50.0, "hub_worst_p99_ms": worst_p99, "target_met": worst_p99 <= 50.0}
    if args.json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"hub → WebSocket fan-out at {args.rate:.0f} events/s "
                    f"({'batched' if args.batch_mode else 'one message per event'}; publisher in the server process)")
    for col in ("viewers", "p50 ms", "p99 ms", "max ms", "delivered share", "events/s delivered",
                "server CPU (cores)", "µs/delivery", "viewers CPU (cores)", "load avg"):
        t.add_column(col, justify="right")
    for c in hub_cases:
        t.add_row(str(c["viewers"]), f"{c['delivery_p50_ms']:.1f}", f"{c['delivery_p99_ms']:.1f}",
                  f"{c['delivery_max_ms']:.1f}", f"{c['delivered_share']:.3f}", f"{c['events_per_s_delivered']:.0f}",
                  f"{c['server_cpu_cores']:.2f}", f"{c['server_cpu_us_per_delivery']:.1f}",
                  f"{c['viewers_cpu_cores']:.2f}", f"{c['load_average_1m']:.1f}")
    Console().print(t)
    t = Table(title=f"through POST /v1/collect at {args.collect_rate:.0f} events/s (latency from the HTTP "
                    "response); ingest throughput with 8 closed-loop posters")
    for col in ("viewers", "p50 ms", "p99 ms", "delivered share", "events/s delivered",
                "ingest ev/s (max)", "ratio to 0 viewers"):
        t.add_column(col, justify="right")
    for c in cases:
        t.add_row(str(c["viewers"]), f"{c.get('delivery_p50_ms', float('nan')):.1f}",
                  f"{c.get('delivery_p99_ms', float('nan')):.1f}",
                  f"{c.get('delivered_share', float('nan')):.3f}", f"{c.get('events_per_s_delivered', 0):.0f}",
                  f"{c['ingest_events_per_s_max']:.0f}", f"{c['ingest_ratio_to_no_viewers']:.2f}")
    Console().print(t)
    print(f"publish() for a site nobody watches: {idle['idle_publish_ns']:.0f} ns "
          f"(an empty function call: {idle['noop_call_ns']:.0f} ns)")


if __name__ == "__main__":
    main()
