"""The SQLite control database and its migrations (``sql/migrations/NNN_*.sql``)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clickstream_lake.resources import MIGRATIONS_DIR

_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


class ControlDB:
    """A small, thread-safe wrapper over one SQLite file.

    Each thread gets its own connection (SQLite connections are not shared across
    threads); WAL mode lets the worker read while the CLI writes.
    """

    def __init__(self, path: str | Path, migrations_dir: Path = MIGRATIONS_DIR):
        self.path = Path(path)
        self.migrations_dir = migrations_dir
        self._local = threading.local()

    # -- connections --------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            if not self.path.parent.exists():
                raise FileNotFoundError(
                    f"control database directory {self.path.parent} does not exist: run `clickstream init`"
                )
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA foreign_keys=ON")
            c.execute("PRAGMA busy_timeout=30000")
            self._local.conn = c
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        c = self.conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        else:
            c.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.conn().execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.conn().execute(sql, params)

    # -- migrations -----------------------------------------------------------------------
    def migration_files(self) -> list[Path]:
        files = []
        for p in sorted(self.migrations_dir.glob("*.sql")):
            if not _MIGRATION_RE.match(p.name):
                raise MigrationError(f"migration file {p.name} is not named NNN_name.sql")
            files.append(p)
        numbers = [p.name[:3] for p in files]
        if len(set(numbers)) != len(numbers):
            raise MigrationError(f"two migrations share a number in {self.migrations_dir}")
        return files

    def migrate(self) -> list[str]:
        """Apply pending migrations in order; returns the names applied (empty when current).

        Each migration runs in its own transaction together with its bookkeeping row, so a
        failed migration leaves nothing half applied.  A migration whose file changed after
        it was applied is reported rather than silently ignored.
        """
        c = self.conn()
        c.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name TEXT PRIMARY KEY, checksum TEXT NOT NULL,"
            " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        applied = {r["name"]: r["checksum"] for r in c.execute("SELECT name, checksum FROM schema_migrations")}
        done: list[str] = []
        for path in self.migration_files():
            text = path.read_text(encoding="utf-8")
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if path.name in applied:
                if applied[path.name] != checksum:
                    raise MigrationError(
                        f"migration {path.name} changed after it was applied; add a new migration instead"
                    )
                continue
            try:
                c.execute("BEGIN IMMEDIATE")
                for statement in _split_statements(text):
                    c.execute(statement)
                c.execute("INSERT INTO schema_migrations(name, checksum) VALUES (?, ?)", (path.name, checksum))
                c.execute("COMMIT")
            except sqlite3.Error as e:
                c.execute("ROLLBACK")
                raise MigrationError(f"migration {path.name} failed: {e}") from e
            done.append(path.name)
        return done

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM schema_migrations ORDER BY name")]


def _split_statements(text: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about strings)."""
    out: list[str] = []
    buf = ""
    for line in text.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        raise MigrationError(f"unterminated statement at the end of a migration: {buf.strip()[:80]!r}")
    return out
