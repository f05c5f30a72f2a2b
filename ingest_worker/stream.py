"""The live stream hub: every scored event of a site, pushed to that site's dashboards.

The source article's Durable Object, one per site, holding the site's WebSockets, with its
Hibernation lesson: a site nobody is watching costs nothing.  Here:

* :class:`StreamHub` keeps a dict ``site id → SiteHub``.  A :class:`SiteHub` exists only
  while it has viewers: it is created when the first viewer attaches and removed when the
  last one detaches.  There is no per-site task, buffer or timer; ``publish`` for a site
  without viewers is one dict lookup.
* A :class:`Viewer` is one connection's bounded queue (``deque(maxlen=n)``).  Publishing
  appends to it and never awaits: a slow viewer loses its *oldest* events and is told how
  many with a ``{"type": "missed", "count": n}`` notice, and it can slow neither ingestion
  nor the other viewers.
* Each event is serialised to JSON once (not once per viewer), and only if at least one
  viewer's :class:`Filters` accept it.

The HTTP side (WebSocket ``GET /v1/stream``, Server-Sent Events ``GET /v1/stream.sse``,
authentication, heartbeats) is :mod:`ingest_worker.stream_routes`; :func:`component` is
the factory listed in ``ingest_worker.app.COMPONENTS``.  The message format is documented in
``docs/stream.md``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clickstream_lake.codec import SCORE_NAMES
from ingest_worker.events import EVENT_TYPES, TrackedEvent, to_row_values

DEFAULT_QUEUE_SIZE = 1000
DEFAULT_HEARTBEAT_S = 15.0
MAX_BATCH = 256  # events per message when a viewer asked for batches
DEFAULT_BATCH_LINGER_MS = 10.0  # a batching viewer's writer gathers events this long after waking


class FilterError(ValueError):
    """A subscribe message or filter query the client can fix."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Server-side filters of one viewer: event types, and minimum scores (all must hold)."""

    types: frozenset[str] | None = None  # None = every type
    min_scores: tuple[tuple[str, float], ...] = ()

    def accepts(self, event_type: str, scores: Mapping[str, Any]) -> bool:
        if self.types is not None and event_type not in self.types:
            return False
        for name, threshold in self.min_scores:
            v = scores.get(name)
            if v is None or not v >= threshold:  # missing or NaN score: not above any threshold
                return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"types": sorted(self.types) if self.types is not None else None,
                "min_scores": dict(self.min_scores)}

    @classmethod
    def build(cls, types: Iterable[Any] | None, min_scores: Mapping[str, Any] | None) -> Filters:
        type_set: frozenset[str] | None = None
        if types is not None:
            if isinstance(types, str) or not isinstance(types, Iterable):
                raise FilterError("types must be a list of event types")
            type_set = frozenset(str(t).strip() for t in types if str(t).strip())
            unknown = sorted(type_set - set(EVENT_TYPES))
            if unknown:
                raise FilterError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
            if not type_set:
                type_set = None
        mins: list[tuple[str, float]] = []
        if min_scores is not None:
            if not isinstance(min_scores, Mapping):
                raise FilterError("min_scores must be an object {score name: minimum}")
            for name, raw in min_scores.items():
                if name not in SCORE_NAMES:
                    raise FilterError(f"unknown score {name!r}; known: {', '.join(SCORE_NAMES)}")
                try:
                    threshold = float(raw)
                except (TypeError, ValueError):
                    raise FilterError(f"min_scores.{name} must be a number, got {raw!r}") from None
                if math.isnan(threshold) or isinstance(raw, bool):
                    raise FilterError(f"min_scores.{name} must be a number, got {raw!r}")
                mins.append((name, threshold))
        return cls(type_set, tuple(sorted(mins)))

    @classmethod
    def from_subscribe(cls, message: Any) -> tuple[Filters, bool]:
        """``{"subscribe": {"types": [...], "min_scores": {...}, "batch": bool}}`` → (filters, batch)."""
        if not isinstance(message, dict) or not isinstance(message.get("subscribe"), dict):
            raise FilterError('expected {"subscribe": {"types": [...], "min_scores": {...}}}')
        sub = message["subscribe"]
        unknown = sorted(set(sub) - {"types", "min_scores", "batch"})
        if unknown:
            raise FilterError(f"unknown subscribe fields {unknown}; known: types, min_scores, batch")
        batch = sub.get("batch", False)
        if not isinstance(batch, bool):
            raise FilterError("batch must be true or false")
        return cls.build(sub.get("types"), sub.get("min_scores")), batch

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filters:
        """``?types=click,purchase&min.frustration=70`` (the SSE and WebSocket query form)."""
        types = params.get("types")
        mins = {k[4:]: v for k, v in params.items() if k.startswith("min.")}
        return cls.build(types.split(",") if types is not None else None, mins or None)


class Viewer:
    """One connected client: a bounded queue of serialised messages and what it missed."""

    __slots__ = ("site_id", "filters", "batch", "queue", "control", "missed", "missed_total", "delivered",
                 "_waiter", "closed")

    def __init__(self, site_id: str, filters: Filters, queue_size: int, batch: bool = False):
        self.site_id = site_id
        self.filters = filters
        self.batch = batch
        self.queue: deque[str] = deque(maxlen=queue_size)
        self.control: deque[str] = deque()  # server notices (subscribed, error): never dropped
        self.missed = 0  # dropped since the last notice
        self.missed_total = 0
        self.delivered = 0
        self._waiter: asyncio.Future[bool] | None = None  # the writer, when it sleeps
        self.closed = False

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(True)

    def offer(self, payload: str) -> bool:
        """Queue a message (loop thread only); returns whether an older one was dropped."""
        q = self.queue
        dropped = len(q) == q.maxlen
        if dropped:
            self.missed += 1
            self.missed_total += 1
        q.append(payload)  # a full deque drops its oldest element
        if self._waiter is not None:
            self._wake()
        return dropped

    def notify(self, message: dict[str, Any]) -> None:
        """Queue a control message, sent before any queued event."""
        self.control.append(dumps(message))
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def wait(self, timeout: float) -> bool:
        """Wait until there is something to send (False if ``timeout`` passes first).

        A bare future and one timer: cheaper than ``asyncio.wait_for`` on an ``Event``,
        which matters when a hundred writers wake a hundred times a second."""
        if self.queue or self.control or self.missed or self.closed:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(timeout, _expire, fut)
        self._waiter = fut
        try:
            return await fut
        finally:
            self._waiter = None
            timer.cancel()

    def take_missed(self) -> int:
        n, self.missed = self.missed, 0
        return n

    def take(self, limit: int) -> list[str]:
        q = self.queue
        out = []
        while q and len(out) < limit:
            out.append(q.popleft())
        self.delivered += len(out)
        return out


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class SiteHub:
    """The viewers of one site; exists only while there is at least one."""

    __slots__ = ("site_id", "viewers", "seq")

    def __init__(self, site_id: str):
        self.site_id = site_id
        self.viewers: list[Viewer] = []
        self.seq = itertools.count(1)


def _finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: replace them with null (rarely needed, so done on retry)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def dumps(message: dict[str, Any]) -> str:
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(message), separators=(",", ":"), ensure_ascii=False, default=str)


def event_message(site_id: str, seq: int, event: TrackedEvent, scores: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{"type": "event"}`` message: the decoded row values (scores apart) and the scores."""
    values = to_row_values(event)
    for name in scores:
        values.pop(name, None)
    return {"type": "event", "site_id": site_id, "seq": seq, "sent_ms": int(time.time() * 1000),
            "event": values, "scores": dict(scores)}


class StreamHub:
    """Per-site fan-out of scored events to connected viewers.

    ``publish`` may be called from the event loop's thread (the collect route does) or from
    any other thread (it then hops onto the loop with ``call_soon_threadsafe``).  Everything
    else runs on the loop.
    """

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 batch_linger_s: float = DEFAULT_BATCH_LINGER_MS / 1000):
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self.batch_linger_s = batch_linger_s
        self.sites: dict[str, SiteHub] = {}  # the hub registry: only sites with viewers
        self.published = 0  # events fanned out (to sites with viewers)
        self.dropped = 0  # messages dropped from full viewer queues
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def bind_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def stats(self) -> dict[str, int]:
        return {"sites": len(self.sites), "viewers": sum(len(s.viewers) for s in self.sites.values()),
                "published": self.published, "dropped": self.dropped}

    # -- viewers (loop thread) -------------------------------------------------------------------
    def attach(self, site_id: str, filters: Filters | None = None, *, batch: bool = False,
               queue_size: int | None = None) -> Viewer:
        viewer = Viewer(site_id, filters or Filters(), queue_size or self.queue_size, batch)
        site = self.sites.get(site_id)
        if site is None:
            site = self.sites[site_id] = SiteHub(site_id)
        site.viewers.append(viewer)
        return viewer

    def detach(self, viewer: Viewer) -> None:
        viewer.close()
        site = self.sites.get(viewer.site_id)
        if site is None:
            return
        try:
            site.viewers.remove(viewer)
        except ValueError:
            pass
        if not site.viewers:
            del self.sites[viewer.site_id]  # the last viewer left: the site costs nothing again

    def close_all(self) -> None:
        for site in list(self.sites.values()):
            for v in list(site.viewers):
                self.detach(v)

    # -- ingestion side --------------------------------------------------------------------------
    def publish(self, site_id: str, event: TrackedEvent, scores: Mapping[str, Any]) -> None:
        """Hand one acknowledged event to the site's viewers; never blocks, never raises on
        a slow viewer.  For a site without viewers this is one dict lookup."""
        if site_id not in self.sites:
            return
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._fan_out, site_id, event, scores)
            return
        self._fan_out(site_id, event, scores)

    def _fan_out(self, site_id: str, event: TrackedEvent, scores: Mapping[str, Any]) -> None:
        site = self.sites.get(site_id)
        if site is None:
            return
        seq = next(site.seq)  # counts every event of the site while it has viewers
        payload: str | None = None
        event_type = event.type
        for viewer in site.viewers:
            if not viewer.filters.accepts(event_type, scores):
                continue
            if payload is None:  # serialised once, and only if someone wants it
                payload = dumps(event_message(site_id, seq, event, scores))
            if viewer.offer(payload):
                self.dropped += 1
        if payload is not None:
            self.published += 1


def component(ctx: Any) -> Any:
    """Factory for ``ingest_worker.app.COMPONENTS``: the hub and its two endpoints."""
    from ingest_worker.stream_routes import StreamComponent

    return StreamComponent(ctx)
