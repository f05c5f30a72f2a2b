"""The ASGI application behind ``clickstream serve``.

It is assembled from *components*: small modules that each own a set of routes and,
optionally, background work started and stopped with the server (the durable log's
flusher, the exporter's schedule, the live stream hub...).  A component is any object with
``routes`` (a list of Starlette routes) and optional async ``startup()``/``shutdown()``.
``COMPONENTS`` lists their factories in mount order; each factory takes the shared
:class:`~clickstream_lake.context.AppContext`.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Callable
from importlib import import_module
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from clickstream_lake.context import AppContext

# "module:factory" strings, imported lazily so a component's dependencies load only here.
COMPONENTS: list[str] = [
    "ingest_worker.collect:component",
    "clickstream_lake.api.sql:component",
    "clickstream_lake.export.schedule:component",
    "ingest_worker.stream:component",
    "ingest_worker.sdk:component",
    "clickstream_lake.dashboards.mount:component",
]


YOUNG_GC_THRESHOLD = (20_000, 20, 20)


def settle_heap() -> None:
    """Move everything alive after start-up (imported modules, the app, caches) out of the
    garbage collector's reach: a full collection would otherwise walk ~125k start-up objects
    and stall every request for tens of milliseconds -- the tail of collect's latency.  And
    collect the young generation every 20,000 allocations instead of 700: a collect request
    allocates a few dozen short-lived containers per event, so the default thresholds ran a
    young collection every dozen events (5-8 % of the collect process's CPU on the ingest
    benchmark; one such pass over 20,000 survivors costs < 1 ms).
    ``CLICKSTREAM_GC_FREEZE=0`` turns both off."""
    if os.environ.get("CLICKSTREAM_GC_FREEZE", "1") == "0":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*YOUNG_GC_THRESHOLD)


def _load(spec: str) -> Callable[[AppContext], Any]:
    module, _, attr = spec.partition(":")
    return getattr(import_module(module), attr)


def build_app(ctx: AppContext, components: list[str] | None = None) -> Starlette:
    parts = [_load(spec)(ctx) for spec in (COMPONENTS if components is None else components)]

    async def healthz(request: Request) -> JSONResponse:
        checks = {}
        for p in parts:
            health = getattr(p, "health", None)
            if health is not None:
                checks.update(health())
        ok = all(v.get("ok", True) for v in checks.values() if isinstance(v, dict))
        return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    for p in parts:
        routes.extend(getattr(p, "routes", []))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started = []
        try:
            for p in parts:
                start = getattr(p, "startup", None)
                if start is not None:
                    await start()
                started.append(p)
            settle_heap()
            yield
        finally:
            for p in reversed(started):
                stop = getattr(p, "shutdown", None)
                if stop is not None:
                    await stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.components = parts
    return app
