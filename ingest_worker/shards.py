"""Visitor-sharded scoring: ``clickstream serve --shards N`` scores in N processes.

One collect process is one core of Python: validating, identifying, sessionising and
scoring an event is most of its CPU (benchmarks/ingest.py).  With ``--shards N`` (N ≥ 2)
the server process keeps everything that must be one -- HTTP, the tenant, the rate limits,
the body, the event-id dedupe window, the durable log, quarantine, metrics, the live stream
and the dashboards -- and N **scoring shards** (child processes) do the per-event work for
the visitors they own:

    server: request → tenant → rate limit → body → reserve event ids, route by visitor ─┐
    shard k (k = crc32(visitor id) mod N): validate → identity → session → scores → log record
    server: ← records, rejections, last scores ── settle the ids → durable log (fsync) → answer

Routing.  An event goes to the shard of :func:`ingest_worker.identity.routing_id`: the id
:func:`~ingest_worker.identity.resolve_visitor` will give it (cookie, else SDK id, else
today's keyed hash; consent per event), computed from the raw event before validation.  A
visitor's events therefore always meet its state in one process, and the first response's
cookie carries the id the visit was routed by.  The one case routing cannot see: a cookieless
visitor whose state is under *yesterday's* keyed hash continues it only when both days' ids
fall on the same shard (otherwise a new session starts at the UTC midnight salt change).

Exactly-once, as in one process.  The dedupe window stays in the server; an event whose
``event_id`` is already reserved is sent to its shard to be *checked* only (validated, never
scored): invalid → rejected and quarantined, valid → a duplicate -- as the in-process loop
decides it.  An id that repeats inside one request, or whose reservation by a request still
in its shards is unsettled, is decided in a later round after the first one is settled, so a
valid event is never answered "duplicate" of one that was then rejected.  Events of a
later round are scored after the rest of their request: the only order that differs.

Durability is unchanged: shards hold no data, only visitor state.  The server acknowledges
after its own durable log's fsync; a shard that dies is started again (it rebuilds its
visitors' sessions from the lake) and the requests it held answer 503, acknowledging nothing.

Frames between server and shard: 4-byte length + a pickle, over a Unix socket pair; each
shard answers its frames in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson

from clickstream_lake.control.config import SiteConfig
from ingest_worker import normalize
from ingest_worker.events import RequestInfo
from ingest_worker.flusher import row_record
from ingest_worker.identity import routing_id
from ingest_worker.pipeline import Scored, ScoringStage, ScoringUnavailable
from ingest_worker.rebuild import RebuildResult

log = logging.getLogger(__name__)

MAX_SHARDS = 16
SCORE, CHECK = 0, 1  # what a shard does with an event: score it, or only validate it (a duplicate)
MAX_ROUNDS = 8  # rounds of one request (ids repeated, or held by requests being scored); then 503
_HEADER = 4


def shard_of(visitor_id: str, count: int) -> int:
    """The shard that owns ``visitor_id`` among ``count``."""
    return zlib.crc32(visitor_id.encode("utf-8", "surrogatepass")) % count


class ShardUnavailable(ScoringUnavailable):
    """A scoring shard is starting again (it died) or did not start in time."""


# --- the shard process -------------------------------------------------------------------------------
class ShardScorer:
    """What a shard does with one frame: validate (and score) each event it was given."""

    def __init__(self, secret: bytes) -> None:
        self.scoring = ScoringStage(secret=secret)

    def handle(self, frame: bytes) -> bytes:
        config, info, want_events, indices, modes, objs_json, objs = pickle.loads(frame)
        try:
            if objs is None:
                objs = orjson.loads(objs_json)
            return pickle.dumps(("ok",) + self.score(config, info, want_events, indices, modes, objs), protocol=5)
        except Exception as e:  # a bug: that request fails (500), the shard keeps serving
            log.exception("scoring shard failed on a request")
            return pickle.dumps(("error", f"{type(e).__name__}: {e}"), protocol=5)

    def score(self, config: SiteConfig, info: RequestInfo, want_events: bool, indices: list[int],
              modes: list[int], objs: list[Any]) -> tuple[Any, ...]:
        """``(records, rejections, last, events)``: the log records of the scored events;
        ``(index, Rejection)`` per invalid one; ``(index, visitor_id, session_id, consent,
        cookie_ok, scores)`` of the last scored one (None if none); ``(index, event, scores)``
        per scored event if ``want_events`` (else None).  A checked event that is valid is
        in none of them."""
        parse_event, Rejection, scoring = normalize.parse_event, normalize.Rejection, self.scoring
        records: list[bytes] = []
        rejections: list[tuple[int, normalize.Rejection]] = []
        events: list[tuple[int, Any, dict[str, float]]] | None = [] if want_events else None
        last: tuple[Any, ...] | None = None
        for index, mode, obj in zip(indices, modes, objs, strict=True):
            event = parse_event(obj, info)
            if type(event) is Rejection:
                rejections.append((index, event))
                continue
            if mode == CHECK:
                continue
            scores, cookie_ok = scoring(event, config)
            records.append(row_record(event))
            last = (index, event, scores, cookie_ok)
            if events is not None:
                events.append((index, event, scores))
        if last is not None:
            index, event, scores, cookie_ok = last
            last = (index, event.visitor_id, event.session_id, event.consent, cookie_ok, scores)
        return records, rejections, last, events


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(_HEADER, "big") + payload)


def shard_main(sock: socket.socket, index: int, count: int, secret: bytes, lake_url: str,
               log_level: int = logging.WARNING) -> None:
    """A scoring shard's life: rebuild its visitors' sessions, say ready, answer frames
    until the server closes the socket (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    logging.basicConfig(level=log_level, format=f"%(asctime)s shard {index}: %(levelname)s %(message)s")
    from clickstream_lake.lake import LakeLayout
    from ingest_worker.app import settle_heap
    from ingest_worker.rebuild import rebuild_sessions

    scorer = ShardScorer(secret)
    ready: dict[str, Any] = {"pid": os.getpid()}
    try:
        res = rebuild_sessions(LakeLayout(lake_url), scorer.scoring.scorer,
                               keep=lambda vid: shard_of(vid, count) == index)
        ready["rebuilt"] = dataclasses.asdict(res)
    except Exception as e:  # noqa: BLE001 - serve with fresh sessions rather than not at all
        log.exception("session rebuild failed: this shard's visitors start new sessions")
        ready["rebuild_error"] = f"{type(e).__name__}: {e}"
    settle_heap()
    _send_frame(sock, pickle.dumps(("ready", ready), protocol=5))
    handle = scorer.handle
    while True:
        header = _recv_exactly(sock, _HEADER)
        if header is None:
            return
        frame = _recv_exactly(sock, int.from_bytes(header, "big"))
        if frame is None:
            return
        _send_frame(sock, handle(frame))


# --- the server's side ------------------------------------------------------------------------------
class _Shard:
    """One shard process as the server sees it: a FIFO of frames awaiting their answers."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: multiprocessing.process.BaseProcess | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.ready = asyncio.Event()
        self.reader_task: asyncio.Task[None] | None = None
        self.info: dict[str, Any] = {}
        self.events = 0


class ShardPool:
    """N scoring shards, started with :meth:`start` and kept running (restarted when one
    dies) until :meth:`stop`."""

    def __init__(self, count: int, secret: bytes, lake_url: str, *, ready_timeout: float = 60.0,
                 answer_timeout: float = 30.0, before_respawn: Callable[[], Awaitable[Any]] | None = None,
                 on_restart: Callable[[], Any] | None = None) -> None:
        if not 2 <= count <= MAX_SHARDS:
            raise ValueError(f"shards must be between 2 and {MAX_SHARDS}, not {count}")
        self.count = count
        self.secret = secret
        self.lake_url = lake_url
        self.ready_timeout = ready_timeout
        self.answer_timeout = answer_timeout  # a shard that takes longer is taken for hung: killed, restarted
        # run before a dead shard starts again (the server flushes its log into the lake, so the
        # new process rebuilds its visitors from every event acknowledged so far)
        self.before_respawn = before_respawn
        self.on_restart = on_restart  # told of each restart (the worker's metrics count them)
        self.shards = [_Shard(i) for i in range(count)]
        self.restarts = 0
        self.stopping = False
        self._mp = multiprocessing.get_context("spawn")

    async def start(self) -> RebuildResult:
        """Start every shard and wait until all have rebuilt their sessions; the sum of what
        they rebuilt."""
        for shard in self.shards:
            await self._spawn(shard)
        waiters = [asyncio.ensure_future(s.ready.wait()) for s in self.shards]
        _, late = await asyncio.wait(waiters, timeout=self.ready_timeout)
        for waiter in late:
            waiter.cancel()
        for shard in self.shards:
            if not shard.ready.is_set() and shard.process is not None and shard.process.is_alive():
                log.error("scoring shard %d not ready in %.0f s: killing it", shard.index, self.ready_timeout)
                shard.process.kill()  # its socket closes: it starts again
        total = RebuildResult()
        for s in self.shards:
            r = s.info.get("rebuilt") or {}
            total.files = max(total.files, r.get("files", 0))  # every shard reads the same files
            total.rows = max(total.rows, r.get("rows", 0))
            total.visitors += r.get("visitors", 0)
            total.seconds = max(total.seconds, r.get("seconds", 0.0))
        return total

    async def _spawn(self, shard: _Shard) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        proc = self._mp.Process(target=shard_main, name=f"clickstream-shard-{shard.index}", daemon=True,
                                args=(theirs, shard.index, self.count, self.secret, self.lake_url,
                                      logging.getLogger().getEffectiveLevel()))
        await asyncio.to_thread(proc.start)
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=mine, limit=2**20)
        shard.process, shard.writer = proc, writer
        shard.reader_task = asyncio.create_task(self._read(shard, reader), name=f"shard-{shard.index}-reader")

    async def _read(self, shard: _Shard, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(_HEADER)
                frame = await reader.readexactly(int.from_bytes(header, "big"))
                if not shard.ready.is_set():
                    _, shard.info = pickle.loads(frame)
                    shard.ready.set()
                    continue
                fut = shard.waiting.popleft()
                if not fut.done():
                    fut.set_result(frame)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._lost(shard)

    def _lost(self, shard: _Shard) -> None:
        """The shard's socket closed: fail what it held; start it again unless stopping."""
        waiting, shard.waiting = shard.waiting, collections.deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(ShardUnavailable(f"scoring shard {shard.index} stopped"))
        if shard.writer is not None:
            shard.writer.close()
        if self.stopping:
            return
        code = shard.process.exitcode if shard.process is not None else None
        log.error("scoring shard %d stopped (exit code %s): starting it again", shard.index, code)
        self.restarts += 1
        if self.on_restart is not None:
            self.on_restart()
        shard.ready.clear()  # callers wait on it until the new process has rebuilt its sessions
        asyncio.get_running_loop().create_task(self._respawn(shard))

    async def _respawn(self, shard: _Shard) -> None:
        if shard.process is not None:
            await asyncio.to_thread(shard.process.join, 5)
        if self.before_respawn is not None and not self.stopping:
            try:
                await self.before_respawn()
            except Exception:  # noqa: BLE001 - start the shard anyway; it rebuilds what the lake has
                log.exception("flush before restarting scoring shard %d failed", shard.index)
        if not self.stopping:
            await self._spawn(shard)

    async def call(self, index: int, payload: bytes) -> bytes:
        """Send one frame to shard ``index``; its answer (ShardUnavailable if it dies or is
        not ready within the pool's ready timeout)."""
        shard = self.shards[index]
        if not shard.ready.is_set():
            try:
                await asyncio.wait_for(shard.ready.wait(), self.ready_timeout)
            except TimeoutError:
                raise ShardUnavailable(f"scoring shard {index} is not ready") from None
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        shard.waiting.append(fut)
        assert shard.writer is not None
        shard.writer.write(len(payload).to_bytes(_HEADER, "big"))
        shard.writer.write(payload)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.answer_timeout)
        except TimeoutError:
            proc = shard.process
            if proc is not None and proc.is_alive() and not fut.done():  # hung, or 30 s behind: either way
                log.error("scoring shard %d did not answer in %.0f s: killing it", index, self.answer_timeout)
                proc.kill()  # its socket closes: every request it holds fails, and it starts again
            raise ShardUnavailable(f"scoring shard {index} did not answer in {self.answer_timeout:.0f} s") from None

    async def stop(self, timeout: float = 5.0) -> None:
        self.stopping = True
        for shard in self.shards:
            if shard.writer is not None:
                shard.writer.close()  # EOF: the shard's loop ends
        for shard in self.shards:
            proc = shard.process
            if proc is None:
                continue
            await asyncio.to_thread(proc.join, timeout)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join, timeout)
            if shard.reader_task is not None:
                shard.reader_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shard.reader_task

    def ready_count(self) -> int:
        return sum(s.ready.is_set() for s in self.shards)

    def health(self) -> dict[str, Any]:
        return {"count": self.count, "ready": self.ready_count(),
                "restarts": self.restarts,
                "pids": [s.process.pid if s.process is not None else None for s in self.shards],
                "events": [s.events for s in self.shards]}


class ShardedScoring:
    """The pipeline's "each event" stage when the events are scored in shards."""

    def __init__(self, pool: ShardPool, wants_events: Callable[[str], bool] | None = None) -> None:
        self.pool = pool
        self.wants_events = wants_events or (lambda site_id: False)
        # id keys reserved by a round still in its shards → that round's future
        self.unsettled: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def score(self, pipeline: Any, site: SiteConfig, req: Any, parsed: list[Any], info: RequestInfo) -> Scored:
        """What :meth:`Pipeline.score_here` does, with the events scored in their visitors'
        shards (see the module doc for the rounds).  Raises ShardUnavailable (or
        RuntimeError for a shard's bug) with every id this request reserved released."""
        out = Scored()
        want = self.wants_events(site.site_id)
        dedupe = pipeline.dedupe
        rejections: dict[int, normalize.Rejection] = {}
        last: tuple[Any, ...] | None = None
        events: list[tuple[int, Any, dict[str, float]]] = []
        try:
            todo = list(enumerate(parsed))
            rounds = 0
            while todo:
                rounds += 1
                todo, round_last = await self._round(dedupe, site, info, want, out, todo, rejections, events,
                                                     last_round=rounds >= MAX_ROUNDS)
                if round_last is not None and (last is None or round_last[0] > last[0]):
                    last = round_last
        except BaseException:
            for key in out.reserved:  # nothing of this request is acknowledged
                dedupe.discard(key)
            raise
        for index in sorted(rejections):
            pipeline.refuse(out, site, req, parsed, index, rejections[index])
        if last is not None:
            _, visitor_id, session_id, consent, out.cookie_ok, scores = last
            out.last = (ScoredRef(visitor_id, session_id, consent), scores)
        if want:
            events.sort(key=lambda item: item[0])
            out.accepted = [(event, scores) for _, event, scores in events]
        return out

    async def _round(self, dedupe: Any, site: SiteConfig, info: RequestInfo, want: bool, out: Scored,
                     todo: list[tuple[int, Any]], rejections: dict[int, normalize.Rejection],
                     events: list[tuple[int, Any, dict[str, float]]], *,
                     last_round: bool) -> tuple[list[tuple[int, Any]], tuple[Any, ...] | None]:
        """Send each event of ``todo`` to its shard -- the first of each id to be scored
        when the id is free, the rest only checked -- and file the answers in ``out``; the
        events left for the next round (valid ones whose id was let go by the event that held
        it) and the last scored event of this round."""
        pool, count, secret, site_id = self.pool, self.pool.count, self.pool.secret, site.site_id
        groups: list[tuple[list[int], list[int], list[Any]]] = [([], [], []) for _ in range(count)]
        scoring_keys: dict[int, tuple[str, str]] = {}  # index → id key this round reserved
        checking_keys: dict[int, tuple[str, str]] = {}  # index → id key held elsewhere
        routes: dict[tuple[bool, Any], int] = {}
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        unsettled = self.unsettled
        for index, obj in todo:
            mode = SCORE
            if type(obj) is dict:
                eid = obj.get("event_id")
                if type(eid) is str and eid and normalize.event_id_problem(eid) is None:
                    key = (site_id, eid)
                    if dedupe.reserve(key):
                        scoring_keys[index] = key
                        unsettled[key] = settled
                    else:  # held: by an earlier event (of this request too) -- only checked
                        mode = CHECK
                        checking_keys[index] = key
                # the route depends on the request and these two fields only: once per visitor
                raw_vid = obj.get("visitor_id")
                if type(raw_vid) is str or raw_vid is None:
                    route = (obj.get("consent") is True, raw_vid)
                    shard = routes.get(route)
                    if shard is None:
                        shard = routes[route] = shard_of(routing_id(obj, info, site, secret), count)
                else:  # not a string: invalid, any shard rejects it
                    shard = 0
            else:
                shard = 0  # not an object: any shard rejects it
            indices, modes, objs = groups[shard]
            indices.append(index)
            modes.append(mode)
            objs.append(obj)
        sent = [(k, group) for k, group in enumerate(groups) if group[0]]
        try:
            frames = await asyncio.gather(*(pool.call(k, _request_frame(site, info, want, group))
                                            for k, group in sent))
            answers = [pickle.loads(frame) for frame in frames]
            failed = [a[1] for a in answers if a[0] != "ok"]
            if failed:
                raise RuntimeError(f"scoring shard failed: {failed[0]}")
        except BaseException:
            self._settle(settled, scoring_keys, dedupe, kept=())
            raise
        last: tuple[Any, ...] | None = None
        rejected_now: set[int] = set()
        for (k, group), (_, records, shard_rejections, shard_last, shard_events) in zip(sent, answers, strict=True):
            pool.shards[k].events += len(group[0])
            out.records.extend(records)
            for index, rejection in shard_rejections:
                rejections[index] = rejection
                rejected_now.add(index)
            if shard_last is not None and (last is None or shard_last[0] > last[0]):
                last = shard_last
            if shard_events:
                events.extend(shard_events)
        kept = [key for index, key in scoring_keys.items() if index not in rejected_now]
        out.reserved.extend(kept)
        self._settle(settled, scoring_keys, dedupe, kept=kept)
        # a valid event whose id was held is a duplicate once the holder keeps the id; when the
        # holder (another request still in its shards) let it go, it is scored next round
        later: list[tuple[int, Any]] = []
        objs_by_index = dict(todo) if checking_keys else {}
        for index, key in checking_keys.items():
            if index in rejected_now:
                continue
            holder = unsettled.get(key)
            if holder is not None and not holder.done():
                await asyncio.shield(holder)
            if key in dedupe:
                out.duplicates += 1
            elif last_round:
                raise ShardUnavailable(f"event id {key[1]!r} is contended by concurrent requests; retry")
            else:
                later.append((index, objs_by_index[index]))
        later.sort(key=lambda item: item[0])
        return later, last

    def _settle(self, settled: asyncio.Future[None], scoring_keys: dict[int, tuple[str, str]], dedupe: Any,
                *, kept: Any) -> None:
        """The round is decided: the ids it reserved and did not keep are free again; waiters
        on any of them go on."""
        kept = set(kept)
        unsettled = self.unsettled
        for key in scoring_keys.values():
            if key not in kept:
                dedupe.discard(key)
            if unsettled.get(key) is settled:
                del unsettled[key]
        settled.set_result(None)


def _request_frame(site: SiteConfig, info: RequestInfo, want_events: bool,
                   group: tuple[list[int], list[int], list[Any]]) -> bytes:
    """A shard's frame: the events as JSON by orjson (half the cost of pickling dicts), or
    pickled when orjson refuses them (a lone surrogate, an integer beyond 64 bits)."""
    indices, modes, objs = group
    try:
        text = orjson.dumps(objs)
    except orjson.JSONEncodeError:
        text = None
    if text is not None and b"null" in text and _non_finite(objs):  # orjson writes inf as null
        text = None
    if text is not None:
        return pickle.dumps((site, info, want_events, indices, modes, text, None), protocol=5)
    return pickle.dumps((site, info, want_events, indices, modes, None, objs), protocol=5)


def _non_finite(objs: list[Any]) -> bool:
    """Whether a float in ``objs`` is an infinity or NaN (a JSON number beyond float64
    parses as inf: it must reach the shard as inf, to be refused as one process refuses it)."""
    stack: list[Any] = [objs]
    while stack:
        item = stack.pop()
        for v in (item.values() if isinstance(item, dict) else item):
            if type(v) is float:
                if v - v != 0.0:
                    return True
            elif isinstance(v, (dict, list)):
                stack.append(v)
    return False


class ScoredRef(NamedTuple):
    """What the answer needs of an event scored in a shard (the event itself stays there
    unless the live stream watches its site)."""

    visitor_id: str
    session_id: str
    consent: bool | None


def shards_from_env(default: int = 1) -> int:
    """``CLICKSTREAM_SHARDS`` (what ``clickstream serve --shards`` sets): 1 scores in the
    server process."""
    raw = os.environ.get("CLICKSTREAM_SHARDS", "")
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"CLICKSTREAM_SHARDS must be a whole number, not {raw!r}") from None
    if not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"CLICKSTREAM_SHARDS must be between 1 and {MAX_SHARDS}, not {n}")
    return n

