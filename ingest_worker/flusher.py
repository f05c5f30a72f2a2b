"""Log → Parquet: the background flusher, and the replay of the log on start.

Every ``interval`` seconds (default 0.5 s) the flusher rotates the durable log and turns
the closed segments into Parquet:

* event records → ``lake/events/site_id=<id>/dt=<day>/flush-…parquet`` (AE row schema);
* quarantine records → ``lake/quarantine/site_id=<id>/dt=<day>/flush-…parquet``;

each file zstd-compressed with DuckDB-sized row groups and published atomically
(:func:`clickstream_lake.lake.publish_parquet`), under the partition lock shared with
compaction.  Only then are the segments deleted.

Exactly once.  A crash between publishing a file and deleting its segment leaves rows that
are both in the lake and in the log.  So when a segment is flushed for the second time --
on start (:meth:`Flusher.replay`) or after a failed flush -- its rows are deduplicated by
``event_id`` (quarantine rows by ``record_id``) against what the touched partitions
already hold.  Rows are also deduplicated by id within one flush (a client retry racing
its first attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clickstream_lake import codec
from clickstream_lake.codec import BLOB_INDEX, AERow
from clickstream_lake.compaction import partition_lock
from clickstream_lake.lake import LakeLayout, check_site_id, day_of, new_file_name, publish_parquet
from ingest_worker.durable_log import DurableLog, read_segment
from ingest_worker.events import ROW_FIELDS_V1, TrackedEvent, row_value_list, to_row_values
from ingest_worker.quarantine import QUARANTINE_SCHEMA

log = logging.getLogger(__name__)

EVENT_ID_COLUMN = f"blob{BLOB_INDEX['event_id']}"

# --- log records ---------------------------------------------------------------------------------
def event_record(event: AERow | Mapping[str, Any]) -> bytes:
    """The log payload of one accepted event.

    The request path logs the event's flat row values (``to_row_values``: a ``"v"``
    record) and the flush process packs them into the AE row with ``codec.encode`` -- the
    packing costs as much CPU as validating and scoring, and this way it runs beside the
    request loop, not in it.  An already encoded :class:`AERow` is an ``"e"`` record."""
    if isinstance(event, AERow):
        return orjson.dumps(["e", event.timestamp, event.index1, event.blobs, event.doubles])
    try:  # row values have str keys: without OPT_NON_STR_KEYS orjson is twice as fast
        return orjson.dumps(["v", event])
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(["v", event], option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate from a JSON escape: encode cleans it
        return event_record(codec.encode(event))


def row_record(event: TrackedEvent) -> bytes:
    """The log payload of one accepted, scored event, as the request path writes it.

    Usually ``["r1", [values]]``: the row values in :data:`ROW_FIELDS_V1` order, a third
    of the bytes of the ``"v"`` record and no dict built; the flusher makes the same AE row
    of either.  An event whose scores are not the 16 plain numbers (models disabled, NaN),
    or that orjson refuses, gets :func:`event_record` of ``to_row_values``."""
    values = row_value_list(event)
    if values is not None:
        try:
            return orjson.dumps(["r1", values])
        except orjson.JSONEncodeError:  # e.g. a lone surrogate: the "v" path cleans it
            pass
    return event_record(to_row_values(event))


ROW_KINDS = ("e", "v", "r1")  # the event record kinds of the log


def record_values(rec: list[Any]) -> dict[str, Any]:
    """The row values of a ``"v"`` or ``"r1"`` record (ValueError for a malformed one)."""
    if rec[0] == "v":
        return rec[1]
    values = rec[1]
    if len(values) != len(ROW_FIELDS_V1):
        raise ValueError(f"an r1 record holds {len(values)} values, not {len(ROW_FIELDS_V1)}")
    return dict(zip(ROW_FIELDS_V1, values, strict=True))


_R1_TS, _R1_SITE, _R1_EID = (ROW_FIELDS_V1.index(n) for n in ("timestamp", "site_id", "event_id"))


def record_key(rec: list[Any]) -> tuple[str, int, str]:
    """(site, timestamp ms, event id) of an event record of any kind; raises on a record
    that cannot become a row (the flush skips it as corrupt)."""
    kind = rec[0]
    if kind == "r1":
        values = rec[1]
        if len(values) != len(ROW_FIELDS_V1):
            raise ValueError(f"an r1 record holds {len(values)} values, not {len(ROW_FIELDS_V1)}")
        site, ts, eid = values[_R1_SITE], int(values[_R1_TS]), values[_R1_EID] or ""
    elif kind == "v":
        values = rec[1]
        site, ts, eid = values.get("site_id"), int(values["timestamp"]), values.get("event_id") or ""
    else:
        site, ts, eid = rec[2], int(rec[1]), rec[3][BLOB_INDEX["event_id"] - 1]
    return site, ts, eid if type(eid) is str else str(eid)


# --- turning records into tables -------------------------------------------------------------------
@dataclass
class FlushResult:
    segments: int = 0
    events: int = 0
    quarantined: int = 0
    duplicates: int = 0
    files: int = 0
    corrupt_records: int = 0
    seconds: float = 0.0


def _encode_or_none(values: dict[str, Any]) -> codec.AERow | None:
    try:
        return codec.encode(values)
    except (ValueError, TypeError, OverflowError, KeyError) as e:
        log.error("skipping an event record that cannot be encoded: %s (%r)", e, str(values)[:300])
        return None


def _packed_or_row_by_row(build: Callable[[], pa.Table], rows: Callable[[], list[dict[str, Any]]]) -> pa.Table:
    """``build()``; should the column-wise packing ever fail, the rows one by one (a row that
    cannot be encoded is logged and skipped) -- a flush never stalls on one odd record."""
    try:
        return build()
    except Exception:  # noqa: BLE001
        values = rows()
        log.exception("column-wise encoding failed; encoding %d rows one by one", len(values))
        return codec.rows_to_table([row for row in map(_encode_or_none, values) if row is not None])


def _events_table(records: list[list[Any]]) -> pa.Table:
    """Logged event records as one AE-row table in timestamp order, packed column by column
    (:func:`codec.encode_columns`): ``"r1"`` records (row values as a list) transposed
    straight into columns, ``"v"`` records (a dict of row values) likewise; ``"e"`` records
    (``["e", timestamp, index1, blobs, doubles]``, already packed) taken as they are."""
    r1 = [r for r in records if r[0] == "r1"]
    dicts = [r[1] for r in records if r[0] == "v"]
    packed = [r for r in records if r[0] == "e"]
    tables = []
    if r1:
        lists = [r[1] for r in r1]
        tables.append(_packed_or_row_by_row(
            lambda: codec.encode_columns(dict(zip(ROW_FIELDS_V1, zip(*lists, strict=True), strict=True)), len(lists),
                                         from_json=True),
            lambda: [record_values(r) for r in r1]))
    if dicts:
        tables.append(_packed_or_row_by_row(lambda: codec.encode_table(dicts, from_json=True), lambda: dicts))
    if packed:
        tables.append(codec.columns_to_table([r[1] for r in packed], [r[2] for r in packed],
                                             [r[3] for r in packed], [r[4] for r in packed]))
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return _in_time_order(table)


def _in_time_order(table: pa.Table) -> pa.Table:
    """``table.sort_by("timestamp")`` (stable: log order among equal timestamps), without
    copying every column when the rows are in order already and in one chunk (so the very
    same table, and the very same file, as the sorted copy)."""
    ts = table.column("timestamp")
    if ts.num_chunks == 1 and table.num_rows > 1:
        arr = ts.chunk(0)
        if pc.all(pc.less_equal(arr.slice(0, len(arr) - 1), arr.slice(1))).as_py():
            return table
    return table.sort_by("timestamp")


def _quarantine_table(rows: list[list[Any]]) -> pa.Table:
    names = ["received_at", "site_id", "record_id", "reason", "error", "status", "batch_index",
             "content_type", "user_agent", "payload"]
    cols = {name: [r[i + 1] for r in rows] for i, name in enumerate(names)}
    return pa.Table.from_pydict(cols, schema=QUARANTINE_SCHEMA)


def _existing_ids(paths: Iterable[str], column: str) -> set[str]:
    ids: set[str] = set()
    for p in paths:
        try:
            ids.update(v for v in pq.read_table(p, columns=[column]).column(column).to_pylist() if v)
        except FileNotFoundError:  # compacted away meanwhile: its rows are in the merged file
            continue
    return ids


def _drop_published(rows_by_id: dict[str, Any], directory: str, id_column: str, fs: Any) -> int:
    """Remove from ``rows_by_id`` the ids the Parquet files of ``directory`` already hold (a
    replay or a retried flush); returns how many were dropped."""
    seen = _existing_ids(_parquet_files(directory, fs), id_column).intersection(rows_by_id)
    for key in seen:
        del rows_by_id[key]
    return len(seen)


def _parquet_files(directory: str, fs: Any) -> list[str]:
    if not fs.exists(directory):
        return []
    return [p for p in fs.ls(directory, detail=False)
            if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith(".")]


_DAY_MS = 86_400_000


def _day_cache() -> Callable[[int], str]:
    """``day_of`` memoised per UTC day (one strftime per day instead of per row)."""
    days: dict[int, str] = {}

    def day(ts_ms: int) -> str:
        n = ts_ms // _DAY_MS
        d = days.get(n)
        if d is None:
            d = days[n] = day_of(n * _DAY_MS)
        return d

    return day


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a flush builds its records: every decoded
    record is a fresh container, so the collector would walk all of them again and again
    (a third of the cost of decoding a segment), and a flush makes no reference cycles
    worth collecting.  Turned back on only if it was on (so two overlapping flushes cannot
    leave it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def flush_segments(segments: list[Path], lake: LakeLayout, *, dedupe_against_lake: bool) -> FlushResult:
    """Publish the records of ``segments`` to the lake (does not delete the segments)."""
    with _gc_paused():
        return _flush_segments(segments, lake, dedupe_against_lake=dedupe_against_lake)


def _flush_segments(segments: list[Path], lake: LakeLayout, *, dedupe_against_lake: bool) -> FlushResult:
    t0 = time.perf_counter()
    day_of_ts = _day_cache()
    res = FlushResult(segments=len(segments))
    events: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(dict)
    quarantine: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(dict)
    valid_sites: set[str] = set()  # each distinct site id is checked once per flush
    loads, n_r1 = orjson.loads, len(ROW_FIELDS_V1)
    last_site: Any = None
    last_day_n: int | None = None
    bucket: dict[str, list[Any]] = {}  # the event bucket of the previous event record
    for seg in segments:
        for payload in read_segment(seg):
            try:
                rec = loads(payload)
                kind = rec[0]
                if kind in ROW_KINDS:
                    if kind == "r1":  # record_key, inlined for the usual record
                        values = rec[1]
                        if len(values) != n_r1:
                            raise ValueError(f"an r1 record holds {len(values)} values, not {n_r1}")
                        site, ts, eid = values[_R1_SITE], int(values[_R1_TS]), values[_R1_EID] or ""
                        if type(eid) is not str:
                            eid = str(eid)
                    else:
                        site, ts, eid = record_key(rec)
                    if site not in valid_sites:
                        valid_sites.add(check_site_id(site))
                    day_n = ts // _DAY_MS
                    if day_n != last_day_n or site != last_site:
                        bucket = events[(site, day_of_ts(ts))]
                        last_site, last_day_n = site, day_n
                    target = bucket
                    key = eid or uuid.uuid4().hex
                elif kind == "q":
                    site = rec[2]
                    if site not in valid_sites:
                        valid_sites.add(check_site_id(site))
                    target = quarantine[(site, day_of_ts(rec[1]))]
                    key = rec[3]
                else:
                    raise ValueError(f"unknown record kind {kind!r}")
            # OSError: a timestamp beyond the platform's time_t -- skipped like any unreadable
            # record, never an exception that would fail (and so stall) every later flush
            except (ValueError, IndexError, TypeError, OverflowError, KeyError, OSError) as e:
                res.corrupt_records += 1
                log.error("skipping unreadable log record in %s: %s (%r)", seg, e, payload[:300])
                continue
            if key in target:
                res.duplicates += 1
                continue
            target[key] = rec
    fs = lake.fs
    for (site, day), rows_by_id in events.items():
        with partition_lock(lake, site, day):
            part = lake.partition_dir(site, day)
            if dedupe_against_lake:
                res.duplicates += _drop_published(rows_by_id, part, EVENT_ID_COLUMN, fs)
            if not rows_by_id:
                continue
            publish_parquet(_events_table(list(rows_by_id.values())), fs, f"{part}/{new_file_name('flush')}")
            res.events += len(rows_by_id)
            res.files += 1
    for (site, day), rows_by_id in quarantine.items():
        qdir = f"{lake.quarantine_dir(site)}/dt={day}"
        if dedupe_against_lake:
            res.duplicates += _drop_published(rows_by_id, qdir, "record_id", fs)
        if not rows_by_id:
            continue
        publish_parquet(_quarantine_table(list(rows_by_id.values())), fs, f"{qdir}/{new_file_name('flush')}")
        res.quarantined += len(rows_by_id)
        res.files += 1
    res.seconds = time.perf_counter() - t0
    return res


def _die_with_parent(parent_pid: int) -> None:
    """A flush process must never outlive the server (a SIGKILLed server's orphan could
    publish rows the restarted server already replayed): ask Linux to kill it with its parent."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which then flushes
    # below the request loop in the CPU scheduler: a flush has seconds of slack, a collect
    # request waits for its CPU share (CLICKSTREAM_FLUSH_NICE, default 10; 0 = same priority)
    with contextlib.suppress(OSError, ValueError):
        os.nice(int(os.environ.get("CLICKSTREAM_FLUSH_NICE", "10")))


def _flush_job(segments: list[Path], lake: LakeLayout, dedupe: bool) -> FlushResult:
    return flush_segments(segments, lake, dedupe_against_lake=dedupe)


class Flusher:
    """Background task: rotate the log, publish closed segments, delete them."""

    def __init__(self, log_: DurableLog, lake: LakeLayout, *, interval: float = 0.5,
                 on_flush: Callable[[FlushResult], None] | None = None, processes: bool = False):
        self.log = log_
        self.lake = lake
        self.interval = interval
        self.on_flush = on_flush
        self.last_error: str = ""
        self.last_flush_at: float = 0.0
        self.unflushed_segments = 0
        self._retry: set[Path] = set()  # segments whose flush failed part-way: dedupe on retry
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self.processes = processes
        self._pool: Executor | None = None

    def _executor(self) -> Executor:
        """Building Parquet is CPU work: it runs in a separate process (``processes=True``,
        the server's default) so it never holds the request loop's GIL."""
        if self._pool is None:
            if self.processes:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_die_with_parent, initargs=(os.getpid(),))
            else:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flusher")
        return self._pool

    def replay(self, leftovers: list[Path]) -> FlushResult:
        """On start: publish what the log holds from before, exactly once, then delete it."""
        if not leftovers:
            return FlushResult()
        res = flush_segments(leftovers, self.lake, dedupe_against_lake=True)
        for seg in leftovers:
            seg.unlink(missing_ok=True)
        if self.on_flush:
            self.on_flush(res)
        return res

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="flusher")

    async def stop(self) -> None:
        """Stop the loop and flush everything acknowledged so far."""
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.flush_now()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def flush_now(self) -> FlushResult:
        async with self._lock:
            segments = await self.log.rotate()
            self.unflushed_segments = len(segments)
            if not segments:
                return FlushResult()
            dedupe = bool(self._retry.intersection(segments))
            try:
                loop = asyncio.get_running_loop()
                res = await loop.run_in_executor(self._executor(), _flush_job, segments, self.lake, dedupe)
            except Exception as e:
                if isinstance(e, BrokenExecutor) and self._pool is not None:  # start a fresh one next time
                    self._pool.shutdown(wait=False)
                    self._pool = None
                self._retry.update(segments)
                self.last_error = f"{type(e).__name__}: {e}"
                raise
            for seg in segments:
                seg.unlink(missing_ok=True)
                self._retry.discard(seg)
            self.unflushed_segments = 0
            self.log.backlog_bytes = 0
            self.last_error = ""
            self.last_flush_at = time.time()
            if self.on_flush:
                self.on_flush(res)
            return res

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval)
                return
            except TimeoutError:
                pass
            try:
                await self.flush_now()
            except Exception:  # noqa: BLE001 - keep the segments and retry next tick
                log.exception("flush failed; the log keeps the events and the flush is retried")


def recent_event_ids(lake: LakeLayout, within_s: float = 600.0) -> list[tuple[str, str]]:
    """``(site, event_id)`` of rows published in the last ``within_s`` seconds (local lake):
    seeds the dedupe window on start so a client retrying across a restart is not stored twice."""
    if not lake.is_local:
        return []
    root = Path(lake.events_dir())
    if not root.exists():
        return []
    cutoff = time.time() - within_s
    days = {day_of(int((time.time() - d * 86_400) * 1000)) for d in (0, 1)}
    out: list[tuple[str, str]] = []
    for site_dir in root.glob("site_id=*"):
        site = site_dir.name[len("site_id="):]
        for day in days:
            for f in (site_dir / f"dt={day}").glob("*.parquet"):
                try:
                    if f.name.startswith(".") or f.stat().st_mtime < cutoff:
                        continue
                    col = pq.read_table(f, columns=[EVENT_ID_COLUMN]).column(0).to_pylist()
                except FileNotFoundError:
                    continue
                out.extend((site, eid) for eid in col if eid)
    return out
