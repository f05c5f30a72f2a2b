"""``/dashboards/``: the marimo dashboards inside ``clickstream serve``, behind the auth guard.

``component(ctx)`` (listed in ``ingest_worker.app.COMPONENTS``) builds marimo's ASGI app for
``notebooks/dashboard.py`` (run mode: code hidden, one kernel per viewer, kernels are
threads of this process) and mounts it at ``/dashboards`` wrapped in
:class:`~clickstream_lake.dashboards.auth.DashboardAuth`.  The viewer's key decides the site;
the notebook reads it from ``mo.app_meta().request.meta``.  The server's query service is
registered for the notebooks, so every viewer and the SQL API share one result cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from clickstream_lake.context import AppContext
from clickstream_lake.dashboards.auth import STREAM_TOKEN_PATH, DashboardAuth
from clickstream_lake.dashboards.source import query_service, register_service
from clickstream_lake.resources import NOTEBOOKS_DIR

log = logging.getLogger(__name__)

MOUNT_PATH = "/dashboards"
DASHBOARD_NOTEBOOK = NOTEBOOKS_DIR / "dashboard.py"
STREAM_SSE_PATH = "/v1/stream.sse"


def _build_marimo_app() -> Any:
    import marimo  # ~3 s of imports: done once, off the event loop

    return (
        marimo.create_asgi_app(quiet=True, include_code=False)
        .with_app(path="", root=str(DASHBOARD_NOTEBOOK))
        .build()
    )


class LazyMarimoApp:
    """The marimo ASGI app, built in a background thread when the server starts.

    Importing marimo and building the app takes seconds; doing it in the component's
    constructor held up every ``clickstream serve`` start (and ``/healthz``).  Requests that
    arrive before the build is done wait for it without blocking the event loop.
    """

    def __init__(self) -> None:
        self._future: concurrent.futures.Future | None = None
        self._lock = threading.Lock()

    def start(self) -> concurrent.futures.Future:
        with self._lock:
            if self._future is None:
                self._future = concurrent.futures.Future()
                fut = self._future

                def build() -> None:
                    try:
                        fut.set_result(_build_marimo_app())
                    except BaseException as e:  # noqa: BLE001 - reported to every waiting request
                        fut.set_exception(e)

                threading.Thread(target=build, name="marimo-build", daemon=True).start()
            return self._future

    @property
    def ready(self) -> bool:
        return self._future is not None and self._future.done() and self._future.exception() is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = await asyncio.wrap_future(self.start())
        await app(scope, receive, send)


class DashboardsComponent:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        service = ctx.components.get("query")
        if service is not None:
            register_service(ctx.data, service)
        else:  # no SQL API in this server: the dashboards still get one shared service
            service = query_service(ctx.data)
            ctx.components["query"] = service
        self.marimo_app = LazyMarimoApp()
        meta = {"data": str(ctx.data.path)}
        stream = ctx.components.get("stream")  # listed before us in COMPONENTS
        self.stream_tokens = getattr(stream, "tokens", None)
        if self.stream_tokens is not None:
            # the live-feed tile fetches a token here (cookie-authenticated) and opens the SSE stream
            meta["stream_url"] = STREAM_SSE_PATH
            meta["stream_token_url"] = MOUNT_PATH + STREAM_TOKEN_PATH
        self.app = DashboardAuth(self.marimo_app, ctx.config.api_key, mount_path=MOUNT_PATH, meta=meta,
                                 stream_token=self._stream_token if self.stream_tokens is not None else None)
        self.routes = [Mount(MOUNT_PATH, app=self.app)]

    def _stream_token(self, viewer) -> dict:
        """A short-lived, read-only token for the viewer's own site's live stream."""
        token, expires_ms = self.stream_tokens.issue(viewer.site_id, viewer.key_prefix)
        return {"token": token, "site_id": viewer.site_id, "expires_ms": expires_ms,
                "stream_url": STREAM_SSE_PATH}

    async def startup(self) -> None:
        self.marimo_app.start()

    def health(self) -> dict:
        return {"dashboards": {"ok": DASHBOARD_NOTEBOOK.exists(), "notebook": DASHBOARD_NOTEBOOK.name,
                               "ready": self.marimo_app.ready}}


def component(ctx: AppContext) -> DashboardsComponent:
    return DashboardsComponent(ctx)
