"""Result cache (the source article's Cache API): TTL per entry, single-flight, bounded.

Keyed by (site, normalised query): the SQL regenerated from the checked tree, so queries
that differ only in whitespace, comments or keyword case share an entry.  Concurrent
identical queries wait for the first one instead of hitting the lake again.  Bounded by
entry count and by total result bytes (least recently used evicted first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


@dataclass
class Entry:
    value: Any
    stored_at: float
    expires_at: float
    size: int


class ResultCache:
    def __init__(self, *, max_entries: int = 1024, max_bytes: int = 256 * 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._inflight: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> tuple[Any, float] | None:
        """(value, age in seconds) of a fresh entry, else None."""
        now = self.clock()
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                return None
            if now >= e.expires_at:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return e.value, now - e.stored_at

    def get_or_compute(self, key: Hashable, ttl: float, compute: Callable[[], Any],
                       size_of: Callable[[Any], int] = lambda v: 0) -> tuple[Any, bool, float]:
        """(value, hit, age).  Only one caller computes a missing key; the others wait for it."""
        hit = self.get(key)
        if hit is not None:
            return hit[0], True, hit[1]
        with self._lock:
            fut = self._inflight.get(key)
            leader = fut is None
            if leader:
                fut = Future()
                self._inflight[key] = fut
        if not leader:
            value = fut.result()
            return value, True, 0.0
        try:
            value = compute()
        except BaseException as e:
            with self._lock:
                self._inflight.pop(key, None)
            fut.set_exception(e)
            raise
        if ttl > 0:
            self.put(key, value, ttl, size_of(value))
        with self._lock:
            self._inflight.pop(key, None)
        fut.set_result(value)
        return value, False, 0.0

    def put(self, key: Hashable, value: Any, ttl: float, size: int = 0) -> None:
        if size > self.max_bytes:
            return
        now = self.clock()
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = Entry(value, now, now + ttl, size)
            self.bytes += size
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                old = next(iter(self._entries))
                self._drop(old)

    def invalidate(self, predicate: Callable[[Hashable], bool]) -> int:
        with self._lock:
            keys = [k for k in self._entries if predicate(k)]
            for k in keys:
                self._drop(k)
            return len(keys)

    def _drop(self, key: Hashable) -> None:
        e = self._entries.pop(key)
        self.bytes -= e.size
