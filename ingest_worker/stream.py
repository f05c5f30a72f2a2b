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
* Fan-out happens per *window*, not per event.  ``publish`` appends the event to the site's
  pending list and, for the first event of a window, schedules one flush: at the end of the
  current loop iteration for viewers that want one message per event (so the events of one
  collect request wake each writer once), after ``batch_linger_s`` (10 ms) for viewers that
  asked for batches.  The flush works per *group*: viewers with the same filters share one
  filter pass, each event is serialised to JSON once (not once per viewer, and only if some
  group accepts it), and a group's batch frame (``{"type":"batch","events":[…]}``) is built
  once and the same string object queued for each of its viewers.  Each writer is then woken
  once per window.  There is still no task and no timer per site: the flush timer exists only
  while events are pending for a watched site.

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

import orjson

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
    """One connected client: a bounded queue of serialised events, its control notices, what
    it missed, and the shared batch frames that cover its queue."""

    __slots__ = ("site_id", "filters", "batch", "queue", "control", "missed", "missed_total", "delivered",
                 "frames", "shared_frames", "_waiter", "closed")

    def __init__(self, site_id: str, filters: Filters, queue_size: int, batch: bool = False):
        self.site_id = site_id
        self.filters = filters
        self.batch = batch
        self.queue: deque[str] = deque(maxlen=queue_size)
        self.control: deque[str] = deque()  # server notices (subscribed, error): never dropped
        self.missed = 0  # dropped since the last notice
        self.missed_total = 0
        self.delivered = 0
        # (frame, n): batch messages built once for the viewer's group.  Invariant: when not
        # empty, the queue holds exactly these frames' events, in order (cleared otherwise).
        self.frames: deque[tuple[str, int]] = deque()
        self.shared_frames = 0  # batch messages sent as the group's shared string
        self._waiter: asyncio.Future[bool] | None = None  # the writer, when it sleeps
        self.closed = False

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(True)

    def offer(self, payload: str) -> bool:
        """Queue one message (loop thread only); returns whether an older one was dropped."""
        return self.offer_many((payload,)) > 0

    def offer_many(self, payloads: tuple[str, ...] | list[str], frame: str | None = None) -> int:
        """Queue events (loop thread only) and wake the writer once; returns how many older
        events were dropped (a full queue drops its oldest).  ``frame`` is the batch message
        of exactly ``payloads``, shared by the viewers of a group: it is kept for
        :meth:`take_batch` while the queue holds nothing else."""
        q = self.queue
        over = len(q) + len(payloads) - q.maxlen  # type: ignore[operator]
        if over > 0:
            self.missed += over
            self.missed_total += over
            self.frames.clear()
        elif frame is not None and (not q or self.frames):
            self.frames.append((frame, len(payloads)))
        elif self.frames:
            self.frames.clear()
        q.extend(payloads)  # a full deque drops its oldest elements
        if self._waiter is not None:
            self._wake()
        return max(over, 0)

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
        if out and self.frames:
            self.frames.clear()
        self.delivered += len(out)
        return out

    def take_batch(self) -> str | None:
        """The next ``batch`` message: the group's shared frame when it is all that is queued
        (the usual case for a viewer that keeps up), else one built here from at most
        ``MAX_BATCH`` queued events (a viewer catching up)."""
        if len(self.frames) == 1:
            frame, n = self.frames.popleft()
            self.queue.clear()
            self.delivered += n
            self.shared_frames += 1
            return frame
        events = self.take(MAX_BATCH)
        return batch_frame(events) if events else None


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class _Pending:
    """One published event waiting for its site's next flush; serialised at most once."""

    __slots__ = ("seq", "type", "scores", "event", "sent_ms", "payload")

    def __init__(self, seq: int, event: TrackedEvent, scores: Mapping[str, Any], sent_ms: int):
        self.seq = seq
        self.type = event.type
        self.scores = scores
        self.event = event
        self.sent_ms = sent_ms
        self.payload: str | None = None


class Group:
    """The viewers of one site with the same filters: one filter pass and one batch frame
    per flush serve them all."""

    __slots__ = ("filters", "stream", "batch")

    def __init__(self, filters: Filters):
        self.filters = filters
        self.stream: list[Viewer] = []  # one message per event
        self.batch: list[Viewer] = []  # batch messages


class SiteHub:
    """The viewers of one site; exists only while there is at least one."""

    __slots__ = ("site_id", "viewers", "seq", "groups", "n_stream", "n_batch", "pending_now", "pending_batch",
                 "batch_timer")

    def __init__(self, site_id: str):
        self.site_id = site_id
        self.viewers: list[Viewer] = []
        self.seq = itertools.count(1)
        self.groups: dict[Filters, Group] = {}
        self.n_stream = 0
        self.n_batch = 0
        self.pending_now: list[_Pending] = []  # for the stream viewers: flushed at the end of this loop turn
        self.pending_batch: list[_Pending] = []  # for the batch viewers: flushed after the linger
        self.batch_timer: asyncio.TimerHandle | None = None

    def join(self, viewer: Viewer) -> None:
        group = self.groups.get(viewer.filters)
        if group is None:
            group = self.groups[viewer.filters] = Group(viewer.filters)
        if viewer.batch:
            group.batch.append(viewer)
            self.n_batch += 1
        else:
            group.stream.append(viewer)
            self.n_stream += 1

    def leave(self, viewer: Viewer) -> None:
        group = self.groups.get(viewer.filters)
        if group is None:
            return
        members = group.batch if viewer.batch else group.stream
        try:
            members.remove(viewer)
        except ValueError:
            return
        if viewer.batch:
            self.n_batch -= 1
        else:
            self.n_stream -= 1
        if not group.batch and not group.stream:
            del self.groups[viewer.filters]


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
    """Compact JSON text; non-finite numbers become null (orjson does that; the fallback for
    what orjson refuses, e.g. integers beyond 64 bits, does it by hand)."""
    try:
        return orjson.dumps(message, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(_finite(message), separators=(",", ":"), ensure_ascii=False, default=str)


def batch_frame(payloads: Iterable[str]) -> str:
    """The ``{"type":"batch"}`` message of already serialised events."""
    return '{"type":"batch","events":[' + ",".join(payloads) + "]}"


def event_message(site_id: str, seq: int, event: TrackedEvent, scores: Mapping[str, Any],
                  sent_ms: int | None = None) -> dict[str, Any]:
    """The ``{"type": "event"}`` message: the decoded row values (scores apart) and the scores."""
    values = to_row_values(event)
    for name in scores:
        values.pop(name, None)
    return {"type": "event", "site_id": site_id, "seq": seq,
            "sent_ms": int(time.time() * 1000) if sent_ms is None else sent_ms,
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
        self.published = 0  # events fanned out (to sites with viewers): each serialised once
        self.dropped = 0  # messages dropped from full viewer queues
        self.frames_built = 0  # batch messages built (once per group and flush, not per viewer)
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
        else:
            self.flush(site)  # what was published before it attached goes to the others only
        site.viewers.append(viewer)
        site.join(viewer)
        return viewer

    def resubscribe(self, viewer: Viewer, filters: Filters, batch: bool) -> None:
        """New filters / batch mode for a connected viewer: events published until now are
        fanned out under the old ones (so none is lost or filtered twice), later ones under
        the new ones."""
        site = self.sites.get(viewer.site_id)
        if site is None or viewer not in site.viewers:
            viewer.filters, viewer.batch = filters, batch
            return
        self.flush(site)
        site.leave(viewer)
        viewer.filters, viewer.batch = filters, batch
        site.join(viewer)

    def detach(self, viewer: Viewer) -> None:
        viewer.close()
        site = self.sites.get(viewer.site_id)
        if site is None:
            return
        try:
            site.viewers.remove(viewer)
        except ValueError:
            return
        site.leave(viewer)
        if not site.viewers:  # the last viewer left: the site costs nothing again
            if site.batch_timer is not None:
                site.batch_timer.cancel()
                site.batch_timer = None
            site.pending_now, site.pending_batch = [], []
            del self.sites[viewer.site_id]

    def close_all(self) -> None:
        for site in list(self.sites.values()):
            for v in list(site.viewers):
                self.detach(v)

    # -- ingestion side --------------------------------------------------------------------------
    def watching(self, site_id: str) -> bool:
        """Whether the site has viewers now (its events are wanted)."""
        return site_id in self.sites

    def publish(self, site_id: str, event: TrackedEvent, scores: Mapping[str, Any]) -> None:
        """Hand one acknowledged event to the site's viewers; never blocks, never raises on
        a slow viewer.  For a site without viewers this is one dict lookup."""
        if site_id not in self.sites:
            return
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._enqueue, site_id, event, scores)
            return
        self._enqueue(site_id, event, scores)

    def _enqueue(self, site_id: str, event: TrackedEvent, scores: Mapping[str, Any]) -> None:
        site = self.sites.get(site_id)
        if site is None:
            return
        # seq counts every event of the site while it has viewers
        p = _Pending(next(site.seq), event, scores, int(time.time() * 1000))
        try:
            loop = self._loop or asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a synchronous caller): fan out at once
            site.pending_now.append(p)
            site.pending_batch.append(p)
            self.flush(site)
            return
        if site.n_stream:
            site.pending_now.append(p)
            if len(site.pending_now) == 1:  # first of this loop turn: one flush for them all
                loop.call_soon(self._flush_now, site)
        if site.n_batch:
            site.pending_batch.append(p)
            if site.batch_timer is None:
                if self.batch_linger_s > 0:
                    site.batch_timer = loop.call_later(self.batch_linger_s, self._flush_batch, site)
                else:
                    site.batch_timer = loop.call_soon(self._flush_batch, site)

    def flush(self, site: SiteHub) -> None:
        """Fan out everything the site has pending, now (loop thread)."""
        if site.batch_timer is not None:
            site.batch_timer.cancel()
        self._flush_now(site)
        self._flush_batch(site)

    def _flush_now(self, site: SiteHub) -> None:
        pending, site.pending_now = site.pending_now, []
        if pending and self.sites.get(site.site_id) is site:
            self._deliver(site, pending, batch=False)

    def _flush_batch(self, site: SiteHub) -> None:
        site.batch_timer = None
        pending, site.pending_batch = site.pending_batch, []
        if pending and self.sites.get(site.site_id) is site:
            self._deliver(site, pending, batch=True)

    def _deliver(self, site: SiteHub, pending: list[_Pending], batch: bool) -> None:
        """One window's events to the stream (or the batch) viewers of a site, group by group."""
        for group in list(site.groups.values()):
            viewers = group.batch if batch else group.stream
            if not viewers:
                continue
            f = group.filters
            if f.types is None and not f.min_scores:
                accepted = pending
            else:
                accepted = [p for p in pending if f.accepts(p.type, p.scores)]
            if not accepted:
                continue
            payloads = [p.payload if p.payload is not None else self._serialise(site, p) for p in accepted]
            if batch:
                for i in range(0, len(payloads), MAX_BATCH):
                    chunk = payloads[i:i + MAX_BATCH]
                    frame = batch_frame(chunk)  # built once, the same string for every viewer
                    self.frames_built += 1
                    for viewer in viewers:
                        self.dropped += viewer.offer_many(chunk, frame)
            else:
                for viewer in viewers:
                    self.dropped += viewer.offer_many(payloads)

    def _serialise(self, site: SiteHub, p: _Pending) -> str:
        p.payload = dumps(event_message(site.site_id, p.seq, p.event, p.scores, p.sent_ms))
        self.published += 1
        return p.payload


def component(ctx: Any) -> Any:
    """Factory for ``ingest_worker.app.COMPONENTS``: the hub and its two endpoints."""
    from ingest_worker.stream_routes import StreamComponent

    return StreamComponent(ctx)
