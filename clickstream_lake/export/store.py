"""The export's bookkeeping in the control database (migration ``003_export.sql``).

* ``export_watermarks`` - per (site, target): every window before ``watermark_ms`` is done;
* ``export_windows`` - per exported window: lake rows seen when last exported (late-row check);
* ``export_files`` - per committed object (seq 0 = the window's file, seq N = its N-th late file).

:meth:`ExportStore.commit_file` records an object *after* it is committed to storage, and in
the same SQLite transaction updates the window and advances the watermark - so the
watermark never runs ahead of the objects.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from clickstream_lake.control.db import ControlDB


@dataclass(frozen=True)
class ExportedFile:
    window_start_ms: int
    seq: int
    day: str
    key: str
    event_count: int
    size_bytes: int
    exported_at: str
    adopted: bool


@dataclass(frozen=True)
class WindowState:
    window_start_ms: int
    window_end_ms: int
    lake_keys_seen: int
    exported_rows: int
    files: int


class ExportStore:
    def __init__(self, db: ControlDB, site_id: str, target: str):
        self.db = db
        self.site_id = site_id
        self.target = target

    # -- watermark --------------------------------------------------------------------------
    def watermark(self) -> tuple[int, int] | None:
        """``(watermark_ms, window_s)`` or None before the first export."""
        rows = self.db.query(
            "SELECT watermark_ms, window_s FROM export_watermarks WHERE site_id = ? AND target = ?",
            (self.site_id, self.target),
        )
        return (int(rows[0]["watermark_ms"]), int(rows[0]["window_s"])) if rows else None

    def init_watermark(self, watermark_ms: int, window_s: int) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO export_watermarks(site_id, target, window_s, watermark_ms) VALUES (?, ?, ?, ?)",
            (self.site_id, self.target, window_s, watermark_ms),
        )

    # -- windows and files ------------------------------------------------------------------
    def window(self, start_ms: int) -> WindowState | None:
        rows = self.db.query(
            "SELECT * FROM export_windows WHERE site_id = ? AND target = ? AND window_start_ms = ?",
            (self.site_id, self.target, start_ms),
        )
        return _window(rows[0]) if rows else None

    def files(self, window_start_ms: int | None = None, day: str | None = None) -> list[ExportedFile]:
        sql = "SELECT * FROM export_files WHERE site_id = ? AND target = ?"
        params: list = [self.site_id, self.target]
        if window_start_ms is not None:
            sql += " AND window_start_ms = ?"
            params.append(window_start_ms)
        if day is not None:
            sql += " AND day = ?"
            params.append(day)
        rows = self.db.query(sql + " ORDER BY window_start_ms, seq", tuple(params))
        return [
            ExportedFile(
                window_start_ms=int(r["window_start_ms"]),
                seq=int(r["seq"]),
                day=r["day"],
                key=r["key"],
                event_count=int(r["event_count"]),
                size_bytes=int(r["size_bytes"]),
                exported_at=r["exported_at"],
                adopted=bool(r["adopted"]),
            )
            for r in rows
        ]

    def commit_file(
        self, start_ms: int, end_ms: int, window_s: int, files: list[ExportedFile], lake_keys_seen: int
    ) -> None:
        """Record committed objects (none: a window with nothing new), the lake rows seen, and
        advance the watermark over every contiguous recorded window - one transaction."""
        with self.db.transaction() as c:
            for file in files:
                c.execute(
                    "INSERT OR IGNORE INTO export_files(site_id, target, window_start_ms, seq, day, key,"
                    " event_count, size_bytes, exported_at, adopted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.site_id,
                        self.target,
                        start_ms,
                        file.seq,
                        file.day,
                        file.key,
                        file.event_count,
                        file.size_bytes,
                        file.exported_at,
                        int(file.adopted),
                    ),
                )
            totals = c.execute(
                "SELECT count(*) AS n, coalesce(sum(event_count), 0) AS rows FROM export_files"
                " WHERE site_id = ? AND target = ? AND window_start_ms = ?",
                (self.site_id, self.target, start_ms),
            ).fetchone()
            c.execute(
                "INSERT INTO export_windows(site_id, target, window_start_ms, window_end_ms, lake_keys_seen,"
                " exported_rows, files) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(site_id, target, window_start_ms) DO UPDATE SET lake_keys_seen = excluded.lake_keys_seen,"
                " exported_rows = excluded.exported_rows, files = excluded.files,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (self.site_id, self.target, start_ms, end_ms, lake_keys_seen, totals["rows"], totals["n"]),
            )
            self._advance(c, window_s)

    def _advance(self, c: sqlite3.Connection, window_s: int) -> None:
        row = c.execute(
            "SELECT watermark_ms FROM export_watermarks WHERE site_id = ? AND target = ?",
            (self.site_id, self.target),
        ).fetchone()
        if row is None:
            return
        wm = int(row["watermark_ms"])
        step = window_s * 1000
        recorded = {
            int(r["window_start_ms"])
            for r in c.execute(
                "SELECT window_start_ms FROM export_windows WHERE site_id = ? AND target = ? AND window_start_ms >= ?",
                (self.site_id, self.target, wm),
            )
        }
        new = wm
        while new in recorded:
            new += step
        if new != wm:
            c.execute(
                "UPDATE export_watermarks SET watermark_ms = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE site_id = ? AND target = ?",
                (new, self.site_id, self.target),
            )


def _window(r: sqlite3.Row) -> WindowState:
    return WindowState(
        window_start_ms=int(r["window_start_ms"]),
        window_end_ms=int(r["window_end_ms"]),
        lake_keys_seen=int(r["lake_keys_seen"]),
        exported_rows=int(r["exported_rows"]),
        files=int(r["files"]),
    )
