"""The collect component: tracking routes, the durable log, the flusher and compaction.

Routes (tenant = the Host header):

* ``POST /v1/collect`` -- one event or ``{"events": [...]}`` (≤ 500, body ≤ 1 MB);
* ``GET /v1/collect.gif?…`` -- the pixel: the same fields in the query string;
* ``OPTIONS /v1/collect`` -- CORS preflight, allowed for the site's registered domain and
  its subdomains.

Background work started with the server: the durable log's group-commit writer, the
flusher (log → Parquet every ``CLICKSTREAM_FLUSH_INTERVAL`` seconds, default 0.5) after a
replay of what the log held at start, and the compaction of closed partitions.

``subscribers`` is the live stream hub's hook: callables ``(site_id, event, scores)``
called after an event is acknowledged.  With no subscriber the cost is one ``if``.
``watchers`` (``site_id → bool``) tell whether anyone watches a site: with scoring shards
(``clickstream serve --shards N``, :mod:`ingest_worker.shards`) a shard sends the scored
events back only for a watched site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clickstream_lake.compaction import (
    CompactionUnsupported,
    clean_staging,
    closed_partitions,
    compact_partition,
)
from clickstream_lake.context import AppContext
from ingest_worker import pipeline as pl
from ingest_worker.durable_log import DurableLog, read_segment
from ingest_worker.flusher import (
    ROW_KINDS,
    Flusher,
    FlushResult,
    columnar_reader,
    recent_event_ids,
    record_key,
)
from ingest_worker.metrics import WorkerMetrics
from ingest_worker.rebuild import RebuildResult, rebuild_sessions
from ingest_worker.shards import ShardedScoring, ShardPool, shards_from_env

log = logging.getLogger(__name__)

PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
    b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


class _JSONAnswer(JSONResponse):
    """The JSON answer rendered with orjson (several times faster than ``json.dumps``)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class CollectComponent:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.metrics = WorkerMetrics(ctx.registry)
        self.log = DurableLog(ctx.data.log, fsync=os.environ.get("CLICKSTREAM_LOG_FSYNC", "1") != "0",
                              observe_group=self.metrics.log_group_seconds.observe,
                              inline_bytes=int(_env_float("CLICKSTREAM_LOG_INLINE_BYTES", 8192)))
        self.flusher = Flusher(self.log, ctx.lake, interval=_env_float("CLICKSTREAM_FLUSH_INTERVAL", 0.5),
                               on_flush=self._flushed, processes=True)
        self.compact_interval = _env_float("CLICKSTREAM_COMPACT_INTERVAL", 300.0)
        self.subscribers: list[pl.Subscriber] = []
        self.watchers: list[Callable[[str], bool]] = []
        self.shard_count = shards_from_env()
        self.shard_pool: ShardPool | None = None
        self.pipeline: pl.Pipeline | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._groups_counted = 0
        # session state is rebuilt from the lake in the background; collect requests wait for it
        self.sessions_ready = asyncio.Event()
        self.rebuild_wait_s = _env_float("CLICKSTREAM_REBUILD_WAIT", 30.0)
        self.rebuilt: RebuildResult | None = None
        self._rebuilder: asyncio.Task[None] | None = None
        self.routes = [
            Route("/v1/collect", self.post_collect, methods=["POST"]),
            Route("/v1/collect", self.preflight, methods=["OPTIONS"]),
            Route("/v1/collect.gif", self.pixel, methods=["GET"]),
            Route("/v1/collect.gif", self.preflight, methods=["OPTIONS"]),
        ]
        ctx.components["collect"] = self

    # -- lifecycle ---------------------------------------------------------------------------------
    async def startup(self) -> None:
        leftovers = self.log.open()
        dedupe = pl.DedupeWindow()
        # retries of events acknowledged before the restart: in the log, or recently flushed
        for key in await asyncio.to_thread(recent_event_ids, self.ctx.lake):
            dedupe.add(key)
        for key in _acknowledged_ids(leftovers):
            dedupe.add(key)
        res = await asyncio.to_thread(self.flusher.replay, leftovers)
        if leftovers:
            log.warning("replayed %d log segment(s): %d events, %d quarantined, %d duplicates skipped",
                        res.segments, res.events, res.quarantined, res.duplicates)
        secret = _identity_secret(self.ctx)
        scoring, sharded = None, None
        if self.shard_count > 1:  # the shards score; this process keeps no visitor state
            from ingest_worker.scoring import resolve_secret

            self.shard_pool = ShardPool(self.shard_count, resolve_secret(secret), self.ctx.lake.root,
                                        ready_timeout=max(self.rebuild_wait_s, 60.0),
                                        answer_timeout=_env_float("CLICKSTREAM_SHARD_TIMEOUT", 30.0),
                                        before_respawn=self.flusher.flush_now,
                                        on_restart=self.metrics.shard_restarts.inc)
            self.metrics.shards_ready.set_function(self.shard_pool.ready_count)
            sharded = ShardedScoring(self.shard_pool, self._watched)
        else:
            scoring = pl.ScoringStage(secret=secret)
        self.pipeline = pl.Pipeline(self.ctx.config, self.log, self.metrics, scoring=scoring,
                                    dedupe=dedupe, shards=sharded)
        await self.log.start()
        await self.flusher.start()
        self._rebuilder = asyncio.create_task(self._rebuild_sessions(scoring), name="session-rebuild")
        if self.compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_loop(), name="compactor")

    async def _rebuild_sessions(self, scoring: pl.ScoringStage | None) -> None:
        """Sessions and scores continue across a restart: replay the lake's last 25 h (the log's
        leftovers are already in it) into the session store, off the event loop.  Collect
        requests wait for this (``CLICKSTREAM_REBUILD_WAIT``, then 503 + Retry-After)."""
        try:
            if self.shard_pool is not None:  # each shard rebuilds its own visitors
                self.rebuilt = await self.shard_pool.start()
            elif scoring is not None:
                self.rebuilt = await asyncio.to_thread(rebuild_sessions, self.ctx.lake, scoring.scorer)
            log.info("sessions rebuilt: %d visitors from %d rows in %d files (%.2f s)", self.rebuilt.visitors,
                     self.rebuilt.rows, self.rebuilt.files, self.rebuilt.seconds)
        except Exception:  # noqa: BLE001 - serve with fresh sessions rather than not at all
            log.exception("session rebuild failed: visitors start new sessions")
        finally:
            self.sessions_ready.set()

    async def shutdown(self) -> None:
        if self._rebuilder is not None and not self._rebuilder.done():
            self._rebuilder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuilder
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        if self.shard_pool is not None:
            await self.shard_pool.stop()
        await self.flusher.stop()
        await self.log.close()

    def health(self) -> dict[str, Any]:
        ok = not self.flusher.last_error
        return {"collect": {"ok": ok, "sessions_ready": self.sessions_ready.is_set(),
                            "log_pending_bytes": self.log.pending_bytes,
                            "log_failures": self.log.stats.failures, "flush_error": self.flusher.last_error,
                            "flush_reader": _flush_reader(),
                            **({"shards": self.shard_pool.health()} if self.shard_pool is not None else {})}}

    def _watched(self, site_id: str) -> bool:
        return any(watching(site_id) for watching in self.watchers)

    # -- routes ------------------------------------------------------------------------------------
    async def post_collect(self, request: Request) -> Response:
        t0 = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > pl.MAX_BODY_BYTES:
            return self._respond(request, pl.Answer.error(413, "body_too_large",
                                                          f"body over {pl.MAX_BODY_BYTES} bytes"), t0, "post")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > pl.MAX_BODY_BYTES:
                return self._respond(request, pl.Answer.error(413, "body_too_large",
                                                              f"body over {pl.MAX_BODY_BYTES} bytes"), t0, "post")
        answer = await self._run(request, body=bytes(body))
        return self._respond(request, answer, t0, "post")

    async def pixel(self, request: Request) -> Response:
        t0 = time.perf_counter()
        answer = await self._run(request, query=dict(request.query_params), query_text=request.url.query)
        if answer.status == 200:
            resp: Response = Response(PIXEL_GIF, media_type="image/gif",
                                      headers={"Cache-Control": "no-store", **answer.headers})
            return self._finish(request, resp, answer, t0, "pixel")
        return self._respond(request, answer, t0, "pixel")

    async def preflight(self, request: Request) -> Response:
        origin = request.headers.get("origin", "")
        site = self.pipeline.tenant(request.headers.get("host", "")) if self.pipeline else None
        if site is None:
            return JSONResponse({"error": "no site is registered for this host", "reason": "unknown_host"},
                                status_code=404)
        if not _origin_allowed(origin, site.domain):
            return JSONResponse({"error": f"origin {origin!r} is not the site's domain", "reason": "cors_origin"},
                                status_code=403)
        return Response(status_code=204, headers={
            **_cors_headers(origin),
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("access-control-request-headers", "Content-Type"),
            "Access-Control-Max-Age": "86400",
        })

    async def _run(self, request: Request, *, body: bytes = b"", query: dict[str, str] | None = None,
                   query_text: str = "") -> pl.Answer:
        assert self.pipeline is not None
        if not self.sessions_ready.is_set():
            try:
                await asyncio.wait_for(self.sessions_ready.wait(), self.rebuild_wait_s)
            except TimeoutError:
                answer = pl.Answer.error(503, "starting", "the worker is restoring sessions; retry shortly")
                answer.headers["Retry-After"] = "5"
                return answer
        req = pl.IncomingRequest(
            host=request.headers.get("host", ""), headers=request.headers,
            client_ip=request.client.host if request.client else "", received_ms=pl.now_ms(),
            body=body, content_type=request.headers.get("content-type", ""), query=query, query_text=query_text,
        )
        try:
            answer = await self.pipeline.collect(req)
        except Exception:  # a bug must not look like the client's fault, nor kill the worker
            log.exception("collect failed")
            return pl.Answer.error(500, "internal_error", "internal error; the event was not acknowledged")
        if answer.accepted and self.subscribers:
            site_id = answer.accepted[0][0].site_id
            for event, scores in answer.accepted:
                for subscriber in self.subscribers:
                    try:
                        subscriber(site_id, event, scores)
                    except Exception:  # noqa: BLE001 - a subscriber never fails a request
                        log.exception("stream subscriber failed")
        return answer

    def _respond(self, request: Request, answer: pl.Answer, t0: float, route: str) -> Response:
        resp = _JSONAnswer(answer.body, status_code=answer.status, headers=answer.headers)
        return self._finish(request, resp, answer, t0, route)

    def _finish(self, request: Request, resp: Response, answer: pl.Answer, t0: float, route: str) -> Response:
        origin = request.headers.get("origin")
        if origin and answer.status != 404 and self.pipeline is not None:
            site = self.pipeline.tenant(request.headers.get("host", ""))
            if site is not None and _origin_allowed(origin, site.domain):
                resp.headers.update(_cors_headers(origin))
        if answer.visitor_cookie is not None:
            visitor_id, max_age = answer.visitor_cookie
            site = self.pipeline.tenant(request.headers.get("host", "")) if self.pipeline else None
            domain = _cookie_domain(request.headers.get("host", ""), site.domain if site else "")
            resp.set_cookie(pl.COOKIE_NAME, visitor_id, max_age=max_age, path="/", domain=domain,
                            secure=True, httponly=True, samesite="lax")
        served_s = time.perf_counter() - t0
        # the time spent inside the worker, for the page (devtools, PerformanceServerTiming) and
        # for load generators that split their latency into the worker's share and the rest
        timing = f"collect;dur={served_s * 1000:.3f}"
        if answer.log_wait_s is not None:  # of which waiting for the durable log (write + fsync)
            timing += f", log;dur={answer.log_wait_s * 1000:.3f}"
        resp.headers["Server-Timing"] = timing
        self.metrics.child(self.metrics.request_latency, route).observe(served_s)
        self.metrics.log_pending_bytes.set(self.log.pending_bytes)
        return resp

    # -- background ----------------------------------------------------------------------------------
    def _flushed(self, res: FlushResult) -> None:
        self.metrics.flush_seconds.observe(res.seconds)
        self.metrics.flushed_rows.labels("events").inc(res.events)
        self.metrics.flushed_rows.labels("quarantine").inc(res.quarantined)
        self.metrics.flush_compiled_rows.inc(res.compiled_rows)
        groups = self.log.stats.groups
        self.metrics.log_fsyncs.inc(groups - self._groups_counted)
        self._groups_counted = groups
        self.metrics.log_unflushed_segments.set(self.flusher.unflushed_segments)

    async def _compact_loop(self) -> None:
        lake = self.ctx.lake
        if not lake.is_local:
            return
        await asyncio.to_thread(clean_staging, lake, 3600.0)
        while True:
            await asyncio.sleep(self.compact_interval)
            try:
                for site_id, day in await asyncio.to_thread(closed_partitions, lake):
                    res = await asyncio.to_thread(compact_partition, lake, site_id, day)
                    self.metrics.compaction_seconds.observe(res.seconds)
                    self.metrics.compacted_files.inc(max(0, res.files_before - res.files_after))
            except CompactionUnsupported as e:
                log.warning("compaction disabled: %s", e)
                return
            except Exception:  # noqa: BLE001 - retried next round
                log.exception("compaction failed")


def _acknowledged_ids(segments: list[Any]) -> list[tuple[str, str]]:
    """(site, event id) of every event record the log segments hold (retries of these are
    answered as duplicates after a restart)."""
    out = []
    for seg in segments:
        for payload in read_segment(seg):
            try:
                rec = orjson.loads(payload)
                if rec[0] in ROW_KINDS:
                    site, _, eid = record_key(rec)
                    if eid:
                        out.append((site, eid))
            except (ValueError, IndexError, TypeError, KeyError, OverflowError):
                continue
    return out


def _identity_secret(ctx: AppContext) -> bytes | None:
    """The key of cookieless visitor ids: ``CLICKSTREAM_ID_SECRET``, else a random secret
    kept in ``<data>/id_secret`` (created once, mode 0600) so ids survive restarts."""
    if os.environ.get("CLICKSTREAM_ID_SECRET"):
        return None  # the Scorer reads the environment itself
    path = ctx.data.path / "id_secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip() or None
    import secrets

    value = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(value)
        f.flush()
        os.fsync(f.fileno())
    return value


def _flush_reader() -> str:
    """How the flush reads the log's rows: "compiled", or "orjson (why)"."""
    reader, why = columnar_reader()
    return "compiled" if reader is not None else f"orjson ({why})"


def _origin_allowed(origin: str, domain: str) -> bool:
    if not origin or not domain:
        return False
    try:
        host = (urlsplit(origin).hostname or "").lower().rstrip(".")
    except ValueError:  # e.g. "http://[::1": not an origin of the site
        return False
    domain = domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin",
            "Timing-Allow-Origin": origin}  # lets the site's page read Server-Timing


def _cookie_domain(host: str, domain: str) -> str | None:
    """The site's registrable domain when the tracking host is under it (first-party CNAME)."""
    h = host.split(":", 1)[0].lower().rstrip(".")
    d = domain.lower().rstrip(".")
    if d and (h == d or h.endswith("." + d)):
        return d
    return None


def component(ctx: AppContext) -> CollectComponent:
    return CollectComponent(ctx)
