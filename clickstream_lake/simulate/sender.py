"""Send simulated traffic to a running worker over HTTP, like browsers running the SDK would.

* ``POST {target}/v1/collect`` with the site's tracking hostname in the ``Host`` header;
* a cookie jar per visitor: every ``Set-Cookie`` of a response is kept and sent back with
  that visitor's later requests;
* the event's own headers (User-Agent, X-Forwarded-For, cf-ip* geo);
* batches: a visitor's consecutive events are grouped into one ``{"events": [...]}`` body,
  up to ``batch`` events, flushed when the visitor is idle for ``flush_gap_ms`` of simulated
  time or starts a new session (a batch of one is sent as a bare event object);
* ``concurrency`` connections; a visitor's requests always go in order through the same
  connection slot, so the cookie set by one request is sent with the next.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from clickstream_lake.simulate.model import SimEvent

COLLECT_PATH = "/v1/collect"


@dataclass
class SendReport:
    """What happened to the traffic sent."""

    events: int = 0  # events sent (in requests that got any answer or failed)
    requests: int = 0
    accepted: int = 0  # events the worker acknowledged
    rejected: int = 0  # events the worker refused (per-event rejections and refused requests)
    http_errors: int = 0  # requests answered with a non-2xx status or not answered at all
    status_counts: dict[int, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)  # rejection reasons, most frequent first
    errors: list[str] = field(default_factory=list)  # a few transport/HTTP error samples
    elapsed_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "requests": self.requests,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "http_errors": self.http_errors,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "reasons": self.reasons,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.events_per_s, 1),
        }


@dataclass(slots=True)
class _Batch:
    visitor_key: str
    hostname: str
    headers: dict[str, str]
    bodies: list[dict[str, Any]]


def _batches(events: Iterable[SimEvent], batch: int, flush_gap_ms: int):
    """Group each visitor's consecutive events into batches, in send order."""
    open_: OrderedDict[str, tuple[_Batch, int, str]] = OrderedDict()  # visitor -> (batch, last ms, session)
    for ev in events:
        now = ev.send_ms
        # flush visitors that have been idle long enough (oldest activity first)
        while open_:
            key, (b, last, _s) = next(iter(open_.items()))
            if now - last <= flush_gap_ms:
                break
            del open_[key]
            yield b
        cur = open_.pop(ev.visitor_key, None)
        if cur is not None:
            b, _last, session = cur
            if session != ev.session_key or len(b.bodies) >= batch:
                yield b
                cur = None
        if cur is None:
            b = _Batch(ev.visitor_key, ev.hostname, ev.headers, [])
        b.bodies.append(ev.body)
        open_[ev.visitor_key] = (b, now, ev.session_key)
    for b, _last, _s in open_.values():
        yield b


def _header_value(value: str) -> str | bytes:
    return value if value.isascii() else value.encode("utf-8")


class _Sender:
    def __init__(self, target: str, *, concurrency: int, timeout: float, retries: int, path: str,
                 progress: Any, task: Any):
        self.url = target.rstrip("/") + path
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.retries = retries
        self.report = SendReport()
        self.reasons: Counter[str] = Counter()
        self.jars: dict[str, dict[str, str]] = {}
        self.progress = progress
        self.task = task

    async def _post(self, client: httpx.AsyncClient, b: _Batch) -> None:
        rep = self.report
        jar = self.jars.get(b.visitor_key)
        headers: dict[str, str | bytes] = {k: _header_value(v) for k, v in b.headers.items()}
        headers["Host"] = b.hostname
        headers["Content-Type"] = "application/json"
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        payload = b.bodies[0] if len(b.bodies) == 1 else {"events": b.bodies}
        content = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        n = len(b.bodies)
        resp = None
        for attempt in range(self.retries + 1):
            try:
                resp = await client.post(self.url, content=content, headers=headers)
                break
            except httpx.TransportError as e:
                if attempt == self.retries:
                    rep.requests += 1
                    rep.events += n
                    rep.http_errors += 1
                    if len(rep.errors) < 10:
                        rep.errors.append(f"{type(e).__name__}: {e}")
                    self._advance(n)
                    return
                await asyncio.sleep(0.05 * 2**attempt)
        assert resp is not None
        rep.requests += 1
        rep.events += n
        rep.status_counts[resp.status_code] = rep.status_counts.get(resp.status_code, 0) + 1
        for raw in resp.headers.get_list("set-cookie"):
            pair = raw.split(";", 1)[0]
            name, sep, value = pair.partition("=")
            if sep and name.strip():
                self.jars.setdefault(b.visitor_key, {})[name.strip()] = value.strip()
        try:
            data = resp.json()
        except ValueError:
            data = None
        if 200 <= resp.status_code < 300 and isinstance(data, dict):
            accepted = int(data.get("accepted") or 0)
            rejected = data.get("rejected") or []
            rep.accepted += accepted
            rep.rejected += len(rejected)
            for r in rejected:
                if isinstance(r, dict):
                    self.reasons[str(r.get("error", ""))[:120]] += 1
        else:
            rep.http_errors += 1
            if 400 <= resp.status_code < 500:
                rep.rejected += n
            reason = data.get("error") if isinstance(data, dict) else None
            msg = f"HTTP {resp.status_code}: {str(reason or resp.text)[:160]}"
            self.reasons[msg] += n
            if len(rep.errors) < 10:
                rep.errors.append(msg)
        self._advance(n)

    def _advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n)

    async def _worker(self, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        while True:
            b = await queue.get()
            if b is None:
                return
            await self._post(client, b)

    async def run(self, batches: Iterable[_Batch]) -> SendReport:
        t0 = time.perf_counter()
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        # the client's own jar would share cookies between visitors: it accepts none, the
        # per-visitor jars in self.jars do the work
        no_jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, trust_env=False, cookies=no_jar) as client:
            queues: list[asyncio.Queue] = [asyncio.Queue(maxsize=64) for _ in range(self.concurrency)]
            workers = [asyncio.create_task(self._worker(client, q)) for q in queues]
            try:
                for i, b in enumerate(batches):
                    # a visitor always goes through the same queue: its requests stay in order
                    q = queues[zlib.crc32(b.visitor_key.encode()) % self.concurrency]
                    await q.put(b)
                    if i % 64 == 0:
                        await asyncio.sleep(0)
            finally:
                for q in queues:
                    await q.put(None)
                await asyncio.gather(*workers)
        self.report.elapsed_s = time.perf_counter() - t0
        self.report.reasons = dict(self.reasons.most_common(20))
        return self.report


def send(
    events: Iterable[SimEvent],
    target: str,
    batch: int = 20,
    concurrency: int = 8,
    progress: bool = True,
    *,
    timeout: float = 30.0,
    retries: int = 2,
    flush_gap_ms: int = 5_000,
    path: str = COLLECT_PATH,
    total: int | None = None,
) -> SendReport:
    """Send events (in send order) to the worker at ``target``; returns what happened.

    Runs its own event loop (in a helper thread when called from inside a running loop).
    ``total`` sizes the progress bar; a sequence's length is used when not given.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if total is None and isinstance(events, Sequence):
        total = len(events)
    prog = task = None
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        prog = Progress(TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                        TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        task = prog.add_task("send", total=total)
    sender = _Sender(target, concurrency=concurrency, timeout=timeout, retries=retries, path=path,
                     progress=prog, task=task)

    def run() -> SendReport:
        return asyncio.run(sender.run(_batches(events, batch, flush_gap_ms)))

    try:
        if prog is not None:
            prog.start()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run()
        result: dict[str, Any] = {}

        def in_thread() -> None:
            try:
                result["report"] = run()
            except BaseException as e:  # re-raised in the caller
                result["error"] = e

        th = threading.Thread(target=in_thread, name="simulate-send")
        th.start()
        th.join()
        if "error" in result:
            raise result["error"]
        return result["report"]
    finally:
        if prog is not None:
            prog.stop()
