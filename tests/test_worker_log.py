"""The durable log and the flusher, in process: group commit, torn tails, a disk that
refuses writes, and exactly-once replay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clickstream_lake import codec
from clickstream_lake.lake import LakeLayout
from ingest_worker.durable_log import DurableLog, LogWriteError, frame, list_segments, read_segment
from ingest_worker.flusher import EVENT_ID_COLUMN, Flusher, event_record, flush_segments
from ingest_worker.quarantine import QuarantineEntry, quarantine_record, read_quarantine

DAY_MS = 1_764_000_000_000  # 2025-11-24


def _row(site: str, event_id: str, ts: int = DAY_MS) -> codec.AERow:
    return codec.encode({"timestamp": ts, "site_id": site, "event_id": event_id, "event_type": "page_view",
                         "url": "/p", "intent": 42.0})


def _lake_ids(lake: LakeLayout, site: str) -> list[str]:
    files = sorted(Path(lake.events_dir(site)).glob("dt=*/*.parquet"))
    return [v for f in files for v in pq.read_table(f, columns=[EVENT_ID_COLUMN]).column(0).to_pylist()]


# 0: every group is written by the log thread; 1 MiB: every group on the loop's thread
BOTH_WRITE_PATHS = pytest.mark.parametrize("inline_bytes", [0, 1 << 20], ids=["thread", "inline"])


@BOTH_WRITE_PATHS
def test_group_commit_shares_fsyncs_and_keeps_every_record(tmp_path, inline_bytes):
    async def main():
        log = DurableLog(tmp_path / "log", inline_bytes=inline_bytes)
        await log.start()
        await asyncio.gather(*(log.append([f"rec-{i}".encode()]) for i in range(500)))
        await log.close()
        return log

    log = asyncio.run(main())
    assert log.stats.records == 500
    assert log.stats.groups < 500, "concurrent appends should share fsyncs"
    payloads = [p for seg in list_segments(tmp_path / "log") for p in read_segment(seg)]
    assert sorted(payloads) == sorted(f"rec-{i}".encode() for i in range(500))


def test_inline_groups_and_rotations_interleave_without_losing_or_repeating_a_record(tmp_path):
    """Small groups go inline, big ones to the log thread, while rotations run in that thread:
    every acknowledged record is in exactly one segment, whole.  Twelve waves, each a rotation
    started among fifty appends (so the outcome does not hang on the machine's speed)."""

    async def main():
        log = DurableLog(tmp_path / "log", inline_bytes=256)
        await log.start()
        closed: set[Path] = set()

        async def rotate():
            closed.update(await log.rotate())

        async def append(i: int):
            size = 20 if i % 3 else 400  # some groups fit inline, some do not
            await log.append([f"rec-{i:04d}-".encode() + b"x" * size])

        for wave in range(12):
            first = wave * 50
            await asyncio.gather(*(append(i) for i in range(first, first + 25)), rotate(),
                                 *(append(i) for i in range(first + 25, first + 50)))
        await log.close()
        return log, closed

    log, closed = asyncio.run(main())
    assert len(closed) >= 11, "each wave after the first should have closed a segment"
    payloads = [p for seg in list_segments(tmp_path / "log") for p in read_segment(seg)]
    assert sorted(p[:8] for p in payloads) == [f"rec-{i:04d}".encode() for i in range(600)]
    assert log.stats.records == 600


def test_torn_tail_is_ignored(tmp_path):
    seg = tmp_path / "seg-000000000001.log"
    whole = frame(b"one") + frame(b"two")
    seg.write_bytes(whole + frame(b"three-torn")[:-3])
    assert list(read_segment(seg)) == [b"one", b"two"]
    corrupt = bytearray(whole)
    corrupt[-1] ^= 0xFF  # checksum of the second record no longer matches
    seg.write_bytes(bytes(corrupt))
    assert list(read_segment(seg)) == [b"one"]


@BOTH_WRITE_PATHS
def test_disk_full_fails_the_group_and_stores_nothing_unacknowledged(tmp_path, inline_bytes):
    """A real refused write: RLIMIT_FSIZE makes write() fail with EFBIG like a full disk."""
    script = textwrap.dedent(f"""
        import asyncio, json, resource, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from ingest_worker.durable_log import DurableLog, LogWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        async def main():
            log = DurableLog({str(tmp_path / 'log')!r}, inline_bytes={inline_bytes})
            await log.start()
            acked, refused = [], []
            for i in range(100):
                try:
                    await log.append([("event-%03d-" % i).encode() + b"x" * 500])
                    acked.append(i)
                except LogWriteError as e:
                    refused.append(i)
            await log.close()
            print(json.dumps({{"acked": acked, "refused": refused}}))
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["refused"], "the size limit should have refused some writes"
    stored = [p for seg in list_segments(tmp_path / "log") for p in read_segment(seg)]
    stored_ids = sorted(int(p[6:9]) for p in stored)
    assert stored_ids == result["acked"]


@BOTH_WRITE_PATHS
def test_write_error_surfaces_as_log_write_error(tmp_path, inline_bytes):
    async def main():
        log = DurableLog(tmp_path / "log", inline_bytes=inline_bytes)
        await log.start()
        await log.append([b"ok"])
        import os

        os.close(log._fd)  # the file descriptor goes bad under the writer
        log._fd = os.open(tmp_path / "log" / "readonly", os.O_RDONLY | os.O_CREAT)
        try:
            await log.append([b"lost"])
        except LogWriteError:
            return True
        return False

    assert asyncio.run(main())


def test_flush_publishes_partitions_and_quarantine(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")
    seg = tmp_path / "seg-000000000001.log"
    q = QuarantineEntry(site_id="a", received_ms=DAY_MS, reason="invalid_json", error="bad json", status=400,
                        raw=b"{nope")
    seg.write_bytes(b"".join(frame(p) for p in [
        event_record(_row("a", "e1")), event_record(_row("b", "e2")),
        event_record(_row("a", "e3", DAY_MS + 86_400_000)), event_record(_row("a", "e1")),  # retry in log
        quarantine_record(q),
    ]))
    res = flush_segments([seg], lake, dedupe_against_lake=False)
    assert (res.events, res.quarantined, res.duplicates) == (3, 1, 1)
    assert sorted(_lake_ids(lake, "a")) == ["e1", "e3"]
    assert _lake_ids(lake, "b") == ["e2"]
    assert lake.site_partitions("a") == ["2025-11-24", "2025-11-25"]
    qt = read_quarantine(lake, "a").to_pylist()
    assert [(r["reason"], r["payload"], r["status"]) for r in qt] == [("invalid_json", "{nope", 400)]
    meta = pq.ParquetFile(next(Path(lake.events_dir("a")).glob("dt=*/*.parquet"))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_replay_after_crash_between_publish_and_truncate_never_duplicates(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")
    logdir = tmp_path / "log"
    logdir.mkdir()
    seg = logdir / "seg-000000000001.log"
    seg.write_bytes(b"".join(frame(event_record(_row("a", f"e{i}"))) for i in range(50)))
    flush_segments([seg], lake, dedupe_against_lake=False)  # published, then "crash": segment kept
    seg.write_bytes(seg.read_bytes() + b"".join(frame(event_record(_row("a", f"e{i}"))) for i in range(50, 60)))

    log = DurableLog(logdir)
    leftovers = log.open()
    assert leftovers == [seg]
    res = Flusher(log, lake).replay(leftovers)
    assert res.duplicates == 50 and res.events == 10
    ids = _lake_ids(lake, "a")
    assert sorted(ids) == sorted(f"e{i}" for i in range(60))
    assert not seg.exists()


def test_flusher_loop_makes_events_visible(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")

    async def main():
        log = DurableLog(tmp_path / "log")
        log.open()
        await log.start()
        flusher = Flusher(log, lake, interval=0.05)
        await flusher.start()
        await log.append([event_record(_row("a", "visible-1"))])
        for _ in range(100):
            if _lake_ids(lake, "a"):
                break
            await asyncio.sleep(0.02)
        await flusher.stop()
        await log.close()

    asyncio.run(main())
    assert _lake_ids(lake, "a") == ["visible-1"]
    assert not list_segments(tmp_path / "log") or all(
        not list(read_segment(s)) for s in list_segments(tmp_path / "log"))


def test_failed_append_raises_when_log_closed(tmp_path):
    async def main():
        log = DurableLog(tmp_path / "log")
        await log.start()
        await log.close()
        try:
            await log.append([b"late"])
        except LogWriteError:
            return True
        return False

    assert asyncio.run(main())


def test_row_values_records_are_packed_by_the_flusher_exactly_like_the_codec(tmp_path):
    lake = LakeLayout.local(tmp_path / "lake")
    values = {"timestamp": DAY_MS, "site_id": "a", "event_id": "v1", "event_type": "click", "url": "/a|b%c",
              "utm_source": "x|y", "intent": 12.5, "lat": None, "session_number": 3, "title": "caf\u00e9"}
    odd = {**values, "event_id": "v2", "title": "\ud800lone"}  # orjson refuses it: encoded at once
    seg = tmp_path / "seg-000000000001.log"
    seg.write_bytes(frame(event_record(values)) + frame(event_record(odd)))
    assert event_record(odd).startswith(b'["e"')
    res = flush_segments([seg], lake, dedupe_against_lake=False)
    assert res.events == 2 and res.corrupt_records == 0
    files = sorted(Path(lake.events_dir("a")).glob("dt=*/*.parquet"))
    rows = {r.blobs[17]: r for f in files for r in codec.table_to_rows(pq.read_table(f))}
    expected = codec.encode(values)
    assert rows["v1"].blobs == expected.blobs and rows["v1"].timestamp == expected.timestamp
    assert rows["v1"].doubles[0] == 12.5
    assert rows["v2"].blobs[10] == "\ufffdlone"


def test_backlog_bound_refuses_instead_of_growing_without_limit(tmp_path):
    from ingest_worker.durable_log import LogOverloaded

    async def main():
        log = DurableLog(tmp_path / "log", max_backlog_bytes=2_000)
        await log.start()
        await log.append([b"x" * 1_500])
        await log.rotate()  # closed, not flushed: 1.5 KB of backlog
        await log.append([b"y" * 100])
        try:
            await log.append([b"z" * 1_000])
        except LogOverloaded:
            refused = True
        else:
            refused = False
        await log.close()
        return refused

    assert asyncio.run(main())
