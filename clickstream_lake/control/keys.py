"""API keys: shown once at creation, only a SHA-256 hash stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from clickstream_lake.control.db import ControlDB

KEY_PREFIX = "csk_"


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Permission) -> bool:
        """admin ⊇ write ⊇ read."""
        order = [Permission.READ, Permission.WRITE, Permission.ADMIN]
        return order.index(self) >= order.index(needed)


class KeyError_(ValueError):
    """A key problem the caller can fix (unknown site, bad permission...)."""


@dataclass(frozen=True)
class ApiKey:
    key_hash: str
    key_prefix: str
    site_id: str
    name: str
    permissions: Permission
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(db: ControlDB, site_id: str, *, name: str, permissions: str = "read") -> tuple[str, ApiKey]:
    """Create a key; returns (the secret, shown once, and its record)."""
    try:
        perm = Permission(permissions)
    except ValueError as e:
        raise KeyError_(f"permissions must be one of read, write, admin (got {permissions!r})") from e
    if not db.query("SELECT 1 FROM sites WHERE id = ?", (site_id,)):
        raise KeyError_(f"no site {site_id!r}")
    secret = KEY_PREFIX + secrets.token_urlsafe(30)
    prefix = secret[: len(KEY_PREFIX) + 8]
    db.execute(
        "INSERT INTO api_keys(key_hash, key_prefix, site_id, name, permissions) VALUES (?, ?, ?, ?, ?)",
        (hash_key(secret), prefix, site_id, name, perm.value),
    )
    rec = lookup_key(db, secret)
    assert rec is not None
    return secret, rec


def _row_to_key(r) -> ApiKey:
    return ApiKey(
        r["key_hash"],
        r["key_prefix"],
        r["site_id"],
        r["name"],
        Permission(r["permissions"]),
        r["created_at"],
        r["last_used_at"],
        r["revoked_at"],
    )


def lookup_key(db: ControlDB, secret: str) -> ApiKey | None:
    """The key record for a secret (revoked keys included: check ``.active``)."""
    if not secret or not secret.startswith(KEY_PREFIX):
        return None
    rows = db.query("SELECT * FROM api_keys WHERE key_hash = ?", (hash_key(secret),))
    return _row_to_key(rows[0]) if rows else None


def list_keys(db: ControlDB, site_id: str | None = None) -> list[ApiKey]:
    if site_id is None:
        rows = db.query("SELECT * FROM api_keys ORDER BY site_id, created_at")
    else:
        rows = db.query("SELECT * FROM api_keys WHERE site_id = ? ORDER BY created_at", (site_id,))
    return [_row_to_key(r) for r in rows]


def revoke_key(db: ControlDB, prefix_or_hash: str) -> int:
    """Revoke by the key's displayed prefix (``csk_xxxxxxxx``) or full hash; returns count."""
    now = _now()
    cur = db.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND (key_prefix = ? OR key_hash = ?)",
        (now, prefix_or_hash, prefix_or_hash),
    )
    return cur.rowcount


def touch_key(db: ControlDB, key_hash: str) -> None:
    db.execute("UPDATE api_keys SET last_used_at = ? WHERE key_hash = ?", (_now(), key_hash))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
