"""Session state after a restart: read the lake's recent rows, rebuild the SessionStore.

Sessions and visitor features live in the process's memory (:class:`SessionStore`).  On
start, after the durable log's leftovers are replayed into the lake, the collect component
calls :func:`rebuild_sessions`: it reads the rows of the last :data:`REBUILD_WINDOW_MS`
(25 h: the store forgets a visitor after 24 h idle, a session lasts at most 24 h) from
``lake/events/site_id=*/dt=<days in the window>/*.parquet`` and replays every visitor's rows
through the live update (:meth:`ingest_worker.scoring.Scorer.rebuild`), so the next event
of a visitor continues its session and its scores.

Order: each visitor's rows are replayed in timestamp order (a stable sort over files read
oldest published first), the order the lake keeps them in (the flusher and compaction sort
by time).  The live path scores in arrival order, so a visitor whose events arrived out of
time order is rebuilt as if they had arrived in order: its scores may differ slightly from
an uninterrupted worker's (in-order visitors — the usual case — get identical state).

A visitor whose history is older than the window is rebuilt from the window only; its
current session keeps the id and number the rows carry (only the totals over sessions
older than 25 h are missing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clickstream_lake.lake import LakeLayout, day_of
from ingest_worker.sessions import SessionStore, VisitorState

log = logging.getLogger(__name__)

REBUILD_WINDOW_MS = 25 * 3_600_000


@dataclass
class RebuildResult:
    files: int = 0
    rows: int = 0
    visitors: int = 0
    seconds: float = 0.0


def _mtime(info: dict[str, Any]) -> float:
    for k in ("mtime", "LastModified", "created"):
        v = info.get(k)
        if v is None:
            continue
        if hasattr(v, "timestamp"):
            return float(v.timestamp())
        try:
            return float(v)
        except (TypeError, ValueError):
            continue
    return 0.0


def recent_files(lake: LakeLayout, since_ms: int, now_ms: int) -> list[str]:
    """Event files of every site's partitions that may hold rows at or after ``since_ms``,
    oldest published first."""
    fs = lake.fs
    root = lake.events_dir()
    if not fs.exists(root):
        return []
    first_day, last_day = day_of(since_ms), day_of(now_ms + 3_600_000)
    found: list[tuple[float, str, str]] = []
    for site_dir in fs.ls(root, detail=False):
        if not site_dir.rstrip("/").rsplit("/", 1)[-1].startswith("site_id="):
            continue
        for part in fs.ls(site_dir, detail=False):
            name = part.rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith("dt=") or not (first_day <= name[3:] <= last_day):
                continue
            for info in fs.ls(part, detail=True):
                path = info["name"]
                base = path.rsplit("/", 1)[-1]
                if base.endswith(".parquet") and not base.startswith("."):
                    found.append((_mtime(info), base, path))
    found.sort()
    return [p for _, _, p in found]


_ROW_COLUMNS = (
    "site_id", "visitor_id", "session_id", "event_type", "url", "referrer", "hem", "gclid", "fbclid",
    "msclkid", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "screen", "title",
    "event_name", "props", "target", "x", "y", "value", "currency", "order_id", "event_id", "channel",
    "session_number", "scroll_depth", "time_on_page_ms",
)


def recent_rows(lake: LakeLayout, since_ms: int, now_ms: int, result: RebuildResult | None = None,
                keep: Callable[[str], bool] | None = None) -> list[dict[str, Any]]:
    """Decoded rows with a timestamp ≥ ``since_ms``, in stored order (files oldest published
    first), decoded by DuckDB through the ``events`` view (``sql/views/events.sql``) —
    vectorised, about 10× faster than decoding row by row in Python.  ``keep(visitor_id)``
    picks the visitors whose rows become Python rows (a scoring shard's share): the rest are
    dropped from the Arrow table first."""
    import duckdb

    from clickstream_lake.resources import read_sql

    files = recent_files(lake, since_ms, now_ms)
    if not files:
        return []
    con = duckdb.connect()
    try:
        con.execute("SET autoinstall_known_extensions=false")
        if not lake.is_local:
            con.register_filesystem(lake.fs)
            files = [f"{lake.root.split('://', 1)[0]}://{f}" for f in files]
        events_view = read_sql("views/events.sql")
        try:
            table = _read_rows(con, files, since_ms, events_view)
        except duckdb.Error as e:  # a file that is not one of ours: read file by file, skip it
            log.warning("session rebuild: reading the files one by one (%s)", str(e).splitlines()[0][:200])
            tables = []
            for f in files:
                try:
                    tables.append(_read_rows(con, [f], since_ms, events_view))
                except duckdb.Error as err:
                    log.warning("session rebuild: skipping %s: %s", f, str(err).splitlines()[0][:200])
            table = pa.concat_tables(tables, promote_options="permissive") if tables else None
            if table is None:
                return []
    finally:
        con.close()
    if result is not None:
        result.files += len(files)
        result.rows += table.num_rows
    if keep is not None:  # decided once per visitor, applied in Arrow
        ids = table.column("visitor_id")
        mine = [v for v in pc.unique(ids).to_pylist() if v and keep(v)]
        table = table.filter(pc.is_in(ids, value_set=pa.array(mine, type=ids.type)))
    return table.to_pylist()


def _read_rows(con: Any, files: list[str], since_ms: int, events_view_sql: str) -> pa.Table:
    """The decoded rows of ``files`` at or after ``since_ms``, each row's ``site_id`` the
    one of the partition directory it was read from: a row claiming another site (a file
    planted in a site's own directory) never becomes that site's state."""
    file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE OR REPLACE VIEW clickstream_events AS SELECT * EXCLUDE (filename) "
                f"FROM read_parquet([{file_list}], union_by_name = true, filename = true) "
                "WHERE blob1 = regexp_extract(filename, '/site_id=([^/]+)/', 1)")
    con.execute(events_view_sql)
    cols = ", ".join(_ROW_COLUMNS)
    return con.sql(f"SELECT epoch_ms(timestamp) AS timestamp, {cols} FROM events "
                   f"WHERE epoch_ms(timestamp) >= {int(since_ms)}").to_arrow_table()


def rebuild_store(store: SessionStore, rows: Iterable[dict[str, Any]]) -> int:
    """Replay each visitor's rows into ``store``; returns the number of visitors rebuilt."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row.get("site_id") or "", row.get("visitor_id") or "")
        if key[0] and key[1]:
            groups.setdefault(key, []).append(row)
    for items in groups.values():
        items.sort(key=_ts)  # stable: rows with equal times keep their stored order
        state = VisitorState.replay(items)
        if state is None:
            continue
        _keep_session_identity(state, items[-1])
        store.put(state)
    return len(groups)


def _ts(row: dict[str, Any]) -> int:
    return int(row.get("timestamp") or 0)


def _keep_session_identity(state: VisitorState, last: dict[str, Any]) -> None:
    """When the window cut a visitor's older sessions, the replay numbers sessions from 1:
    keep the number and id the last row carries for the session it belongs to."""
    try:
        number = int(last.get("session_number") or 0)
    except ValueError:
        return
    if number > state.session_number and last.get("session_id"):
        state.session_number = number
        state.session_id = str(last["session_id"])


def rebuild_sessions(lake: LakeLayout, scorer: Any, *, now_ms: int | None = None,
                     window_ms: int = REBUILD_WINDOW_MS, keep: Callable[[str], bool] | None = None) -> RebuildResult:
    """Rebuild ``scorer.store`` from the lake's rows of the last ``window_ms`` (only the
    visitors ``keep`` selects, when given)."""
    t0 = time.perf_counter()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    res = RebuildResult()
    rows = recent_rows(lake, now - window_ms, now, res, keep)
    with scorer._lock:  # the Scorer's own lock: no event is scored halfway through
        res.visitors = rebuild_store(scorer.store, rows)
    res.seconds = time.perf_counter() - t0
    return res
