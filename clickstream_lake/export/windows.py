"""Export windows: fixed, epoch-aligned time ranges whose start names the exported object.

A window is ``[start_ms, end_ms)`` with ``start_ms`` a multiple of the window length, so the
object key depends only on the data's time, never on when the export ran.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from clickstream_lake.lake import day_of


@dataclass(frozen=True, order=True)
class Window:
    start_ms: int
    end_ms: int

    @property
    def stamp(self) -> str:
        """``20260310T140000Z``: the window start as it appears in object keys."""
        return format_stamp(self.start_ms)

    @property
    def day(self) -> str:
        """The UTC day of the window start: the ``<YYYY-MM-DD>`` folder of its objects."""
        return day_of(self.start_ms)

    def days(self) -> list[str]:
        """Lake ``dt`` partitions that can hold rows of this window."""
        out = []
        d = dt.date.fromisoformat(day_of(self.start_ms))
        last = dt.date.fromisoformat(day_of(self.end_ms - 1))
        while d <= last:
            out.append(d.isoformat())
            d += dt.timedelta(days=1)
        return out

    def object_name(self, seq: int) -> str:
        """``events_<stamp>.parquet`` for the first object, ``events_<stamp>_late<seq>.parquet`` after."""
        return f"events_{self.stamp}.parquet" if seq == 0 else f"events_{self.stamp}_late{seq}.parquet"


def format_stamp(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def check_window_s(window_s: int) -> int:
    if window_s < 60 or 86_400 % window_s != 0:
        raise ValueError(f"export window of {window_s}s must be at least 60s and divide a day (e.g. 900, 3600, 86400)")
    return window_s


def align_down(ts_ms: int, window_s: int) -> int:
    w = window_s * 1000
    return ts_ms - ts_ms % w


def align_up(ts_ms: int, window_s: int) -> int:
    w = window_s * 1000
    return -(-ts_ms // w) * w


def windows_between(start_ms: int, end_ms: int, window_s: int) -> Iterator[Window]:
    """Whole windows covering ``[start_ms, end_ms)``; start is aligned down, end is aligned down
    too (a window is only produced once it lies entirely before ``end_ms``)."""
    w = window_s * 1000
    s = align_down(start_ms, window_s)
    stop = align_down(end_ms, window_s)
    while s < stop:
        yield Window(s, s + w)
        s += w


def parse_time(value: str | int | float | dt.datetime | None) -> int | None:
    """ms since epoch from an ISO-8601 string (``2026-03-10``, ``2026-03-10T14:00Z``), a
    datetime, or a number (seconds if below 1e11, else ms)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        d = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(d.timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value * 1000) if value < 1e11 else int(value)
    s = str(value).strip()
    try:
        num = float(s)
    except ValueError:
        pass
    else:
        return parse_time(num)
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    try:
        d = dt.datetime.fromisoformat(s)
    except ValueError as e:
        raise ValueError(f"cannot read {value!r} as a time: use ISO 8601, e.g. 2026-03-10 or 2026-03-10T14:00Z") from e
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return int(d.timestamp() * 1000)
