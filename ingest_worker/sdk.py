"""``GET /sdk.js``: the browser tracker, served by the worker like a CDN would serve it.

The source (``ingest_worker/static/sdk.js``, readable, no build step) is minified once with
``rjsmin`` (comments and whitespace only, no renaming) when the component starts.  The
site's privacy settings (``consent_required``, ``respect_dnt``) are written into the script
for the tracking hostname it is requested on, so the SDK honours them before its first
request.  Each distinct settings variant (at most four) is built once, with its gzip and
brotli bodies compressed once, and kept.

Responses carry ``Cache-Control: public, max-age=3600, stale-while-revalidate=86400`` (the
source article's one hour at the edge plus stale-while-revalidate), a strong ``ETag`` per
representation (identity, gzip and br bodies differ, so their tags differ), ``Vary:
Accept-Encoding``, and ``If-None-Match`` revalidation answers ``304``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import brotli
import rjsmin
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clickstream_lake.context import AppContext

CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400"
CONTENT_TYPE = "text/javascript; charset=utf-8"
SITE_TOKEN = '{_:"@site"}'  # the placeholder in sdk.js that receives the site's settings
SITE_KEYS = ("consent_required", "respect_dnt")  # the settings the browser needs to know


def read_source() -> str:
    return resources.files("ingest_worker").joinpath("static/sdk.js").read_text(encoding="utf-8")


def source_version(source: str) -> str:
    m = re.search(r'const VERSION = "([^"]+)"', source)
    if not m:
        raise ValueError("sdk.js declares no VERSION")
    return m.group(1)


def minify(source: str) -> str:
    """Comments and whitespace out (the licence ``/*! */`` comment stays); names untouched."""
    return rjsmin.jsmin(source, keep_bang_comments=True).strip() + "\n"


def parse_accept_encoding(header: str | None) -> dict[str, float]:
    """``{"gzip": 1.0, "br": 0.5, "*": 0.1}`` from an Accept-Encoding header; bad items skipped."""
    out: dict[str, float] = {}
    for item in (header or "").split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            k, _, v = param.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            out["gzip" if coding == "x-gzip" else coding] = q
    return out


def choose_encoding(header: str | None) -> str | None:
    """``"br"``, ``"gzip"`` or ``None`` (identity): the highest q wins, brotli on a tie."""
    accepted = parse_accept_encoding(header)
    star = accepted.get("*", 0.0)
    best, best_q = None, 0.0
    for coding in ("br", "gzip"):
        q = accepted.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    return best


def parse_if_none_match(header: str | None) -> set[str] | None:
    """The entity tags listed (weak prefixes dropped: If-None-Match compares weakly), ``None`` if absent."""
    if header is None:
        return None
    tags = set()
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            tags.add(tag)
    return tags


@dataclass(frozen=True)
class Representation:
    body: bytes
    encoding: str | None
    etag: str


@dataclass(frozen=True)
class SdkBuild:
    """One settings variant of the SDK in every encoding."""

    version: str
    settings: tuple[tuple[str, Any], ...]
    representations: dict[str | None, Representation]

    @property
    def etags(self) -> set[str]:
        return {r.etag for r in self.representations.values()}

    def pick(self, accept_encoding: str | None) -> Representation:
        return self.representations[choose_encoding(accept_encoding)]


def build(template: str, version: str, settings: dict[str, Any]) -> SdkBuild:
    doc = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    body = template.replace(SITE_TOKEN, doc, 1).encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()[:24]
    reps = {
        None: Representation(body, None, f'"{version}-{digest}"'),
        "gzip": Representation(gzip.compress(body, compresslevel=9, mtime=0), "gzip", f'"{version}-{digest}-gz"'),
        "br": Representation(brotli.compress(body, mode=brotli.MODE_TEXT, quality=11), "br", f'"{version}-{digest}-br"'),
    }
    return SdkBuild(version, tuple(sorted(settings.items())), reps)


class SdkAsset:
    """The minified SDK template and its built variants, each built once."""

    def __init__(self, source: str | None = None):
        source = read_source() if source is None else source
        self.version = source_version(source)
        self.template = minify(source)
        if self.template.count(SITE_TOKEN) != 1:
            raise ValueError(f"sdk.js must contain the settings placeholder {SITE_TOKEN} exactly once")
        self._builds: dict[tuple[tuple[str, Any], ...], SdkBuild] = {}
        self._lock = threading.Lock()

    def get(self, settings: dict[str, Any] | None = None) -> SdkBuild:
        key = tuple(sorted((settings or {}).items()))
        hit = self._builds.get(key)
        if hit is None:
            with self._lock:
                hit = self._builds.get(key)
                if hit is None:
                    hit = self._builds[key] = build(self.template, self.version, dict(key))
        return hit


class SdkComponent:
    def __init__(self, ctx: AppContext, asset: SdkAsset | None = None):
        self.ctx = ctx
        self.asset = asset or SdkAsset()
        self.asset.get()  # build the default variant now: a broken sdk.js fails at start, not per request
        self.requests = Counter(
            "clickstream_sdk_requests", "SDK script responses", ["status", "encoding"], registry=ctx.registry
        )
        self.routes = [
            Route("/sdk.js", self.latest, methods=["GET"]),
            Route("/sdk/{version}/sdk.js", self.versioned, methods=["GET"]),
        ]

    def settings_for(self, host: str | None) -> dict[str, Any]:
        """The browser-relevant settings of the site that owns this tracking hostname (only the true ones)."""
        site_id = self.ctx.config.site_for_host(host or "")
        cfg = self.ctx.config.config(site_id) if site_id else None
        if cfg is None:
            return {}
        return {k: True for k in SITE_KEYS if getattr(cfg, k)}

    async def latest(self, request: Request) -> Response:
        return self._serve(request)

    async def versioned(self, request: Request) -> Response:
        version = request.path_params["version"]
        if version != self.asset.version:
            self.requests.labels(status="404", encoding="").inc()
            return JSONResponse(
                {"error": f"no SDK version {version!r}", "available": [self.asset.version]}, status_code=404
            )
        return self._serve(request)

    def _serve(self, request: Request) -> Response:
        sdk = self.asset.get(self.settings_for(request.headers.get("host")))
        rep = sdk.pick(request.headers.get("accept-encoding"))
        headers = {
            "Cache-Control": CACHE_CONTROL,
            "ETag": rep.etag,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            # a public script: pages may load it with crossorigin/integrity and under COEP
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        client_tags = parse_if_none_match(request.headers.get("if-none-match"))
        if client_tags is not None:
            matched = "*" in client_tags or rep.etag in client_tags
            if not matched:
                other = client_tags & sdk.etags  # same script, cached in another encoding
                if other:
                    headers["ETag"] = sorted(other)[0]
                    matched = True
            if matched:
                self.requests.labels(status="304", encoding=rep.encoding or "identity").inc()
                return Response(status_code=304, headers=headers)
        if rep.encoding:
            headers["Content-Encoding"] = rep.encoding
        self.requests.labels(status="200", encoding=rep.encoding or "identity").inc()
        return Response(rep.body, status_code=200, headers=headers, media_type=CONTENT_TYPE)

    def health(self) -> dict[str, Any]:
        return {"sdk": {"ok": True, "version": self.asset.version}}


def component(ctx: AppContext) -> SdkComponent:
    return SdkComponent(ctx)
