"""``POST /v1/sql`` and ``PUT /v1/tables/{name}``: the SQL API component.

``POST /v1/sql``: ``Authorization: Bearer <key>`` (read permission) selects the site; the
body is the SQL; an optional trailing ``FORMAT JSON|JSONEachRow|TabSeparated`` or
``?format=csv|parquet|arrow`` picks the output.  Answers carry ``X-Cache: HIT|MISS`` and
``Age``.  Errors are JSON ``{"error", "rule"[, "line", "column"]}``: 400 syntax or query
error, 401 no/unknown key, 403 a guard rule, 422 time or memory limit — never a 5xx for
the user's SQL.

``PUT /v1/tables/{name}``: (write permission) body is a CSV or Parquet file; it becomes
the site's table ``name`` (``lake/tables/site_id=<id>/<name>.parquet``) for JOINs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clickstream_lake.context import AppContext
from clickstream_lake.control.keys import ApiKey, Permission
from clickstream_lake.query import formats
from clickstream_lake.query.lake import Lake
from clickstream_lake.query.runner import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, QueryError, QueryService
from clickstream_lake.query.tables import TableUploadError, upload_table

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 256 * 1024
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def _error(status: int, message: str, rule: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "rule": rule, **extra}, status_code=status)


class SqlComponent:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.lake = Lake(ctx.lake, tmp_dir=str(ctx.data.tmp))
        self.service = QueryService(
            self.lake, registry=ctx.registry, ttl_for=self._ttl,
            timeout_s=float(os.environ.get("CLICKSTREAM_QUERY_TIMEOUT_S", DEFAULT_TIMEOUT_S)),
            max_rows=int(os.environ.get("CLICKSTREAM_QUERY_MAX_ROWS", DEFAULT_MAX_ROWS)))
        ctx.components["query"] = self.service
        self.routes = [
            Route("/v1/sql", self.sql, methods=["POST"]),
            Route("/v1/tables/{name}", self.put_table, methods=["PUT"]),
        ]

    def _ttl(self, site_id: str) -> float:
        cfg = self.ctx.config.config(site_id)
        return cfg.cache_ttl_s if cfg is not None else 30.0

    def _key(self, request: Request, needed: Permission) -> ApiKey | JSONResponse:
        auth = request.headers.get("authorization", "")
        scheme, _, secret = auth.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return _error(401, "missing API key: send Authorization: Bearer <key>", "auth")
        key = self.ctx.config.api_key(secret.strip())
        if key is None:
            return _error(401, "unknown or revoked API key", "auth")
        if not key.permissions.allows(needed):
            return _error(403, f"this key has {key.permissions} permission; {needed} is needed", "permission")
        return key

    async def sql(self, request: Request) -> Response:
        key = self._key(request, Permission.READ)
        if isinstance(key, JSONResponse):
            return key
        body = await request.body()
        if len(body) > MAX_SQL_BYTES:
            return _error(413, f"query larger than {MAX_SQL_BYTES} bytes", "size")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the query must be UTF-8 text", "syntax")
        try:
            text, fmt = formats.split_format(text)
            qfmt = request.query_params.get("format")
            if qfmt:
                fmt = formats.normalise_format(qfmt)
        except formats.FormatError as e:
            return _error(400, str(e), "format")
        fmt = fmt or "JSON"
        try:
            result = await run_in_threadpool(self.service.run_query, key.site_id, text)
        except QueryError as e:
            return JSONResponse(e.as_json(), status_code=e.status)
        except Exception as e:  # noqa: BLE001 - a user's query must never produce a 5xx
            log.exception("query failed")
            return _error(400, f"query failed: {type(e).__name__}: {str(e)[:300]}", "query")
        extra = {"statistics": {"elapsed": round(result.elapsed_s, 6)}}
        if result.truncated:
            extra["truncated"] = True
        try:
            payload = await run_in_threadpool(formats.render, result.table, fmt, **extra)
        except Exception as e:  # noqa: BLE001
            return _error(400, f"cannot write the result as {fmt}: {e}", "format")
        headers = {
            "X-Cache": "HIT" if result.cached else "MISS",
            "Age": str(int(result.age_s)),
            "Cache-Control": f"private, max-age={int(self._ttl(key.site_id))}",
        }
        if result.truncated:
            headers["X-Truncated"] = f"rows capped at {self.service.max_rows}"
        return Response(payload, media_type=formats.content_type(fmt), headers=headers)

    async def put_table(self, request: Request) -> Response:
        key = self._key(request, Permission.WRITE)
        if isinstance(key, JSONResponse):
            return key
        name = request.path_params["name"]
        body = await request.body()
        if len(body) > MAX_UPLOAD_BYTES:
            return _error(413, f"upload larger than {MAX_UPLOAD_BYTES} bytes", "size")
        try:
            info = await run_in_threadpool(
                upload_table, self.lake.layout, key.site_id, name, body, request.headers.get("content-type", ""))
        except TableUploadError as e:
            return _error(400, str(e), "upload")
        self.service.invalidate(key.site_id)
        return JSONResponse(info, status_code=201)


def component(ctx: AppContext) -> SqlComponent:
    return SqlComponent(ctx)
