"""Log → Parquet: the background flusher, and the replay of the log on start.

Every ``interval`` seconds (default 0.5 s) the flusher rotates the durable log and turns
the closed segments into Parquet:

* event records → ``lake/events/site_id=<id>/dt=<day>/flush-…parquet`` (AE row schema);
* quarantine records → ``lake/quarantine/site_id=<id>/dt=<day>/flush-…parquet``;

each file zstd-compressed with DuckDB-sized row groups and published atomically
(:func:`clickstream_lake.lake.publish_parquet`), under the partition lock shared with
compaction.  Only then are the segments deleted.

Two readers of the log, one result.  A flush reads its ``"r1"`` rows with the compiled
reader (``_r1_columns``, straight into Arrow columns) and its other records with orjson,
record by record (:class:`_Buckets`); a record the compiled reader does not take makes the
whole flush read by orjson, which is what the compiled path is tested against: the same
files, byte for byte.

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
    compiled_rows: int = 0  # event records read by the compiled reader (the rest by orjson)
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


def _events_table(records: list[list[Any]], compiled: pa.Table | None = None) -> pa.Table:
    """Logged event records as one AE-row table in timestamp order, packed column by column
    (:func:`codec.encode_columns`): ``"r1"`` records (row values as a list) transposed
    straight into columns, ``"v"`` records (a dict of row values) likewise; ``"e"`` records
    (``["e", timestamp, index1, blobs, doubles]``, already packed) taken as they are.
    ``compiled``: the partition's ``"r1"`` rows already packed (the compiled reader), in
    the place of the ``"r1"`` records'."""
    r1 = [r for r in records if r[0] == "r1"]
    dicts = [r[1] for r in records if r[0] == "v"]
    packed = [r for r in records if r[0] == "e"]
    tables = [] if compiled is None else [compiled]
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


def flush_segments(segments: list[Path], lake: LakeLayout, *, dedupe_against_lake: bool,
                   columnar: bool | None = None) -> FlushResult:
    """Publish the records of ``segments`` to the lake (does not delete the segments).

    ``columnar``: read the usual ``"r1"`` records with the compiled reader
    (:func:`columnar_reader`; None = whenever it is in use); False = every record through
    ``orjson`` (the reference the compiled path is tested against)."""
    reader = columnar_reader()[0] if columnar is not False else None
    with _gc_paused():
        return _flush_segments(segments, lake, dedupe_against_lake=dedupe_against_lake, reader=reader)


class _Buckets:
    """Decoded records by partition and id: ``events[(site, day)][event_id]`` and
    ``quarantine[(site, day)][record_id]`` (first one wins; later ones are duplicates)."""

    def __init__(self, res: FlushResult):
        self.res = res
        self.events: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(dict)
        self.quarantine: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(dict)
        self.valid_sites: set[str] = set()  # each distinct site id is checked once per flush
        self.day_of_ts = _day_cache()

    def add(self, records: Iterable[tuple[Path, bytes]]) -> None:
        """Decode each ``(segment, payload)`` with orjson and file it; an unreadable record
        is counted and skipped."""
        events, quarantine, valid_sites, day_of_ts, res = (
            self.events, self.quarantine, self.valid_sites, self.day_of_ts, self.res)
        loads, n_r1 = orjson.loads, len(ROW_FIELDS_V1)
        last_site: Any = None
        last_day_n: int | None = None
        bucket: dict[str, list[Any]] = {}  # the event bucket of the previous event record
        for seg, payload in records:
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


def _flush_segments(segments: list[Path], lake: LakeLayout, *, dedupe_against_lake: bool,
                    reader: Any) -> FlushResult:
    t0 = time.perf_counter()
    res = FlushResult(segments=len(segments))
    buckets = _Buckets(res)
    records = [(seg, payload) for seg in segments for payload in read_segment(seg)]
    compiled: dict[tuple[str, str], pa.Table] | None = None
    if reader is not None and not dedupe_against_lake:  # a replay or a retry reads the Python way
        compiled = _columnar_events(reader, records, buckets)
    if compiled is None:
        buckets.add(records)
        compiled = {}
    fs = lake.fs
    for site, day in [*buckets.events, *(key for key in compiled if key not in buckets.events)]:
        rows_by_id = buckets.events.get((site, day), {})
        rows = compiled.get((site, day))
        with partition_lock(lake, site, day):
            part = lake.partition_dir(site, day)
            if dedupe_against_lake:
                res.duplicates += _drop_published(rows_by_id, part, EVENT_ID_COLUMN, fs)
            n = len(rows_by_id) + (rows.num_rows if rows is not None else 0)
            if not n:
                continue
            publish_parquet(_events_table(list(rows_by_id.values()), rows), fs, f"{part}/{new_file_name('flush')}")
            res.events += n
            res.files += 1
    for (site, day), rows_by_id in buckets.quarantine.items():
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


# --- the compiled path: "r1" records straight into Arrow columns -------------------------------
try:  # built by setup.py when a C compiler is there (optional, like the score kernel)
    from ingest_worker import _r1_columns
except ImportError:  # pragma: no cover - a build without the extension
    _r1_columns = None

COLUMNAR_ENV = "CLICKSTREAM_COMPILED_FLUSH"  # "0": decode every record with orjson
_R1_PREFIX, _Q_PREFIX = b'["r1",', b'["q",'
_NUMERIC_ROW_FIELDS = frozenset({"lat", "lon", "x", "y", "value", "session_number", "scroll_depth",
                                 "time_on_page_ms", "click_count", "ts_ms", *codec.SCORE_NAMES})
# the reader's column kinds: T the int64 timestamp, N a number or null, S a string or null
R1_KINDS = "".join("T" if name == "timestamp" else "N" if name in _NUMERIC_ROW_FIELDS else "S"
                   for name in ROW_FIELDS_V1).encode()
_MAX_TS_MS = 253_402_300_799_999  # 9999-12-31: day_of's limit


def columnar_reader() -> tuple[Any, str]:
    """``(module, "")`` when the flush reads ``"r1"`` records with the compiled reader, else
    ``(None, why not)``."""
    if os.environ.get(COLUMNAR_ENV, "1") == "0":
        return None, f"{COLUMNAR_ENV}=0"
    if _r1_columns is None:
        return None, "ingest_worker._r1_columns is not built (no C compiler at install?)"
    return _r1_columns, ""


def _columnar_events(reader: Any, records: list[tuple[Path, bytes]],
                     buckets: _Buckets) -> dict[tuple[str, str], pa.Table] | None:
    """The ``"r1"`` rows of ``records`` read by the compiled ``reader`` and packed, by
    partition (``(site, day)``: rows in log order, not yet sorted by time); every other
    record filed into ``buckets`` the orjson way.  None -- nothing filed -- unless every
    ``"r1"`` record is one the reader takes and every site and timestamp is valid, or when an
    event id of another record kind (``"v"``/``"e"``) meets one of these rows in a partition
    (the log order then decides which one stays): the orjson path then decides everything,
    as before.

    Same rows, same order, same files as that path: duplicates by event id within a
    partition are dropped (the first one stays, an empty id is never a duplicate); a
    partition's table is its ``"r1"`` rows, then its ``"v"`` and ``"e"`` rows, stably
    sorted by timestamp (:func:`_events_table`)."""
    payloads: list[bytes] = []
    other_records: list[tuple[Path, bytes]] = []
    for rec in records:
        if rec[1][:6] == _R1_PREFIX:
            payloads.append(rec[1])
        else:
            other_records.append(rec)
    if not payloads:
        return None
    columns, why = reader.r1_columns(payloads, R1_KINDS)
    if columns is None:
        log.info("flushing %d rows through orjson: %s", len(payloads), why)
        return None
    values = dict(zip(ROW_FIELDS_V1, columns, strict=True))
    ts, sites = values["timestamp"], values["site_id"]
    low, high = pc.min_max(ts).values()
    if low.as_py() < 0 or high.as_py() > _MAX_TS_MS:
        return None
    try:
        site_ids = [check_site_id(site) for site in pc.unique(sites).to_pylist()]
    except ValueError:
        return None
    days = pc.divide(ts, _DAY_MS)
    keep = _first_of_each_id(sites, days, values["event_id"])
    if keep is not None:
        values = {name: col.take(keep) for name, col in values.items()}
        sites, days = values["site_id"], days.take(keep)
    others = _Buckets(FlushResult())  # "q" records, and any "v"/"e" (or corrupt) ones
    others.add(other_records)
    if others.events and _ids_meet(others.events, sites, days, values["event_id"]):
        return None
    try:
        table = codec.encode_columns(values, len(days), from_json=True)
    except Exception:  # noqa: BLE001 - the orjson path encodes row by row what it can
        log.exception("column-wise encoding of %d compiled rows failed; flushing them through orjson", len(payloads))
        return None
    res = buckets.res
    res.compiled_rows = len(payloads)
    res.duplicates += len(payloads) - len(days) + others.res.duplicates
    res.corrupt_records += others.res.corrupt_records
    buckets.events, buckets.quarantine = others.events, others.quarantine
    parts = [(site, day_n) for site in site_ids for day_n in pc.unique(days).to_pylist()]
    if len(parts) == 1:  # the usual flush: one site, one day -- no copy
        return {(parts[0][0], day_of(parts[0][1] * _DAY_MS)): table}
    out = {}
    for site, day_n in parts:
        part = table.filter(pc.and_(pc.equal(sites, site), pc.equal(days, day_n)))
        if part.num_rows:
            out[(site, day_of(day_n * _DAY_MS))] = part
    return out


def _ids_meet(events: dict[tuple[str, str], dict[str, list[Any]]], sites: pa.Array, days: pa.Array,
              event_ids: pa.Array) -> bool:
    """Whether an event id of the orjson-read records ``events`` (by ``(site, day)``) is
    also the id of one of the compiled rows in the same partition."""
    day_names = {n: day_of(n * _DAY_MS) for n in pc.unique(days).to_pylist()}
    for site, day_n, eid in zip(sites.to_pylist(), days.to_pylist(), event_ids.to_pylist(), strict=True):
        if eid and eid in events.get((site, day_names[day_n]), ()):
            return True
    return False


def _first_of_each_id(sites: pa.Array, days: pa.Array, event_ids: pa.Array) -> pa.Array | None:
    """Positions of the rows to keep when some event id repeats within a partition (the
    first one stays); None when none does."""
    n = len(event_ids)
    if pc.count_distinct(event_ids).as_py() == n and not pc.any(pc.equal(event_ids, "")).as_py():
        return None
    seen: set[tuple[str, int, str]] = set()
    keep: list[int] = []
    for i, key in enumerate(zip(sites.to_pylist(), days.to_pylist(), event_ids.to_pylist(), strict=True)):
        if key[2]:
            if key in seen:
                continue
            seen.add(key)
        keep.append(i)
    return pa.array(keep, type=pa.int64()) if len(keep) < n else None


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
    out: list[tuple[str, str]] = []
    for site_dir in root.glob("site_id=*"):
        site = site_dir.name[len("site_id="):]
        for part in site_dir.glob("dt=*"):  # every day: a late event lands in its own (old) day
            for f in part.glob("*.parquet"):
                try:
                    if f.name.startswith(".") or f.stat().st_mtime < cutoff:
                        continue
                    col = pq.read_table(f, columns=[EVENT_ID_COLUMN]).column(0).to_pylist()
                except FileNotFoundError:
                    continue
                except (OSError, pa.ArrowException, KeyError) as e:  # not a file of ours: never stop a start
                    log.warning("dedupe seed: skipping unreadable %s: %s", f, e)
                    continue
                out.extend((site, eid) for eid in col if eid)
    return out
