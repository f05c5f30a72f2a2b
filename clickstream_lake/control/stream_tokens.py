"""Short-lived, read-only, site-scoped tokens for the live stream (``/v1/stream*``).

A dashboard viewer's API key lives in an HttpOnly cookie the page's scripts cannot read,
so the dashboard's live-feed tile asks ``GET /dashboards/stream-token`` (authenticated by
that cookie) for one of these and opens the stream with it.  A token:

* names one site and is signed with HMAC-SHA256 under a server secret: it cannot be
  re-targeted to another site or forged without the secret;
* expires after ``ttl_s`` (default 120 s): it is good for *opening* a stream; an open
  stream lives on while the key that issued it stays active (the stream re-checks the
  issuing key every heartbeat, as it does for API keys);
* is accepted by the stream endpoints only: it reads nothing else (no SQL, no collect).

Format: ``cst_<base64url("v1|<site>|<expiry ms>|<issuing key prefix>")>.<base64url(hmac)>``.

The secret is ``CLICKSTREAM_STREAM_SECRET`` if set, else a random 32-byte secret kept in
``<data dir>/stream_token.secret`` (created mode 0600 on first use), so every process
serving the same data directory agrees on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir

TOKEN_PREFIX = "cst_"
ENV_SECRET = "CLICKSTREAM_STREAM_SECRET"
ENV_TTL = "CLICKSTREAM_STREAM_TOKEN_TTL_S"
SECRET_FILE = "stream_token.secret"
DEFAULT_TTL_S = 120.0
_VERSION = "v1"


class StreamTokenError(ValueError):
    """A token that must be refused; ``reason`` is the stream's JSON reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StreamClaims:
    site_id: str
    expires_ms: int
    key_prefix: str  # the API key that issued it (revoking that key ends the streams)


def is_stream_token(secret: str) -> bool:
    return secret.startswith(TOKEN_PREFIX)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def default_ttl_s() -> float:
    raw = os.environ.get(ENV_TTL, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TTL_S
    except ValueError:
        return DEFAULT_TTL_S
    return value if value > 0 else DEFAULT_TTL_S


class StreamTokens:
    """Issue and verify stream tokens under one secret."""

    def __init__(self, secret: bytes, *, ttl_s: float | None = None):
        if len(secret) < 16:
            raise ValueError("the stream token secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_s = default_ttl_s() if ttl_s is None else float(ttl_s)

    @classmethod
    def for_data(cls, data: DataDir, *, ttl_s: float | None = None) -> StreamTokens:
        return cls(load_secret(data), ttl_s=ttl_s)

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest())

    def issue(self, site_id: str, key_prefix: str, *, ttl_s: float | None = None,
              now_ms: int | None = None) -> tuple[str, int]:
        """A token for ``site_id`` and its expiry (epoch ms)."""
        if "|" in site_id or "|" in key_prefix:
            raise ValueError("site ids and key prefixes cannot contain '|'")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        expires = now + int((self.ttl_s if ttl_s is None else ttl_s) * 1000)
        payload = f"{_VERSION}|{site_id}|{expires}|{key_prefix}".encode()
        return f"{TOKEN_PREFIX}{_b64(payload)}.{self._sign(payload)}", expires

    def verify(self, token: str, *, now_ms: int | None = None) -> StreamClaims:
        """The token's claims, or :class:`StreamTokenError` (``invalid_token`` / ``expired_token``)."""
        if not is_stream_token(token) or len(token) > 512:
            raise StreamTokenError("invalid_token", "not a stream token")
        body, dot, signature = token[len(TOKEN_PREFIX):].partition(".")
        try:
            payload = _unb64(body)
        except (ValueError, TypeError) as e:
            raise StreamTokenError("invalid_token", "malformed stream token") from e
        if not dot or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise StreamTokenError("invalid_token", "stream token signature does not match")
        parts = payload.decode("utf-8", "replace").split("|")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            raise StreamTokenError("invalid_token", "malformed stream token")
        claims = StreamClaims(site_id=parts[1], expires_ms=int(parts[2]), key_prefix=parts[3])
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if now >= claims.expires_ms:
            raise StreamTokenError("expired_token", "the stream token has expired: ask for a new one")
        return claims


def issuer_active(db: ControlDB, claims: StreamClaims) -> bool:
    """Is the key that issued the token still an active key of the token's site?"""
    rows = db.query("SELECT 1 FROM api_keys WHERE key_prefix = ? AND site_id = ? AND revoked_at IS NULL",
                    (claims.key_prefix, claims.site_id))
    return bool(rows)


def load_secret(data: DataDir) -> bytes:
    """``CLICKSTREAM_STREAM_SECRET``, else the data directory's secret file (made on first use)."""
    env = os.environ.get(ENV_SECRET, "")
    if env:
        return env.encode("utf-8")
    path = data.path / SECRET_FILE
    if not path.exists():
        _create_secret(path)
    raw = path.read_text(encoding="ascii").strip()
    return bytes.fromhex(raw)


def _create_secret(path: Path) -> None:
    """Write a new secret atomically; if another process won the race, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic, and fails if the secret already exists
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
