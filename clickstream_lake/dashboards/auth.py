"""The dashboards' door: plain ASGI middleware over BOTH the HTTP routes and the websocket.

A viewer proves who they are with a site API key (any permission: read is enough), given
one of three ways:

* ``?token=<key>`` in the URL — checked, put into an HttpOnly cookie, and the viewer is
  redirected to the same URL without the key (so it does not stay in the address bar);
* the login form (``POST <mount>/login``, field ``key``) shown to a browser without a key;
* ``Authorization: Bearer <key>`` (scripts) or the cookie set by one of the above.

Every request is checked again (keys go through the config cache, so a revoked key stops
working within its TTL).  An unauthenticated HTTP request gets 401 (a login page for a
browser, JSON for anything else); an unauthenticated websocket is closed before it is
accepted, which the server turns into an HTTP 403 — the kernel is never reached.

This is deliberately *not* Starlette's ``BaseHTTPMiddleware``: that one only sees HTTP, and
the marimo kernel talks over a websocket.

``GET <mount>/stream-token`` (authenticated like everything else, so by the cookie from a
page) answers a short-lived stream token for the viewer's own site — how the live-feed
tile's script, which cannot read the HttpOnly cookie, opens ``/v1/stream.sse``.

On success the viewer's site goes into ``scope["state"]["clickstream_site"]`` and
``scope["user"]``/``scope["meta"]`` (what marimo exposes to the notebook as
``mo.app_meta().request``), so the notebook shows that site and no other.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE_NAME = "clickstream_dash"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
STREAM_TOKEN_PATH = "/stream-token"
MAX_FORM_BYTES = 8_192

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


class Viewer:
    """Who is looking: the key's site (and its prefix, for logs)."""

    __slots__ = ("site_id", "key_prefix", "permissions")

    def __init__(self, site_id: str, key_prefix: str, permissions: str):
        self.site_id = site_id
        self.key_prefix = key_prefix
        self.permissions = permissions

    # starlette's scope["user"] protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.site_id


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        out[k.decode("latin-1").lower()] = v.decode("latin-1")
    return out


def _cookie(headers: dict[str, str], name: str) -> str:
    raw = headers.get("cookie", "")
    if not raw:
        return ""
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 - a malformed cookie header is just "no cookie"
        return ""
    m = jar.get(name)
    return m.value if m else ""


class DashboardAuth:
    """ASGI middleware: authenticate every http and websocket scope with a site API key."""

    def __init__(self, app: ASGIApp, resolve_key: Callable[[str], Any], *, mount_path: str = "/dashboards",
                 secure_cookie: bool = False, meta: dict[str, str] | None = None,
                 stream_token: Callable[[Viewer], dict[str, Any]] | None = None):
        """``resolve_key(secret)`` returns the active key record (``.site_id``,
        ``.key_prefix``, ``.permissions``) or None (e.g. ``ctx.config.api_key``).
        ``stream_token(viewer)`` returns the JSON answer of ``<mount>/stream-token``
        (None: the server has no live stream, the route answers 404)."""
        self.app = app
        self.resolve_key = resolve_key
        self.mount_path = "/" + mount_path.strip("/")
        self.secure_cookie = secure_cookie
        self.meta = dict(meta or {})  # added to every authenticated scope's meta (e.g. the data dir)
        self.stream_token = stream_token

    # -- helpers -------------------------------------------------------------------------------
    def _viewer(self, secret: str) -> Viewer | None:
        if not secret or len(secret) > 512:
            return None
        try:
            rec = self.resolve_key(secret)
        except Exception:  # noqa: BLE001 - a broken lookup must refuse, not crash
            return None
        if rec is None:
            return None
        return Viewer(rec.site_id, rec.key_prefix, str(getattr(rec.permissions, "value", rec.permissions)))

    def _local_path(self, scope: Scope) -> str:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        return path or "/"

    def _cookie_header(self, secret: str, *, max_age: int | None = None) -> tuple[bytes, bytes]:
        parts = [f"{COOKIE_NAME}={secret}", f"Path={self.mount_path}", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure_cookie:
            parts.append("Secure")
        return (b"set-cookie", "; ".join(parts).encode("latin-1"))

    # -- ASGI ------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive, send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        headers = _headers(scope)
        query = dict(parse_qsl((scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True))
        local = self._local_path(scope)

        if kind == "http" and local == LOGIN_PATH:
            await self._login(scope, receive, send, headers)
            return
        if kind == "http" and local == LOGOUT_PATH:
            await self._redirect(send, self.mount_path + "/", [self._cookie_header("", max_age=0)])
            return

        url_token = query.get("token", "")
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        secret = url_token or bearer or _cookie(headers, COOKIE_NAME)
        viewer = self._viewer(secret)
        if viewer is None:
            if kind == "websocket":
                # closing before accept = the handshake is refused with HTTP 403
                await send({"type": "websocket.close", "code": 4401, "reason": "unauthorized"})
                return
            await self._unauthorized(send, headers, bad_key=bool(secret))
            return

        if kind == "http" and url_token and scope.get("method") in ("GET", "HEAD"):
            # keep the key out of the address bar: cookie + redirect to the same URL without it
            rest = [(k, v) for k, v in parse_qsl((scope.get("query_string") or b"").decode("latin-1"),
                                                  keep_blank_values=True) if k != "token"]
            target = scope.get("root_path", "") + local
            if rest:
                target += "?" + urlencode(rest)
            await self._redirect(send, target, [self._cookie_header(secret)])
            return

        if kind == "http" and local == STREAM_TOKEN_PATH:
            if self.stream_token is None:
                await self._json(send, 404, {"error": "this server has no live stream"})
            elif scope.get("method") not in ("GET", "HEAD"):
                await self._json(send, 405, {"error": "use GET"})
            else:
                await self._json(send, 200, self.stream_token(viewer), no_store=True)
            return

        scope = dict(scope)
        scope["user"] = viewer
        state = dict(scope.get("state") or {})
        state["clickstream_site"] = viewer.site_id
        scope["state"] = state
        meta = dict(scope.get("meta") or {})
        meta.update(self.meta)
        meta["site_id"] = viewer.site_id
        scope["meta"] = meta
        await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive, send, headers: dict[str, str]) -> None:
        if scope.get("method") == "GET":
            await self._html(send, 200, _login_page("", self.mount_path + LOGIN_PATH))
            return
        if scope.get("method") != "POST":
            await self._json(send, 405, {"error": "use GET or POST on the login form"})
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > MAX_FORM_BYTES:
                await self._json(send, 413, {"error": "login form too large"})
                return
        ctype = headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                secret = str(json.loads(body or b"{}").get("key", ""))
            except (ValueError, AttributeError):
                await self._json(send, 400, {"error": "body must be a JSON object with a 'key'"})
                return
        else:
            secret = dict(parse_qsl(body.decode("utf-8", "replace"))).get("key", "")
        viewer = self._viewer(secret.strip())
        if viewer is None:
            await self._html(send, 401, _login_page("That key is unknown or revoked.", self.mount_path + LOGIN_PATH))
            return
        await self._redirect(send, self.mount_path + "/", [self._cookie_header(secret.strip())])

    async def _unauthorized(self, send, headers: dict[str, str], *, bad_key: bool) -> None:
        reason = "invalid or revoked API key" if bad_key else "an API key is required"
        if "text/html" in headers.get("accept", ""):
            msg = "That key is unknown or revoked." if bad_key else ""
            await self._html(send, 401, _login_page(msg, self.mount_path + LOGIN_PATH))
        else:
            await self._json(send, 401, {"error": reason,
                                         "hint": f"add ?token=<key>, log in at {self.mount_path}{LOGIN_PATH}, "
                                                 "or send Authorization: Bearer <key>"})

    async def _redirect(self, send, location: str, extra: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0"),
                                (b"cache-control", b"no-store"), *extra]})
        await send({"type": "http.response.body", "body": b""})

    async def _json(self, send, status: int, payload: dict, *, no_store: bool = False) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if no_store:
            headers.append((b"cache-control", b"no-store"))
        else:
            headers.append((b"www-authenticate", b'Bearer realm="dashboards"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _html(self, send, status: int, page: str) -> None:
        body = page.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})


def _login_page(message: str, action: str) -> str:
    note = f'<p class="err">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clickstream-lake dashboards — sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f7f9; display: grid; place-items: center; height: 100vh; margin: 0; }}
form {{ background: white; padding: 2rem 2.5rem; border-radius: 10px; box-shadow: 0 2px 12px #0001; min-width: 22rem; }}
h1 {{ font-size: 1.2rem; margin-top: 0; }} input {{ width: 100%; padding: .5rem; margin: .5rem 0 1rem; box-sizing: border-box; }}
button {{ padding: .5rem 1.2rem; }} .err {{ color: #b00020; }}
</style></head>
<body><form id="login" method="post" action="{html.escape(action)}">
<h1>clickstream-lake dashboards</h1>{note}
<label for="key">Site API key</label>
<input id="key" name="key" type="password" autocomplete="off" placeholder="csk_…" required>
<button type="submit">Open the dashboard</button>
</form></body></html>"""
