"""Compaction: merge a partition's small flush files into large ones, atomically.

The flusher publishes a file per partition about every second, so a day's partition
collects thousands of small files.  Compaction rewrites a *closed* partition (a past day
nobody has written to for a while) into a few large zstd files.

The swap.  Readers glob ``events/site_id=X/dt=*/*.parquet``: they list a directory, then
open the files by path.  Publishing the merged file and then deleting the sources would let
a reader list both (double count); deleting first would let it list neither (gap).  So the
whole partition directory is swapped in one system call:

1. under the partition lock (which the flusher also takes before publishing into it), read
   every file of ``dt=D`` and write the merged file(s) into a staging copy of the directory,
   ``<lake>/.staging/<uuid>/dt=D`` (outside the ``events/`` tree, so no glob sees it);
2. check the row count, fsync, and exchange the two directories with
   ``renameat2(RENAME_EXCHANGE)`` -- one atomic step: a path lookup resolves either to
   the old directory (all small files) or the new one (the merged file), never to a mix;
3. delete the old directory, now in the staging place.

A reader that listed the old directory and opens a file after the swap gets "file not
found" (never a wrong count) and retries; the query layer retries such reads.  A crash at
any point leaves either the old or the new directory in place, plus garbage under
``.staging`` that the next run removes.

Only a local lake can be compacted this way (object stores have no atomic rename); for an
``s3://`` lake :func:`compact_partition` raises :class:`CompactionUnsupported`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import errno
import fcntl
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clickstream_lake.lake import LakeLayout, day_of, fsync_dir, new_file_name, publish_parquet

TARGET_FILE_ROWS = 1_000_000  # rows per merged file (row groups inside stay DuckDB-sized)
RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class CompactionUnsupported(RuntimeError):
    """The lake's storage cannot swap a directory atomically."""


@dataclass
class CompactionResult:
    site_id: str
    day: str
    files_before: int
    files_after: int
    rows: int
    seconds: float

    @property
    def compacted(self) -> bool:
        return self.files_after < self.files_before


# --- the partition lock: the flusher and compaction never work on one partition at once -------
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _lock_path(layout: LakeLayout, site_id: str, day: str) -> Path:
    return Path(layout.base) / ".locks" / f"site_id={site_id}" / f"dt={day}.lock"


@contextlib.contextmanager
def partition_lock(layout: LakeLayout, site_id: str, day: str) -> Iterator[None]:
    """Exclusive lock on one events partition, across threads and processes (flock).
    A no-op for non-local lakes (their writers only ever add new objects)."""
    if not layout.is_local:
        yield
        return
    path = _lock_path(layout, site_id, day)
    key = str(path)
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(key, threading.Lock())
    with tlock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


# --- the atomic directory exchange -------------------------------------------------------------
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def exchange_dirs(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
    """Atomically swap two paths on one filesystem (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        raise CompactionUnsupported("renameat2 is not available in this C library")
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise CompactionUnsupported(f"this filesystem cannot exchange directories atomically ({os.strerror(err)})")
        raise OSError(err, f"renameat2({a}, {b}): {os.strerror(err)}")



def _staging_root(layout: LakeLayout) -> Path:
    return Path(layout.base) / ".staging"


def clean_staging(layout: LakeLayout, older_than_s: float = 0.0) -> int:
    """Remove what an interrupted compaction left under ``.staging``."""
    root = _staging_root(layout)
    if not root.exists():
        return 0
    n = 0
    now = time.time()
    for p in root.iterdir():
        try:
            if now - p.stat().st_mtime >= older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                n += 1
        except FileNotFoundError:
            pass
    return n


# --- compaction ---------------------------------------------------------------------------------
def compact_partition(layout: LakeLayout, site_id: str, day: str, *, min_files: int = 2,
                      target_file_rows: int = TARGET_FILE_ROWS) -> CompactionResult:
    """Merge the Parquet files of ``events/site_id=<site_id>/dt=<day>`` into large ones."""
    t0 = time.perf_counter()
    if not layout.is_local:
        raise CompactionUnsupported(f"compaction needs a local lake, not {layout.root}")
    part = Path(layout.partition_dir(site_id, day))
    with partition_lock(layout, site_id, day):
        files = [Path(p) for p in layout.partition_files(site_id, day)]
        if len(files) < max(min_files, 2):
            return CompactionResult(site_id, day, len(files), len(files), 0, time.perf_counter() - t0)
        tables = [pq.read_table(f) for f in files]
        rows = sum(t.num_rows for t in tables)
        merged = pa.concat_tables(tables, promote_options="default")
        if "timestamp" in merged.column_names:
            merged = merged.sort_by("timestamp")
        staging = _staging_root(layout) / uuid.uuid4().hex
        new_part = staging / part.name
        new_part.mkdir(parents=True)
        try:
            written = 0
            n_files = 0
            for start in range(0, max(merged.num_rows, 1), target_file_rows):
                chunk = merged.slice(start, target_file_rows)
                publish_parquet(chunk, layout.fs, str(new_part / new_file_name("compact")))
                written += chunk.num_rows
                n_files += 1
            check = sum(pq.ParquetFile(p).metadata.num_rows for p in new_part.glob("*.parquet"))
            if check != rows or written != rows:
                raise RuntimeError(f"compaction of {part} wrote {check} rows, expected {rows}")
            fsync_dir(new_part, strict=True)
            fsync_dir(staging, strict=True)
            exchange_dirs(new_part, part)  # the one step readers can observe
            fsync_dir(part.parent, strict=True)
            fsync_dir(staging, strict=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # after the swap: the old small files
    return CompactionResult(site_id, day, len(files), n_files, rows, time.perf_counter() - t0)


def closed_partitions(layout: LakeLayout, *, now_ms: int | None = None, quiet_s: float = 600.0,
                      min_files: int = 2) -> list[tuple[str, str]]:
    """(site, day) partitions worth compacting: a past UTC day, at least ``min_files`` files,
    none written in the last ``quiet_s`` seconds (late events have stopped)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    today = day_of(now_ms)
    root = Path(layout.events_dir())
    out: list[tuple[str, str]] = []
    if not root.exists():
        return out
    for site_dir in sorted(root.glob("site_id=*")):
        site_id = site_dir.name[len("site_id="):]
        for day in layout.site_partitions(site_id):
            if day >= today:
                continue
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                continue
            files = layout.partition_files(site_id, day)
            if len(files) < max(min_files, 2):
                continue
            newest = max(os.stat(f).st_mtime for f in files)
            if time.time() - newest >= quiet_s:  # file times are wall-clock
                out.append((site_id, day))
    return out
