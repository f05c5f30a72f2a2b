"""The stream endpoints: ``GET /v1/stream`` (WebSocket) and ``GET /v1/stream.sse`` (SSE).

Authentication: an API key (read, write or admin) in ``Authorization: Bearer <key>`` or
``?token=<key>`` selects the site; so does a short-lived stream token (``cst_…``, see
:mod:`clickstream_lake.control.stream_tokens`) that the dashboards issue to their viewers.  A missing, unknown or revoked key is refused *before*
the WebSocket is accepted, with an HTTP 401 JSON answer (403 when ``?site=`` names another
site than the key's); a key revoked while connected closes the socket with code 4401
within about one heartbeat interval (plus the config cache's TTL).

Each connection is one :class:`~ingest_worker.stream.Viewer` of the site's hub, and one
sender loop that drains the viewer's queue onto the socket: publishing never waits for it.
Heartbeats: an idle connection gets a ``{"type": "heartbeat"}`` message (WebSocket) or a
``: heartbeat`` comment (SSE) every ``CLICKSTREAM_STREAM_HEARTBEAT_S`` seconds (default 15);
dead WebSocket peers are found by uvicorn's protocol-level ping/pong
(``clickstream serve --ws-ping-interval/--ws-ping-timeout``), dead SSE peers by the failing
heartbeat write or the server's disconnect notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from clickstream_lake.control.stream_tokens import (
    StreamClaims,
    StreamTokenError,
    StreamTokens,
    is_stream_token,
    issuer_active,
)
from ingest_worker.stream import (
    DEFAULT_BATCH_LINGER_MS,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_QUEUE_SIZE,
    MAX_BATCH,
    FilterError,
    Filters,
    StreamHub,
    Viewer,
    dumps,
)

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401  # key revoked while connected (or refused, for servers without denial responses)
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number", name, raw)
        return default
    return value if value > 0 else default


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Grant:
    site_id: str
    secret: str
    claims: StreamClaims | None = None  # set when a stream token (not an API key) opened it


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    reason: str
    error: str


def bearer_token(conn: HTTPConnection) -> str:
    auth = conn.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.query_params.get("token", "").strip()


class StreamComponent:
    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.hub = StreamHub(
            queue_size=int(_env_number("CLICKSTREAM_STREAM_QUEUE", DEFAULT_QUEUE_SIZE)),
            heartbeat_s=_env_number("CLICKSTREAM_STREAM_HEARTBEAT_S", DEFAULT_HEARTBEAT_S),
            batch_linger_s=_env_number("CLICKSTREAM_STREAM_BATCH_LINGER_MS", DEFAULT_BATCH_LINGER_MS) / 1000,
        )
        self.ingest_attached = False
        self.tokens = StreamTokens.for_data(ctx.data)  # the dashboards issue them, we verify them
        ctx.components["stream"] = self
        ctx.registry.register(_HubCollector(self.hub))
        self.routes = [
            WebSocketRoute("/v1/stream", self.websocket),
            Route("/v1/stream.sse", self.sse, methods=["GET"]),
        ]

    # -- lifecycle -------------------------------------------------------------------------------
    async def startup(self) -> None:
        self.hub.bind_loop()
        collect = self.ctx.components.get("collect")
        subscribers = getattr(collect, "subscribers", None)
        if isinstance(subscribers, list):
            subscribers.append(self.hub.publish)
            watchers = getattr(collect, "watchers", None)
            if isinstance(watchers, list):
                watchers.append(self.hub.watching)
            self.ingest_attached = True
        else:
            log.warning("live stream: no collect component with `subscribers`; nothing will be published")

    async def shutdown(self) -> None:
        collect = self.ctx.components.get("collect")
        subscribers = getattr(collect, "subscribers", None)
        if isinstance(subscribers, list) and self.hub.publish in subscribers:
            subscribers.remove(self.hub.publish)
        watchers = getattr(collect, "watchers", None)
        if isinstance(watchers, list) and self.hub.watching in watchers:
            watchers.remove(self.hub.watching)
        self.hub.close_all()

    def health(self) -> dict[str, Any]:
        return {"stream": {"ok": True, "ingest_attached": self.ingest_attached, **self.hub.stats()}}

    # -- authentication --------------------------------------------------------------------------
    async def authenticate(self, conn: HTTPConnection) -> Grant | Denial:
        secret = bearer_token(conn)
        if not secret:
            return Denial(401, "missing_key", "an API key is required: Authorization: Bearer <key> or ?token=<key>")
        if is_stream_token(secret):
            try:
                claims = self.tokens.verify(secret)
            except StreamTokenError as e:
                return Denial(401, e.reason, str(e))
            if not await run_in_threadpool(issuer_active, self.ctx.db, claims):
                return Denial(401, "invalid_token", "the key that issued this stream token was revoked")
            grant = Grant(claims.site_id, secret, claims)
        else:
            key = await run_in_threadpool(self.ctx.config.api_key, secret)
            if key is None:
                return Denial(401, "invalid_key", "unknown or revoked API key")
            grant = Grant(key.site_id, secret)
        wanted = conn.query_params.get("site")
        if wanted and wanted != grant.site_id:
            return Denial(403, "wrong_site", f"this key does not give access to site {wanted!r}")
        return grant

    async def still_authorised(self, grant: Grant) -> bool:
        if grant.claims is not None:
            # a token opens a stream until it expires; the open stream lives while its issuer does
            return await run_in_threadpool(issuer_active, self.ctx.db, grant.claims)
        key = await run_in_threadpool(self.ctx.config.api_key, grant.secret)
        return key is not None and key.site_id == grant.site_id

    def connection_options(self, conn: HTTPConnection) -> tuple[bool, int]:
        """``?batch=1`` and ``?queue=N`` (a smaller queue than the server's, e.g. a tile
        showing the last 20 events)."""
        batch = conn.query_params.get("batch", "").lower() in ("1", "true", "yes")
        raw = conn.query_params.get("queue")
        queue_size = self.hub.queue_size
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= self.hub.queue_size:
                raise FilterError(f"queue must be an integer from 1 to {self.hub.queue_size}, got {raw!r}")
            queue_size = int(raw)
        return batch, queue_size

    def hello(self, viewer: Viewer, transport: str) -> dict[str, Any]:
        return {"type": "hello", "site_id": viewer.site_id, "transport": transport,
                "queue_size": viewer.queue.maxlen, "heartbeat_s": self.hub.heartbeat_s,
                "filters": viewer.filters.as_dict(), "batch": viewer.batch, "ts": _now_ms()}

    # -- WebSocket -------------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        auth = await self.authenticate(ws)
        if isinstance(auth, Denial):
            await self._deny(ws, auth)
            return
        try:
            filters = Filters.from_query(ws.query_params)
        except FilterError as e:
            await self._deny(ws, Denial(400, "bad_filter", str(e)))
            return
        try:
            batch, queue_size = self.connection_options(ws)
        except FilterError as e:
            await self._deny(ws, Denial(400, "bad_option", str(e)))
            return
        await ws.accept()
        viewer = self.hub.attach(auth.site_id, filters, batch=batch, queue_size=queue_size)
        viewer.notify(self.hello(viewer, "websocket"))
        sender = asyncio.create_task(self._ws_send_loop(ws, viewer, auth), name="stream-ws-send")
        receiver = asyncio.create_task(self._ws_receive_loop(ws, viewer), name="stream-ws-receive")
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hub.detach(viewer)
            for t in (sender, receiver):
                t.cancel()
            for t in (sender, receiver):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _deny(self, ws: WebSocket, denial: Denial) -> None:
        body = {"error": denial.error, "reason": denial.reason}
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(JSONResponse(body, status_code=denial.status))
        else:  # servers without the denial extension: accept, explain, close with 44xx
            await ws.accept()
            await ws.send_text(dumps({"type": "error", **body}))
            await ws.close(code=4000 + denial.status, reason=denial.reason)

    async def _ws_receive_loop(self, ws: WebSocket, viewer: Viewer) -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", "replace")
            try:
                filters, batch = Filters.from_subscribe(json.loads(text or ""))
            except json.JSONDecodeError:
                viewer.notify({"type": "error", "reason": "bad_json", "error": "messages must be JSON"})
                continue
            except FilterError as e:
                viewer.notify({"type": "error", "reason": "bad_filter", "error": str(e)})
                continue
            self.hub.resubscribe(viewer, filters, batch)
            viewer.notify({"type": "subscribed", "filters": filters.as_dict(), "batch": batch})

    async def _ws_send_loop(self, ws: WebSocket, viewer: Viewer, grant: Grant) -> None:
        heartbeat = self.hub.heartbeat_s
        checked = time.monotonic()
        try:
            while not viewer.closed:
                # the hub wakes us once per window (its flush), with the window's events queued
                if not await viewer.wait(heartbeat):
                    await ws.send_text(dumps({"type": "heartbeat", "ts": _now_ms()}))
                if time.monotonic() - checked >= heartbeat:
                    checked = time.monotonic()
                    if not await self.still_authorised(grant):
                        await ws.send_text(dumps({"type": "error", "reason": "invalid_key",
                                                  "error": "the API key was revoked"}))
                        await ws.close(code=CLOSE_UNAUTHORIZED, reason="key revoked")
                        return
                for message in drain(viewer, 1):
                    await ws.send_text(message)
        except (WebSocketDisconnect, OSError, RuntimeError):
            return  # the peer went away while we were writing

    # -- Server-Sent Events ----------------------------------------------------------------------
    async def sse(self, request: Request) -> Response:
        auth = await self.authenticate(request)
        if isinstance(auth, Denial):
            return JSONResponse({"error": auth.error, "reason": auth.reason}, status_code=auth.status)
        try:
            filters = Filters.from_query(request.query_params)
        except FilterError as e:
            return JSONResponse({"error": str(e), "reason": "bad_filter"}, status_code=400)
        try:
            batch, queue_size = self.connection_options(request)
        except FilterError as e:
            return JSONResponse({"error": str(e), "reason": "bad_option"}, status_code=400)
        return SSEResponse(self, auth, filters, batch, queue_size)


def drain(viewer: Viewer, limit: int) -> list[str]:
    """The messages to write now: control notices, a missed notice if events were dropped
    since the last one, then at most ``limit`` events (as one batch message if the viewer
    asked for batches: the group's shared frame when it is all that is queued).  Taking few
    at a time keeps the rest in the bounded queue while a slow peer blocks the writer, so
    that it is the oldest that get dropped."""
    out = []
    while viewer.control:
        out.append(viewer.control.popleft())
    missed = viewer.take_missed()
    if missed:
        out.append(dumps({"type": "missed", "count": missed}))
    if viewer.batch:
        frame = viewer.take_batch()
        if frame is not None:
            out.append(frame)
    else:
        out.extend(viewer.take(limit))
    return out


class _HubCollector:
    """Prometheus figures read from the hub at scrape time (nothing counted per event)."""

    def __init__(self, hub: StreamHub):
        self.hub = hub

    def collect(self):
        stats = self.hub.stats()
        yield GaugeMetricFamily("clickstream_stream_sites", "Sites with live stream viewers (hubs alive)",
                                value=stats["sites"])
        yield GaugeMetricFamily("clickstream_stream_viewers", "Connected live stream viewers",
                                value=stats["viewers"])
        yield CounterMetricFamily("clickstream_stream_events", "Events fanned out to live viewers",
                                  value=stats["published"])
        yield CounterMetricFamily("clickstream_stream_dropped", "Events dropped from full viewer queues",
                                  value=stats["dropped"])


class SSEResponse:
    """A ``text/event-stream`` response bound to one viewer.  Every message is a default
    (``message``) event whose data is the same JSON as on the WebSocket; heartbeats are
    comments.  It watches the request's receive channel so a closed connection detaches
    the viewer at once, not at the next write."""

    def __init__(self, component: StreamComponent, grant: Grant, filters: Filters, batch: bool, queue_size: int):
        self.component = component
        self.grant = grant
        self.filters = filters
        self.batch = batch
        self.queue_size = queue_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        comp = self.component
        hub = comp.hub
        viewer = hub.attach(self.grant.site_id, self.filters, batch=self.batch, queue_size=self.queue_size)
        viewer.notify(comp.hello(viewer, "sse"))

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        watcher = asyncio.create_task(watch_disconnect(), name="stream-sse-disconnect")
        watcher.add_done_callback(lambda _t: viewer.close())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ]})
            await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
            checked = time.monotonic()
            while not viewer.closed:
                if not await viewer.wait(hub.heartbeat_s):
                    chunk = f": heartbeat {_now_ms()}\n\n"
                else:
                    chunk = "".join(f"data: {m}\n\n" for m in drain(viewer, MAX_BATCH))
                if time.monotonic() - checked >= hub.heartbeat_s:
                    checked = time.monotonic()
                    if not await comp.still_authorised(self.grant):
                        err = dumps({"type": "error", "reason": "invalid_key", "error": "the API key was revoked"})
                        chunk += f"data: {err}\n\n"
                        viewer.close()
                if chunk:
                    await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            if not watcher.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        except asyncio.CancelledError:
            # an SSE response never ends by itself: at shutdown uvicorn cancels it after
            # `serve --graceful-timeout`; end the stream properly (clients reconnect)
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            hub.detach(viewer)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
