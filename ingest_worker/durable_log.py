"""The append-only log on disk: an event is acknowledged only once it is here.

Records are framed as ``<u32 length><u32 crc32><payload>``; a torn tail (a crash in the
middle of a write) fails its length or checksum and is ignored on replay, so only whole
records that were fsynced count.  The log is a sequence of *segments*
(``log/seg-000000000042.log``): the writer appends to the newest one; the flusher closes it
(:meth:`DurableLog.rotate`), turns the closed segments into Parquet and deletes them.

Group commit: :meth:`DurableLog.append` queues the encoded records and waits; one writer
task takes everything queued since the last write, writes it with one ``write`` and one
``fsync`` (in a dedicated thread, so the event loop keeps accepting requests meanwhile) and
wakes every waiter.  Under load many requests share one fsync.  A *small* group (at most
``inline_bytes``: one or a few single events, i.e. a lightly loaded worker) is written and
fsynced on the event loop's own thread instead: a lightly loaded loop loses little by
waiting for the disk, and it saves the hand-offs to and from the log thread -- each one a
wait for the GIL behind whatever Python code is running.  If the write or the fsync
fails (disk full, permissions, file size limit) every waiter of that group gets
:class:`LogWriteError` -- the caller answers 503 and acknowledges nothing -- and the
segment is cut back to its last good length so no half-group is ever replayed.

The queue is bounded in bytes: when the disk cannot keep up, :class:`LogOverloaded` is
raised at once instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from clickstream_lake.lake import fsync_dir

_HEADER = struct.Struct("<II")
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".log"
MAX_RECORD_BYTES = 64 * 1024 * 1024


class LogWriteError(OSError):
    """The log could not store the records: nothing of the group is acknowledged."""


class LogOverloaded(RuntimeError):
    """More bytes are waiting for the disk than the queue allows."""


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_segment(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The whole records of a segment, in order; stops at the first torn or corrupt one."""
    data = Path(path).read_bytes()
    pos, end = 0, len(data)
    while pos + _HEADER.size <= end:
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if length > MAX_RECORD_BYTES or start + length > end:
            return
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            return
        yield payload
        pos = start + length


def segment_id(path: Path) -> int:
    return int(path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)])


def list_segments(directory: Path) -> list[Path]:
    segs = [
        p
        for p in directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")
        if p.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)].isdigit()
    ]
    return sorted(segs, key=segment_id)



@dataclass
class LogStats:
    groups: int = 0  # fsyncs done
    records: int = 0
    bytes: int = 0
    failures: int = 0
    last_fsync_s: float = 0.0


class DurableLog:
    """Segmented append-only log with group commit.  Use from one event loop."""

    def __init__(self, directory: str | os.PathLike[str], *, max_pending_bytes: int = 64 * 1024 * 1024,
                 max_backlog_bytes: int = 1024 * 1024 * 1024, fsync: bool = True,
                 observe_group: Callable[[float], None] | None = None, inline_bytes: int = 0):
        self.dir = Path(directory)
        self.max_pending_bytes = max_pending_bytes
        self.max_backlog_bytes = max_backlog_bytes  # on disk, not yet flushed to Parquet
        self.backlog_bytes = 0  # closed segments waiting for the flusher (updated on rotation)
        self.fsync = fsync
        self.observe_group = observe_group  # called with each group commit's write+fsync seconds
        self.inline_bytes = inline_bytes  # groups up to this size are written on the loop's thread
        self.stats = LogStats()
        self._pending: list[bytes] = []
        self._pending_records = 0
        self._pending_bytes = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-log")
        self._rotating = False  # a rotation runs in the log thread: no inline write meanwhile
        self._fd: int | None = None
        self._seg_id = 0
        self._good_size = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> list[Path]:
        """Create the directory and a fresh segment; returns the segments left from before
        (not yet flushed: the flusher replays them)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        leftovers = list_segments(self.dir)
        self._seg_id = (segment_id(leftovers[-1]) + 1) if leftovers else 1
        self._open_segment()
        return leftovers

    def _segment_path(self, seg_id: int) -> Path:
        return self.dir / f"{SEGMENT_PREFIX}{seg_id:012d}{SEGMENT_SUFFIX}"

    def _open_segment(self) -> None:
        path = self._segment_path(self._seg_id)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._good_size = os.fstat(self._fd).st_size
        if self.fsync:
            fsync_dir(self.dir, strict=True)

    async def start(self) -> None:
        if self._fd is None:
            self.open()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._writer(), name="durable-log-writer")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._io.shutdown(wait=True)

    # -- appending ------------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    async def append(self, payloads: list[bytes]) -> None:
        """Store ``payloads`` durably; returns once they are fsynced (with others' records).

        Raises :class:`LogOverloaded` when the queue is full and :class:`LogWriteError` when
        the disk refused them; in both cases none of ``payloads`` is stored.
        """
        if not payloads:
            return
        if self._closed or self._wakeup is None:
            raise LogWriteError("the log is not open")
        parts: list[bytes] = []  # frame(p) for each, without copying each payload twice
        pack, crc32 = _HEADER.pack, zlib.crc32
        for p in payloads:
            parts.append(pack(len(p), crc32(p)))
            parts.append(p)
        framed = b"".join(parts)
        if self._pending_bytes + len(framed) > self.max_pending_bytes:
            raise LogOverloaded(f"{self._pending_bytes} bytes already wait for the disk")
        on_disk = self.backlog_bytes + self._good_size + self._pending_bytes
        if on_disk + len(framed) > self.max_backlog_bytes:
            raise LogOverloaded(f"{on_disk} bytes of log wait for the flusher")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(framed)
        self._pending_records += len(payloads)
        self._pending_bytes += len(framed)
        self._waiters.append(fut)
        self._wakeup.set()
        await fut

    async def _writer(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                if self._closed:
                    return
                continue
            data = b"".join(self._pending)
            waiters, records = self._waiters, self._pending_records
            self._pending, self._waiters = [], []
            self._pending_records = 0
            self._pending_bytes = 0
            try:
                if len(data) <= self.inline_bytes and not self._rotating:
                    elapsed = self._write_group(data)
                else:
                    elapsed = await loop.run_in_executor(self._io, self._write_group, data)
            except OSError as e:
                self.stats.failures += 1
                err = LogWriteError(e.errno, f"durable log write failed: {e.strerror or e}")
                for w in waiters:
                    if not w.done():
                        w.set_exception(err)
                continue
            self.stats.groups += 1
            self.stats.records += records
            self.stats.bytes += len(data)
            self.stats.last_fsync_s = elapsed
            if self.observe_group is not None:
                self.observe_group(elapsed)
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _write_group(self, data: bytes) -> float:
        """One write, one fsync: in the log's own thread, or on the loop's for a small group."""
        t0 = time.perf_counter()
        if self._fd is None:  # a failed rotation left no segment open: try again now
            self._open_segment()
        fd = self._fd
        assert fd is not None
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(fd)
        except OSError:
            try:  # cut the half-written group off so replay never sees it
                os.ftruncate(fd, self._good_size)
            except OSError:
                pass
            raise
        self._good_size += len(data)
        return time.perf_counter() - t0

    # -- rotation (used by the flusher) ----------------------------------------------------------
    async def rotate(self) -> list[Path]:
        """Close the current segment and open the next; returns every closed segment
        (oldest first) -- what the flusher may now turn into Parquet."""
        loop = asyncio.get_running_loop()
        self._rotating = True
        try:
            return await loop.run_in_executor(self._io, self._rotate)
        finally:
            self._rotating = False

    def _rotate(self) -> list[Path]:
        if self._fd is not None and self._good_size == 0:
            # nothing written since the last rotation: keep the empty segment
            return [p for p in list_segments(self.dir) if segment_id(p) < self._seg_id]
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._seg_id += 1
        try:
            self._open_segment()
        except OSError:
            self._fd = None  # the next write retries the open and fails its group with 503
        closed = [p for p in list_segments(self.dir) if segment_id(p) < self._seg_id]
        self.backlog_bytes = sum(p.stat().st_size for p in closed if p.exists())
        return closed
