"""Compaction swaps a partition's small files for a merged one while a reader counts rows in
a loop: every count it completes equals the true total (never a gap, never a double)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from clickstream_lake import codec
from clickstream_lake.compaction import closed_partitions, compact_partition, partition_lock
from clickstream_lake.lake import LakeLayout, new_file_name, publish_parquet

DAY0_MS = 1_763_000_000_000  # 2025-11-13


def _write_small_files(lake: LakeLayout, site: str, day_index: int, n_files: int, rows_per_file: int) -> int:
    ts = DAY0_MS + day_index * 86_400_000
    day = codec_day(ts)
    for f in range(n_files):
        rows = [codec.encode({"timestamp": ts + f * 1000 + r, "site_id": site, "event_id": f"{day_index}-{f}-{r}",
                              "event_type": "click"}) for r in range(rows_per_file)]
        publish_parquet(codec.rows_to_table(rows), lake.fs, f"{lake.partition_dir(site, day)}/{new_file_name('flush')}")
    return n_files * rows_per_file


def codec_day(ts: int) -> str:
    from clickstream_lake.lake import day_of

    return day_of(ts)


def _count(con: duckdb.DuckDBPyConnection, glob: str) -> int:
    return con.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]


def test_compaction_merges_and_keeps_every_row(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")
    total = _write_small_files(lake, "s1", 0, 20, 50)
    day = lake.site_partitions("s1")[0]
    res = compact_partition(lake, "s1", day)
    assert (res.files_before, res.files_after, res.rows) == (20, 1, total)
    files = lake.partition_files("s1", day)
    assert len(files) == 1
    ids = pq.read_table(files[0], columns=["blob18"]).column(0).to_pylist()
    assert len(ids) == len(set(ids)) == total
    assert not list((Path(lake.base) / ".staging").iterdir())  # the old directory is gone
    # nothing to do twice
    assert compact_partition(lake, "s1", day).files_after == 1


def test_closed_partitions_are_past_quiet_days(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")
    _write_small_files(lake, "s1", 0, 3, 2)
    _write_small_files(lake, "s1", 1, 1, 2)  # a single file: nothing to merge
    now_ms = DAY0_MS + 10 * 86_400_000
    assert closed_partitions(lake, now_ms=now_ms, quiet_s=0) == [("s1", codec_day(DAY0_MS))]
    assert closed_partitions(lake, now_ms=int(time.time() * 1000), quiet_s=3600) == []  # just written


def test_concurrent_reader_never_sees_a_half_done_swap(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")
    days = 6
    total = sum(_write_small_files(lake, "s1", d, 25, 40) for d in range(days))
    glob = f"{lake.events_dir('s1')}/*/*.parquet"
    counts: list[int] = []
    retries = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal retries
        con = duckdb.connect()
        while not stop.is_set():
            try:
                counts.append(_count(con, glob))
            except duckdb.Error as e:  # listed before the swap, opened after: retry, never a wrong count
                assert "No such file" in str(e) or "not found" in str(e).lower() or "No files" in str(e), e
                retries += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    before = len(counts)
    for day in lake.site_partitions("s1"):
        compact_partition(lake, "s1", day)
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert all(len(lake.partition_files("s1", d)) == 1 for d in lake.site_partitions("s1"))
    assert len(counts) - before > days, "the readers should have counted while compaction ran"
    wrong = [c for c in counts if c != total]
    assert not wrong, f"{len(wrong)} of {len(counts)} counts were wrong (e.g. {wrong[:5]}), expected {total}"
    print(f"{len(counts)} consistent counts, {retries} retried reads")


def test_partition_lock_excludes_a_concurrent_writer(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")
    _write_small_files(lake, "s1", 0, 5, 5)
    day = lake.site_partitions("s1")[0]
    order: list[str] = []

    def writer() -> None:
        with partition_lock(lake, "s1", day):
            order.append("writer")

    with partition_lock(lake, "s1", day):
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.1)
        order.append("holder")
    t.join()
    assert order == ["holder", "writer"]


@pytest.mark.parametrize("bad", ["../x", "2025-13-01"])
def test_bad_partition_names_are_refused(tmp_path, bad):
    lake = LakeLayout.local(tmp_path / "lake")
    with pytest.raises(ValueError):
        compact_partition(lake, bad if bad.startswith("..") else "s1", bad if not bad.startswith("..") else "2025-01-01")
