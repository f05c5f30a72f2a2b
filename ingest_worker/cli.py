"""``clickstream serve``: run the worker, SQL API, stream and dashboards on one port."""

from __future__ import annotations

import typer

from clickstream_lake.cli.common import DataOption, console, fail


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8787, "--port"),
    config_ttl: float = typer.Option(60.0, "--config-ttl", help="Seconds site config is cached (KV TTL)."),
    log_level: str = typer.Option("warning", "--log-level"),
    ws_ping_interval: float = typer.Option(20.0, "--ws-ping-interval",
                                           help="Seconds between WebSocket pings (live stream dead-peer detection)."),
    ws_ping_timeout: float = typer.Option(20.0, "--ws-ping-timeout",
                                          help="Seconds to wait for a pong before closing a WebSocket."),
    graceful_timeout: float = typer.Option(5.0, "--graceful-timeout",
                                           help="Seconds open requests (live SSE streams) get at shutdown."),
    shards: int = typer.Option(
        1, "--shards", min=1, max=16,
        help="Processes that score events, each owning a hash share of the visitors (ingest_worker.shards); "
             "1 scores in the server process. Also CLICKSTREAM_SHARDS."),
    data: str | None = DataOption,
) -> None:
    """Serve collect, SQL, stream, dashboards, /healthz and /metrics."""
    import os

    import uvicorn

    from ingest_worker.shards import shards_from_env

    if shards != 1:
        os.environ["CLICKSTREAM_SHARDS"] = str(shards)
    try:
        shards_from_env()
    except ValueError as e:  # a CLICKSTREAM_SHARDS that is not a number of shards
        fail(str(e))

    from clickstream_lake.context import AppContext
    from ingest_worker.app import build_app

    try:
        ctx = AppContext.open(data, config_ttl=config_ttl)
    except FileNotFoundError as e:
        fail(str(e))
    app = build_app(ctx)
    console.print(f"clickstream-lake serving {ctx.data.path} on http://{host}:{port}", style="bold")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
                ws_ping_interval=ws_ping_interval, ws_ping_timeout=ws_ping_timeout,
                timeout_graceful_shutdown=graceful_timeout)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
