"""Reading one site's rows out of the internal lake, window by window.

Only ``events/site_id=<site>/dt=<day>/`` partitions overlapping a window are listed and
read - an export for one site never opens another site's files.  Day tables are cached
(the last few days), so a backfill walking hour by hour reads each partition once; the
late-row check only reads the ``timestamp`` column.
"""

from __future__ import annotations

from collections import OrderedDict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from clickstream_lake.codec import ROW_SCHEMA
from clickstream_lake.export.windows import Window
from clickstream_lake.lake import LakeLayout, check_site_id

_TS = ROW_SCHEMA.field("timestamp").type
_KEY_FALLBACK_COLUMNS = ("blob2", "blob3", "blob4", "blob5")
KEY_COLUMNS = ["timestamp", *_KEY_FALLBACK_COLUMNS, "blob18"]


class SiteLakeReader:
    def __init__(self, lake: LakeLayout, site_id: str, cache_days: int = 3):
        self.lake = lake
        self.site_id = check_site_id(site_id)
        self.cache_days = cache_days
        # a local lake is read through Arrow's native filesystem (the fsspec wrapper is ~5x slower)
        self._fs = pafs.LocalFileSystem() if lake.is_local else lake.fs
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._keys: OrderedDict[str, pa.Table] = OrderedDict()

    def days(self) -> list[str]:
        return self.lake.site_partitions(self.site_id)

    def earliest_ms(self) -> int | None:
        for day in self.days():
            ts = self._day_timestamps(day)
            if len(ts):
                return int(pc.min(ts).cast(pa.int64()).as_py())
        return None

    def _files(self, day: str) -> list[str]:
        return self.lake.partition_files(self.site_id, day)

    def _dataset(self, day: str) -> pads.Dataset | None:
        files = self._files(day)
        if not files:
            return None
        return pads.dataset(files, format="parquet", filesystem=self._fs, schema=ROW_SCHEMA)

    def _day_table(self, day: str) -> pa.Table:
        if day in self._tables:
            self._tables.move_to_end(day)
            return self._tables[day]
        ds = self._dataset(day)
        table = ds.to_table() if ds is not None else ROW_SCHEMA.empty_table()
        self._tables[day] = table
        while len(self._tables) > self.cache_days:
            self._tables.popitem(last=False)
        return table

    def _day_key_columns(self, day: str) -> pa.Table:
        """The columns a row key is made of (timestamp, blob18 and the fallback columns)."""
        if day in self._tables:
            return self._tables[day].select(KEY_COLUMNS)
        if day in self._keys:
            self._keys.move_to_end(day)
            return self._keys[day]
        ds = self._dataset(day)
        table = ds.to_table(columns=KEY_COLUMNS) if ds is not None else ROW_SCHEMA.empty_table().select(KEY_COLUMNS)
        self._keys[day] = table
        while len(self._keys) > self.cache_days * 4:
            self._keys.popitem(last=False)
        return table

    def _day_timestamps(self, day: str) -> pa.Array:
        return self._day_key_columns(day).column("timestamp").combine_chunks()

    def distinct_keys(self, w: Window) -> int:
        """How many distinct rows (by :func:`row_keys`) the lake holds for the window: what the
        late-row check compares.  Unlike a plain row count it does not move when a retried
        event lands twice or when compaction drops such a duplicate."""
        lo, hi = pa.scalar(w.start_ms, type=_TS), pa.scalar(w.end_ms, type=_TS)
        parts = []
        for day in w.days():
            t = self._day_key_columns(day)
            if t.num_rows:
                ts = t.column("timestamp")
                parts.append(t.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))))
        if not parts:
            return 0
        window = pa.concat_tables(parts)
        return pc.count_distinct(row_keys(window)).as_py() if window.num_rows else 0

    def rows(self, w: Window) -> pa.Table:
        """The site's rows with ``start <= timestamp < end``, in (timestamp, event id) order."""
        lo, hi = pa.scalar(w.start_ms, type=_TS), pa.scalar(w.end_ms, type=_TS)
        parts = []
        for day in w.days():
            t = self._day_table(day)
            ts = t.column("timestamp")
            parts.append(t.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))))
        table = pa.concat_tables(parts) if parts else ROW_SCHEMA.empty_table()
        return table.sort_by([("timestamp", "ascending"), ("blob18", "ascending")])


def row_keys(table: pa.Table) -> pa.Array:
    """The identity of a row: its event id (blob18); for a row without one, its time, visitor,
    session, type and URL.  This is what "already exported" is decided on."""
    eid = pc.fill_null(table.column("blob18"), "").combine_chunks()
    if table.num_rows == 0 or not pc.any(pc.equal(eid, "")).as_py():
        return eid
    ts = pc.cast(pc.cast(table.column("timestamp"), pa.int64()), pa.string())
    parts = [ts] + [pc.fill_null(table.column(c), "") for c in _KEY_FALLBACK_COLUMNS]
    fallback = pc.binary_join_element_wise(pa.array(["row"] * table.num_rows), *parts, "|")
    return pc.if_else(pc.equal(eid, ""), fallback.combine_chunks() if hasattr(fallback, "combine_chunks") else fallback, eid)


def new_rows(table: pa.Table, exported: set[str]) -> tuple[pa.Table, pa.Array]:
    """Rows of ``table`` whose key is not in ``exported``, each key once (first occurrence)."""
    keys = row_keys(table)
    if table.num_rows == 0:
        return table, keys
    if exported:
        mask = pc.invert(pc.is_in(keys, value_set=pa.array(list(exported), type=pa.string())))
        table, keys = table.filter(mask), keys.filter(mask)
    if table.num_rows and pc.count_distinct(keys).as_py() != table.num_rows:
        index = pa.table({"k": keys, "i": pa.array(range(table.num_rows), type=pa.int64())})
        first = index.group_by("k").aggregate([("i", "min")]).column("i_min")
        idx = pc.sort_indices(first)
        idx = pc.take(first, idx)
        table, keys = table.take(idx), keys.take(idx)
    return table, keys
