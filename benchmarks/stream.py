"""Live stream fan-out through the real ingest path.

Hub phase: a server process with the stream component publishes ``--rate`` events/s (default
1,000) on its event loop, with the same ``hub.publish`` call the collect route makes right after
acknowledging; 1, 10 and 100 viewers of the site are connected to ``/v1/stream`` from separate
processes (``--viewer-procs``, a lean client that costs ~1 µs per event received).  Collect
phase: a real ``clickstream serve`` subprocess; a load generator posts batches of 10 events to
``POST /v1/collect`` at ``--collect-rate``.  Reported per viewer count:

* delivery latency p50/p99: from the HTTP response that acknowledged an event (received by
  the load generator) to its receipt by a viewer, over every (event, viewer) pair;
* events/s delivered (summed over viewers) and the share of events each viewer got;
* ingest throughput with closed-loop load (8 concurrent posters, as fast as the worker goes)
  and its ratio to the run with no viewers: what streaming costs the ingest path;
* CPU seconds per second of the server, of the viewers' processes and (collect phase) of the
  load generator over the latency phase, so that a reader sees which process was the limit.

Also the cost of ``publish`` for a site nobody watches (the hub's idle path), in process.

    python benchmarks/stream.py [--json] [--rate 1000] [--seconds 5] [--viewers 1,10,100] [--batch-mode]
                                [--viewer-procs 1] [--client lean|websockets] [--skip-collect]

Both processes share the machine's monotonic clock (Linux CLOCK_MONOTONIC), so latencies
compare timestamps taken in two processes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from urllib.parse import urlsplit

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
                            # the code next to this benchmark, whatever the venv's editable install points to
                            env={**os.environ, "CLICKSTREAM_DATA": str(data.path),
                                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
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


# -- viewers (separate processes) -----------------------------------------------------------------
# The client side must not be what is measured: 100 viewers x 1,000 events/s is 100,000 event
# receipts a second.  So a viewer here is a bare asyncio Protocol that does the WebSocket
# handshake, splits frames (server frames are unmasked), answers pings, and per complete text
# frame records (receipt time, the ids of the events in it): no copy of the bytes when a read
# holds whole frames, no UTF-8 decoding, no JSON parsing; finding each ``"event_id":"`` costs
# ~1 µs.  ``--client websockets`` uses the websockets library instead (``recv(decode=False)``
# and the same scan), for comparison.
EVENT_ID = b'"event_id":"'


def event_ids(frame: bytes | bytearray, start: int = 0, end: int | None = None) -> list[bytes]:
    out = []
    find = frame.find
    end = len(frame) if end is None else end
    pos = find(EVENT_ID, start, end)
    while pos >= 0:
        pos += 12
        out.append(bytes(frame[pos:pos + 32]))
        pos = find(EVENT_ID, pos, end)
    return out


class LeanViewer(asyncio.Protocol):
    def __init__(self, request: bytes, sink: list, connected: asyncio.Future):
        self.request = request
        self.sink = sink
        self.connected = connected
        self.buf = bytearray()
        self.open = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.buf:
            self.buf += data
            buf = self.buf
        else:  # the usual case: parse the read's own bytes, copy only an incomplete tail
            buf = data
        if not self.open:
            buf = self.buf = bytearray(buf)
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in buf[:buf.find(b"\r\n")]:
                self.connected.set_exception(ConnectionError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[:end + 4]
            self.open = True
            self.connected.set_result(None)
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, length = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            start = pos + head
            end = start + length
            if end > n:
                break
            opcode = b0 & 0x0F
            if opcode in (0, 1):  # text (or a continuation): the events it completes
                ids = event_ids(buf, start, end)
                if ids:
                    self.sink.append((now, ids))
            elif opcode == 9:  # ping → pong with the same payload (client frames are masked)
                payload = bytes(buf[start:end])
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
            elif opcode == 8:
                self.transport.close()
            pos = end
        if buf is self.buf:
            del buf[:pos]
        elif pos < n:
            self.buf = bytearray(buf[pos:])


async def connect_lean(ws_url: str, sink: list) -> asyncio.Transport:
    parsed = urlsplit(ws_url)
    request = (f"GET {parsed.path}?{parsed.query} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    connected = loop.create_future()
    transport, _ = await loop.create_connection(lambda: LeanViewer(request, sink, connected),
                                                parsed.hostname, parsed.port)
    await asyncio.wait_for(connected, 30)
    return transport


def viewer_process(ws_url: str, n: int, batch_mode: bool, client: str, ready, stop, out) -> None:
    import gc

    gc.disable()  # the sinks only grow (no cycles): no collector pauses in the measurement

    async def main():
        received: list[list[tuple[float, list[bytes]]]] = [[] for _ in range(n)]
        url = ws_url + ("&batch=1" if batch_mode else "")
        if client == "lean":
            conns = [await connect_lean(url, received[i]) for i in range(n)]
            tasks = []
        else:
            from websockets.asyncio.client import connect

            conns = [await connect(url, compression=None, max_size=2**24, max_queue=None) for _ in range(n)]

            async def read(sink, c) -> None:
                try:
                    while True:
                        msg = await c.recv(decode=False)
                        now = time.monotonic()
                        ids = event_ids(msg)
                        if ids:
                            sink.append((now, ids))
                except Exception:  # noqa: BLE001 - connection closed at the end
                    pass

            tasks = [asyncio.create_task(read(received[i], c)) for i, c in enumerate(conns)]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for c in conns:
            if client == "lean":
                c.close()
            else:
                await c.close()
        for t in tasks:
            t.cancel()
        out.put(received)

    asyncio.run(main())


class Viewers:
    """``n`` viewers spread over ``procs`` processes."""

    def __init__(self, ws_url: str, n: int, args):
        ctx = mp.get_context("spawn")
        self.stop, self.out = ctx.Event(), ctx.Queue()
        self.procs, readies = [], []
        k = max(1, min(args.viewer_procs, n))
        for j in range(k):
            ready = ctx.Event()
            share = n // k + (1 if j < n % k else 0)
            p = ctx.Process(target=viewer_process,
                            args=(ws_url, share, args.batch_mode, args.client, ready, self.stop, self.out))
            p.start()
            self.procs.append(p)
            readies.append(ready)
        for ready in readies:
            if not ready.wait(120):
                raise SystemExit("viewers did not connect")

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def collect(self) -> list[list[tuple[float, list[bytes]]]]:
        self.stop.set()
        received = []
        for _ in self.procs:
            received.extend(self.out.get(timeout=120))
        for p in self.procs:
            p.join(30)
        return received


def delivery_stats(received, sent: dict[bytes, float], n: int) -> dict:
    """Latency over every (event, viewer) pair: receipt of the frame holding it − publication."""
    latencies, first, last = [], float("inf"), 0.0
    for sink in received:
        for t, ids in sink:
            for event_id in ids:
                a = sent.get(event_id)
                if a is None:
                    continue  # e.g. from the closed-loop phase
                latencies.append((t - a) * 1000)
                first, last = min(first, t), max(last, t)
    delivered = len(latencies)
    return {"delivery_p50_ms": pct(latencies, 50), "delivery_p99_ms": pct(latencies, 99),
            "delivery_max_ms": max(latencies) if latencies else float("nan"),
            "delivered_share": delivered / max(1, len(sent) * n),
            "events_per_s_delivered": delivered / max(last - first, 1e-9)}


# -- hub phase: the server publishes in process, on its event loop, as the collect route does ----
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
    scores = {"intent": 50.0, "frustration": 12.5, "engagement": 61.0, "bot_probability": 2.0}

    def make_events() -> list[TrackedEvent]:
        now = int(time.time() * 1000)
        props = {"plan": "pro", "ab": "b"}
        return [TrackedEvent(type="click", ts_ms=now, event_id=uuid.uuid4().hex, url="/pricing?utm_source=bench",
                             title="Pricing", props=props, visitor_id=f"v{i % 50}", session_id=f"s{i % 50}",
                             request=RequestInfo("bench", now, country="FR", city="Paris"))
                for i in range(int(rate * seconds))]

    async def paced_publish(events: list[TrackedEvent]) -> dict[bytes, float]:
        """On the server's loop, like the collect route right after acknowledging: every event
        due is published in the same loop turn (a request's batch), then sleep to the next."""
        sent: dict[bytes, float] = {}
        interval = 1.0 / rate
        start = time.monotonic()
        i, total = 0, len(events)
        while i < total:
            due = min(total, int((time.monotonic() - start) / interval) + 1)
            while i < due:
                ev = events[i]
                sent[ev.event_id.encode()] = time.monotonic()
                hub.publish("bench", ev, scores)
                i += 1
            await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        return sent

    def driver() -> None:  # waits for the benchmark's go, outside the loop
        while not server.started:
            time.sleep(0.01)
        started.set()
        while True:
            events = make_events()  # the load generator's own work, before the clock starts
            go.wait()
            go.clear()
            out.put(asyncio.run_coroutine_threadsafe(paced_publish(events), hub._loop).result())

    threading.Thread(target=driver, daemon=True).start()
    server.run()


def wait_idle(pid: int, limit_s: float = 120.0) -> None:
    """Until the process has written everything (it goes idle)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.02:
            return


def run_hub_case(hub_url: str, key: str, n: int, args, go, out, server_pid: int) -> dict:
    ws_url = hub_url.replace("http://", "ws://") + f"/v1/stream?token={key}"
    viewers = Viewers(ws_url, n, args)  # n = 0: one process without connections
    cpu0 = (cpu_seconds(server_pid), viewers.cpu_seconds(), time.monotonic())
    go.set()
    sent = out.get(timeout=args.seconds * 10 + 60)
    wait_idle(server_pid)
    cpu1 = (cpu_seconds(server_pid), viewers.cpu_seconds(), time.monotonic() - 0.5)
    received = viewers.collect()
    stats = delivery_stats(received, sent, n)
    delivered = stats["delivered_share"] * len(sent) * n
    span = cpu1[2] - cpu0[2]
    server_cpu, viewers_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    return {"viewers": n, "viewer_processes": len(viewers.procs), "events_published": len(sent), **stats,
            # CPU seconds per second of each process over the run (1.0 = one core busy)
            "server_cpu_cores": server_cpu / span,
            "viewers_cpu_cores": viewers_cpu / span,
            "viewers_cpu_cores_per_process": viewers_cpu / span / len(viewers.procs),
            # load-independent: CPU per (event, viewer) delivery, and the cores the server would
            # need for rate x viewers deliveries per second
            "server_cpu_us_per_delivery": server_cpu / max(delivered, 1) * 1e6,
            "viewers_cpu_us_per_delivery": viewers_cpu / max(delivered, 1) * 1e6,
            "server_cores_needed": server_cpu / max(delivered, 1) * args.rate * n,
            # the client is the limit when its processes are near one core each
            "viewers_saturated": viewers_cpu / span / len(viewers.procs) > 0.85,
            "load_average_1m": os.getloadavg()[0]}


# -- ingest ------------------------------------------------------------------------------------------
def body() -> dict:
    now = int(time.time() * 1000)
    return {"events": [{"type": "click", "url": "/pricing?utm_source=bench", "event_id": uuid.uuid4().hex,
                        "visitor_id": f"v{i}", "ts": now} for i in range(BATCH)]}


async def paced_ingest(url: str, rate: float, seconds: float, failures: dict[str, int]) -> dict[bytes, float]:
    """Open-loop load: a batch every BATCH/rate seconds, not waiting for earlier answers.
    Answers other than 200 are counted in ``failures`` by status (or exception name)."""
    acks: dict[bytes, float] = {}
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
                    acks[e["event_id"].encode()] = now

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


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_case(url: str, key: str, n: int, args, server_pid: int) -> dict:
    viewers = Viewers(url.replace("http://", "ws://") + f"/v1/stream?token={key}", n, args) if n else None
    throughput = asyncio.run(closed_loop_ingest(url, args.closed_seconds))
    failures: dict[str, int] = {}
    cpu0 = (cpu_seconds(server_pid), viewers.cpu_seconds() if viewers else 0.0, own_cpu_seconds(), time.monotonic())
    acks = asyncio.run(paced_ingest(url, args.collect_rate, args.seconds, failures))
    wait_idle(server_pid)
    cpu1 = (cpu_seconds(server_pid), viewers.cpu_seconds() if viewers else 0.0, own_cpu_seconds(),
            time.monotonic() - 0.5)
    span = cpu1[3] - cpu0[3]
    ingest_span = max(acks.values()) - min(acks.values()) if acks else 0.0
    result = {"viewers": n, "events_acked": len(acks), "failed_requests": failures,
              "ingest_events_per_s_paced": len(acks) / max(ingest_span, 1e-9),
              "ingest_events_per_s_max": throughput,
              "server_cpu_cores": (cpu1[0] - cpu0[0]) / span, "viewers_cpu_cores": (cpu1[1] - cpu0[1]) / span,
              "load_generator_cpu_cores": (cpu1[2] - cpu0[2]) / span}
    if viewers is not None:
        result.update(delivery_stats(viewers.collect(), acks, n))
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
    ap.add_argument("--viewer-procs", type=int, default=1, help="processes the viewers are spread over")
    ap.add_argument("--client", choices=["lean", "websockets"], default="lean",
                    help="viewer client: a bare asyncio protocol (default) or the websockets library")
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
            for n in [0, *counts]:  # 0 viewers: what the publishing loop (the load generator) costs
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
                    cases.append(run_case(url, key, n, args, proc.pid))
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
    worst_p99 = max((c["delivery_p99_ms"] for c in hub_cases if c["viewers"]), default=float("nan"))
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
                "server CPU (cores)", "µs/delivery", "viewers CPU (cores, procs)", "load avg"):
        t.add_column(col, justify="right")
    for c in hub_cases:
        if not c["viewers"]:
            print(f"hub phase without viewers (the publishing loop alone): server CPU {c['server_cpu_cores']:.2f} cores")
            continue
        t.add_row(str(c["viewers"]), f"{c['delivery_p50_ms']:.1f}", f"{c['delivery_p99_ms']:.1f}",
                  f"{c['delivery_max_ms']:.1f}", f"{c['delivered_share']:.3f}", f"{c['events_per_s_delivered']:.0f}",
                  f"{c['server_cpu_cores']:.2f}", f"{c['server_cpu_us_per_delivery']:.1f}",
                  f"{c['viewers_cpu_cores']:.2f} ({c['viewer_processes']})", f"{c['load_average_1m']:.1f}")
    Console().print(t)
    t = Table(title=f"through POST /v1/collect at {args.collect_rate:.0f} events/s (latency from the HTTP "
                    "response); ingest throughput with 8 closed-loop posters")
    for col in ("viewers", "p50 ms", "p99 ms", "delivered share", "events/s delivered",
                "CPU cores: server / viewers / load gen", "ingest ev/s (max)", "ratio to 0 viewers"):
        t.add_column(col, justify="right")
    for c in cases:
        t.add_row(str(c["viewers"]), f"{c.get('delivery_p50_ms', float('nan')):.1f}",
                  f"{c.get('delivery_p99_ms', float('nan')):.1f}",
                  f"{c.get('delivered_share', float('nan')):.3f}", f"{c.get('events_per_s_delivered', 0):.0f}",
                  f"{c['server_cpu_cores']:.2f} / {c['viewers_cpu_cores']:.2f} / {c['load_generator_cpu_cores']:.2f}",
                  f"{c['ingest_events_per_s_max']:.0f}", f"{c['ingest_ratio_to_no_viewers']:.2f}")
    Console().print(t)
    print(f"publish() for a site nobody watches: {idle['idle_publish_ns']:.0f} ns "
          f"(an empty function call: {idle['noop_call_ns']:.0f} ns)")


if __name__ == "__main__":
    main()
