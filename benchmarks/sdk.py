"""Serving /sdk.js: precompressed bodies vs compressing on every request.

In process (straight through the ASGI app, no network), over a fresh data directory with one site:

* ``precompressed br`` / ``precompressed gzip`` -- the SDK component as served by ``clickstream serve``;
* ``304 revalidation`` -- ``If-None-Match`` with the current tag;
* baselines in the same run: the same script behind Starlette's ``GZipMiddleware`` (gzip on every
  request, what a generic compression layer does), and brotli (quality 11) on every request.

Prints a table; ``--json`` prints one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import brotli
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clickstream_lake.context import AppContext  # noqa: E402
from clickstream_lake.control import sites as sites_mod  # noqa: E402
from clickstream_lake.control.db import ControlDB  # noqa: E402
from clickstream_lake.settings import DataDir  # noqa: E402
from ingest_worker.app import build_app  # noqa: E402
from ingest_worker.sdk import SdkAsset  # noqa: E402

HOST = "t.bench.example"


async def _call(app, headers: dict[str, str]) -> tuple[int, int]:
    """One GET /sdk.js straight through the ASGI app: (status, bytes of body as sent)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/sdk.js", "raw_path": b"/sdk.js", "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": HOST, **headers}.items()],
        "client": ("127.0.0.1", 1), "server": (HOST, 80),
    }
    status, size = 0, 0

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))

    await app(scope, receive, send)
    return status, size


def _rate(app, headers: dict[str, str], seconds: float) -> tuple[float, int]:
    """Requests per second over ``seconds`` and the body size of the last answer."""

    async def loop() -> tuple[float, int]:
        n, size = 0, 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            _, size = await _call(app, headers)
            n += 1
        return n / (time.perf_counter() - t0), size

    return asyncio.run(loop())


def baseline_apps(body: bytes) -> tuple[Starlette, Starlette]:
    async def identity(request: Request) -> Response:
        return Response(body, media_type="text/javascript")

    async def brotli_each(request: Request) -> Response:
        data = brotli.compress(body, mode=brotli.MODE_TEXT, quality=11)
        return Response(data, media_type="text/javascript", headers={"Content-Encoding": "br"})

    gz = Starlette(routes=[Route("/sdk.js", identity)], middleware=[Middleware(GZipMiddleware, minimum_size=500,
                                                                              compresslevel=9)])
    br = Starlette(routes=[Route("/sdk.js", brotli_each)])
    return gz, br


def run(seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = DataDir.resolve(Path(tmp) / "data").ensure()
        db = ControlDB(data.control_db)
        db.migrate()
        sites_mod.add_site(db, "bench", domain="bench.example", hostnames=[HOST], plan="enterprise")
        db.close()
        ctx = AppContext.open(str(data.path))
        app = build_app(ctx, components=["ingest_worker.sdk:component"])
        body = SdkAsset().get().representations[None].body
        gz_app, br_app = baseline_apps(body)
        ours = app
        etag = app.state.components[0].asset.get().representations["br"].etag
        figures: dict[str, float] = {}
        rows = [
            ("precompressed br", ours, {"Accept-Encoding": "br"}),
            ("precompressed gzip", ours, {"Accept-Encoding": "gzip"}),
            ("304 revalidation", ours, {"Accept-Encoding": "br", "If-None-Match": etag}),
            ("baseline: GZipMiddleware per request", gz_app, {"Accept-Encoding": "gzip"}),
            ("baseline: brotli q11 per request", br_app, {"Accept-Encoding": "br"}),
        ]
        table = []
        for name, client, headers in rows:
            rps, size = _rate(client, headers, seconds)
            table.append((name, rps, size))
        ctx.db.close()
    figures = {name: {"requests_per_s": round(rps, 1), "body_bytes": size} for name, rps, size in table}
    ours_br = table[0][1]
    return {
        "rows": figures,
        "ratio_precompressed_br_vs_brotli_per_request": round(ours_br / table[4][1], 1),
        "ratio_precompressed_gzip_vs_gzip_middleware": round(table[1][1] / table[3][1], 1),
        "seconds_per_row": seconds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per row")
    args = ap.parse_args()
    res = run(args.seconds)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{'/sdk.js serving':40} {'req/s':>10} {'body bytes':>11}")
    for name, fig in res["rows"].items():
        print(f"{name:40} {fig['requests_per_s']:>10.1f} {fig['body_bytes']:>11}")
    print(f"precompressed br is {res['ratio_precompressed_br_vs_brotli_per_request']}x brotli per request; "
          f"precompressed gzip is {res['ratio_precompressed_gzip_vs_gzip_middleware']}x GZipMiddleware")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
