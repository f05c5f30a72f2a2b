"""``/dashboards/``: the marimo dashboards inside ``clickstream serve``, behind the auth guard.

``component(ctx)`` (listed in ``ingest_worker.app.COMPONENTS``) builds marimo's ASGI app for
``notebooks/dashboard.py`` (run mode: code hidden, one kernel per viewer, kernels are
threads of this process) and mounts it at ``/dashboards`` wrapped in
:class:`~clickstream_lake.dashboards.auth.DashboardAuth`.  The viewer's key decides the site;
the notebook reads it from ``mo.app_meta().request.meta``.  The server's query service is
registered for the notebooks, so every viewer and the SQL API share one result cache.
"""

from __future__ import annotations

import logging

from starlette.routing import Mount

from clickstream_lake.context import AppContext
from clickstream_lake.dashboards.auth import STREAM_TOKEN_PATH, DashboardAuth
from clickstream_lake.dashboards.source import query_service, register_service
from clickstream_lake.resources import NOTEBOOKS_DIR

log = logging.getLogger(__name__)

MOUNT_PATH = "/dashboards"
DASHBOARD_NOTEBOOK = NOTEBOOKS_DIR / "dashboard.py"
STREAM_SSE_PATH = "/v1/stream.sse"


class DashboardsComponent:
    def __init__(self, ctx: AppContext):
        import marimo

        self.ctx = ctx
        service = ctx.components.get("query")
        if service is not None:
            register_service(ctx.data, service)
        else:  # no SQL API in this server: the dashboards still get one shared service
            service = query_service(ctx.data)
            ctx.components["query"] = service
        self.marimo_app = (
            marimo.create_asgi_app(quiet=True, include_code=False)
            .with_app(path="", root=str(DASHBOARD_NOTEBOOK))
            .build()
        )
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

    def health(self) -> dict:
        return {"dashboards": {"ok": DASHBOARD_NOTEBOOK.exists(), "notebook": DASHBOARD_NOTEBOOK.name}}


def component(ctx: AppContext) -> DashboardsComponent:
    return DashboardsComponent(ctx)
