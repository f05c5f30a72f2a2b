"""Customer lake export on local disk and memory: layout, metadata, exactly-once, late rows,
isolation, crash recovery, CLI and the serve-side schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import duckdb
import httpx
import pyarrow.parquet as pq
import pytest

from clickstream_lake.control.db import ControlDB
from clickstream_lake.export import ExportError, NamespaceCollision
from clickstream_lake.export.store import ExportStore
from clickstream_lake.export.windows import Window, parse_time, windows_between
from tests.export_helpers import HOUR, NOW, T0, enable, event_ids, exporter, make_rows, publish, read_objects


@pytest.fixture
def lake_ab(data_dir, tenants):
    """site_a: 3 events/min-ish over 00:00-06:30 (the last 30 min are in the open window);
    site_b: some rows in the same hours.  Both export-enabled, site_a under namespace 'alpha'."""
    rows_a = make_rows("site_a", T0 + 1_000, 390, 60_000, "a")  # one per minute, 6.5 hours
    rows_b = make_rows("site_b", T0 + 5_000, 100, 120_000, "b")
    publish(data_dir, "site_a", rows_a[:200])
    publish(data_dir, "site_a", rows_a[200:])
    publish(data_dir, "site_b", rows_b)
    enable(data_dir, "site_a", "alpha")
    enable(data_dir, "site_b")
    return rows_a, rows_b


def _url(data_dir):
    return f"file://{data_dir.path / 'export'}"


def test_export_writes_one_file_per_closed_window_with_metadata_and_manifest(data_dir, lake_ab):
    rows_a, _ = lake_ab
    ex = exporter(data_dir, _url(data_dir))
    report = ex.export_site("site_a")
    assert report.watermark_ms == T0 + 6 * HOUR
    objects = read_objects(ex.target, "alpha")
    expected_keys = [f"alpha/2026-03-10/events_20260310T{h:02d}0000Z.parquet" for h in range(6)]
    assert sorted(objects) == expected_keys
    # the open window (06:00-07:00) is not exported
    assert all("T06" not in k for k in objects)
    for key, table in objects.items():
        md = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        assert md["site-id"] == "site_a"
        assert int(md["event-count"]) == table.num_rows == 60
        assert md["exported-at"].endswith("Z")
        hour = int(key.split("T")[1][:2])
        ts = [t.timestamp() * 1000 for t in table.column("timestamp").to_pylist()]
        assert all(T0 + hour * HOUR <= t < T0 + (hour + 1) * HOUR for t in ts)
        assert table.schema.names == [f.name for f in __import__("clickstream_lake.codec").codec.ROW_SCHEMA]
    ids = event_ids(objects.values())
    assert sorted(ids) == sorted(r.blobs[17] for r in rows_a if r.timestamp < T0 + 6 * HOUR)
    manifest = json.loads((data_dir.path / "export/alpha/2026-03-10/_manifest.json").read_text())
    assert manifest["site_id"] == "site_a" and manifest["event_count"] == 360
    assert [f["key"] for f in manifest["files"]] == expected_keys
    assert all(f["event-count"] == 60 and f["kind"] == "window" for f in manifest["files"])


def test_reexport_writes_nothing_and_changes_nothing(data_dir, lake_ab):
    ex = exporter(data_dir, _url(data_dir))
    ex.export_site("site_a")
    root = data_dir.path / "export/alpha/2026-03-10"
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in root.iterdir()}
    again = exporter(data_dir, _url(data_dir)).export_site("site_a", since=T0)  # a backfill over it too
    assert again.rows == 0 and again.files == []
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in root.iterdir()}
    assert after == before
    # later: the open window closes and only it is exported
    later = exporter(data_dir, _url(data_dir), now=NOW + HOUR).export_site("site_a")
    assert later.files == ["alpha/2026-03-10/events_20260310T060000Z.parquet"] and later.rows == 30
    ids = event_ids(read_objects(ex.target, "alpha").values())
    assert len(ids) == len(set(ids)) == 390


def test_sites_are_isolated(data_dir, lake_ab):
    _, rows_b = lake_ab
    ex = exporter(data_dir, _url(data_dir))
    ex.export_site("site_a")
    ex.export_site("site_b")
    a = read_objects(ex.target, "alpha")
    b = read_objects(ex.target, "site_b")  # namespace falls back to the site id
    assert a and b
    assert {v for t in a.values() for v in t.column("index1").to_pylist()} == {"site_a"}
    assert {v for t in b.values() for v in t.column("index1").to_pylist()} == {"site_b"}
    assert sorted(event_ids(b.values())) == sorted(r.blobs[17] for r in rows_b if r.timestamp < T0 + 6 * HOUR)


def test_site_reader_never_opens_another_sites_partitions(data_dir, lake_ab, monkeypatch):
    from clickstream_lake.export import lake_reader

    opened = []
    real = lake_reader.pads.dataset

    def spy(files, **kw):
        opened.extend(files)
        return real(files, **kw)

    monkeypatch.setattr(lake_reader.pads, "dataset", spy)
    exporter(data_dir, _url(data_dir)).export_site("site_a")
    assert opened and all("/site_id=site_a/" in f for f in opened)


def test_crash_between_object_and_watermark_neither_duplicates_nor_skips(data_dir, lake_ab, monkeypatch):
    calls = {"n": 0}
    real = ExportStore.commit_file

    def failing_once(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # the third window's object is committed, its bookkeeping is not
            raise RuntimeError("simulated crash before the watermark commit")
        return real(self, *a, **kw)

    monkeypatch.setattr(ExportStore, "commit_file", failing_once)
    ex = exporter(data_dir, _url(data_dir))
    with pytest.raises(RuntimeError, match="simulated crash"):
        ex.export_site("site_a")
    store = ExportStore(ControlDB(data_dir.control_db), "site_a", f"{ex.target.identity}/alpha")
    assert store.watermark()[0] == T0 + 2 * HOUR  # windows 0 and 1 only
    assert (data_dir.path / "export/alpha/2026-03-10/events_20260310T020000Z.parquet").exists()

    rerun = exporter(data_dir, _url(data_dir)).export_site("site_a")
    statuses = {r.window.stamp: r.status for r in rerun.windows}
    assert statuses["20260310T020000Z"] == "adopted"
    assert store.watermark()[0] == T0 + 6 * HOUR
    objects = read_objects(ex.target, "alpha")
    assert len(objects) == 6
    ids = event_ids(objects.values())
    assert len(ids) == len(set(ids)) == 360
    files = store.files()
    assert [f.seq for f in files] == [0] * 6 and sum(f.event_count for f in files) == 360
    assert [f.adopted for f in files] == [False, False, True, False, False, False]


@pytest.mark.slow
def test_killed_exporter_process_then_rerun(data_dir, lake_ab):
    """A real exporter process dies (os._exit, no cleanup) right after committing an object."""
    url = _url(data_dir)
    script = textwrap.dedent(
        f"""
        import os
        from clickstream_lake.export.store import ExportStore
        from tests.export_helpers import exporter
        from clickstream_lake.settings import DataDir
        real = ExportStore.commit_file
        n = {{"n": 0}}
        def die(self, *a, **kw):
            n["n"] += 1
            if n["n"] == 4:
                os._exit(9)
            return real(self, *a, **kw)
        ExportStore.commit_file = die
        exporter(DataDir.resolve({str(data_dir.path)!r}), {url!r}).export_site("site_a")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    assert len(read_objects(exporter(data_dir, url).target, "alpha")) == 4
    exporter(data_dir, url).export_site("site_a")
    objects = read_objects(exporter(data_dir, url).target, "alpha")
    ids = event_ids(objects.values())
    assert len(objects) == 6 and len(ids) == len(set(ids)) == 360
    assert not [p for p in (data_dir.path / "export/alpha/2026-03-10").iterdir() if p.name.endswith(".tmp")]


def test_late_rows_land_in_a_follow_up_file(data_dir, lake_ab):
    ex = exporter(data_dir, _url(data_dir))
    ex.export_site("site_a")
    late = make_rows("site_a", T0 + 1 * HOUR + 30 * 60_000 + 7, 5, 1_000, "late")  # into window 01:00
    publish(data_dir, "site_a", late)
    report = exporter(data_dir, _url(data_dir)).export_site("site_a")
    assert report.files == ["alpha/2026-03-10/events_20260310T010000Z_late1.parquet"]
    objects = read_objects(ex.target, "alpha")
    late_table = objects["alpha/2026-03-10/events_20260310T010000Z_late1.parquet"]
    assert sorted(late_table.column("blob18").to_pylist()) == sorted(r.blobs[17] for r in late)
    md = late_table.schema.metadata
    assert md[b"event-count"] == b"5" and md[b"seq"] == b"1"
    # nothing new: nothing written; more late rows: _late2
    assert exporter(data_dir, _url(data_dir)).export_site("site_a").files == []
    publish(data_dir, "site_a", make_rows("site_a", T0 + 1 * HOUR + 5, 2, 1_000, "later"))
    assert exporter(data_dir, _url(data_dir)).export_site("site_a").files == [
        "alpha/2026-03-10/events_20260310T010000Z_late2.parquet"
    ]
    ids = event_ids(read_objects(ex.target, "alpha").values())
    assert len(ids) == len(set(ids)) == 367
    manifest = json.loads((data_dir.path / "export/alpha/2026-03-10/_manifest.json").read_text())
    assert [f["seq"] for f in manifest["files"] if f["window_start"].startswith("2026-03-10T01")] == [0, 1, 2]
    assert manifest["event_count"] == 367


def test_duplicate_event_ids_arriving_again_are_not_exported_twice(data_dir, lake_ab):
    rows_a, _ = lake_ab
    ex = exporter(data_dir, _url(data_dir))
    ex.export_site("site_a")
    publish(data_dir, "site_a", rows_a[65:70])  # a retried batch lands a second time
    first = exporter(data_dir, _url(data_dir)).export_site("site_a")
    assert first.files == [] and first.rows == 0
    second = exporter(data_dir, _url(data_dir)).export_site("site_a")
    assert all(r.status == "unchanged" for r in second.windows)
    ids = event_ids(read_objects(ex.target, "alpha").values())
    assert len(ids) == len(set(ids)) == 360


def test_duckdb_over_export_equals_duckdb_over_lake(data_dir, lake_ab):
    exporter(data_dir, _url(data_dir)).export_site("site_a")
    q = """SELECT blob4 AS type, url_decode(split_part(blob10, '|', 1)) AS country, count() AS n,
                  sum(_sample_interval) AS w, round(avg(double1), 6) AS intent, min(timestamp) AS first
           FROM {rel} WHERE timestamp < TIMESTAMPTZ '2026-03-10 06:00:00+00' GROUP BY ALL ORDER BY ALL"""
    con = duckdb.connect()
    lake = con.sql(q.format(rel=f"read_parquet('{data_dir.lake}/events/site_id=site_a/*/*.parquet')")).fetchall()
    exported = con.sql(q.format(rel=f"read_parquet('{data_dir.path}/export/alpha/*/events_*.parquet')")).fetchall()
    assert lake == exported and sum(r[2] for r in lake) == 360


def test_memory_target(data_dir, lake_ab):
    ex = exporter(data_dir, "memory://export-test-" + str(time.time_ns()))
    report = ex.export_site("site_a")
    assert len(report.files) == 6
    again = exporter(data_dir, ex.target.url).export_site("site_a")
    assert again.files == []
    objects = read_objects(ex.target, "alpha")
    assert len(objects) == 6 and len(set(event_ids(objects.values()))) == 360
    assert ex.target.object_metadata(ex.target.path(report.files[0]))["site-id"] == "site_a"


def test_put_if_absent_is_create_only_on_disk(tmp_path):
    from clickstream_lake.export import ExportTarget

    t = ExportTarget(f"file://{tmp_path}/x")
    p = t.path("ns/2026-03-10/a.parquet")
    assert t.put_if_absent(p, b"first", {}) is True
    assert t.put_if_absent(p, b"second", {}) is False
    assert open(p, "rb").read() == b"first"
    assert os.listdir(os.path.dirname(p)) == ["a.parquet"]


def test_disabled_site_is_skipped_unless_forced(data_dir, tenants):
    publish(data_dir, "site_a", make_rows("site_a", T0, 10, 60_000, "a"))
    ex = exporter(data_dir, _url(data_dir))
    report = ex.export_site("site_a")
    assert report.skipped and "parquet_export_enabled" in report.skipped and report.files == []
    assert ex.export_all() == []
    assert len(ex.export_site("site_a", force=True).files) == 1


def test_namespace_collision_is_refused(data_dir, lake_ab):
    enable(data_dir, "site_b", "alpha")
    with pytest.raises(NamespaceCollision, match="same export namespace"):
        exporter(data_dir, _url(data_dir)).export_site("site_a")


def test_changing_the_window_length_is_refused(data_dir, lake_ab):
    exporter(data_dir, _url(data_dir)).export_site("site_a")
    with pytest.raises(ExportError, match="3600s windows"):
        exporter(data_dir, _url(data_dir), window_s=900).export_site("site_a")


def test_windows_and_times():
    ws = list(windows_between(T0 + 5, T0 + 3 * HOUR + 1, 3600))
    assert [w.stamp for w in ws] == ["20260310T000000Z", "20260310T010000Z", "20260310T020000Z"]
    assert Window(T0 + 23 * HOUR, T0 + 24 * HOUR).days() == ["2026-03-10"]
    assert Window(T0, T0 + 2 * 86_400_000).days() == ["2026-03-10", "2026-03-11"]
    assert ws[1].object_name(2) == "events_20260310T010000Z_late2.parquet"
    assert parse_time("2026-03-10") == T0 == parse_time("2026-03-10T00:00Z") == parse_time(T0 / 1000)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("last tuesday")


def _cli(data_dir, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "clickstream_lake", "export", *args, "--data", str(data_dir.path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_cli_backfill_and_errors(data_dir, lake_ab):
    # a backfill of 03:00-05:00 only (the clock is real: these windows are long closed)
    out = _cli(data_dir, "--site", "site_a", "--since", "2026-03-10T03:00Z", "--until", "2026-03-10T05:00Z", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["files"] == [
        "alpha/2026-03-10/events_20260310T030000Z.parquet",
        "alpha/2026-03-10/events_20260310T040000Z.parquet",
    ]
    assert report["rows"] == 120
    # the rich progress bar goes to stderr in the human form; a second run is a no-op
    out = _cli(data_dir, "--site", "site_a", "--since", "2026-03-10T03:00Z", "--until", "2026-03-10T05:00Z")
    assert out.returncode == 0 and "exported 0 rows" in out.stdout
    bad = _cli(data_dir, "--site", "site_a", "--since", "yesterday-ish")
    assert bad.returncode == 1 and "ISO 8601" in bad.stderr
    nosite = _cli(data_dir, "--site", "nope")
    assert nosite.returncode == 1 and "no site 'nope'" in nosite.stderr
    badurl = _cli(data_dir, "--site", "site_a", "--target", "ftp://x/y")
    assert badurl.returncode == 1 and "unsupported export URL" in badurl.stderr


@pytest.mark.slow
def test_scheduled_export_in_serve(server_factory, data_dir, tenants):
    now_ms = int(time.time() * 1000)
    start = now_ms - now_ms % HOUR - 3 * HOUR  # three closed hours ago
    publish(data_dir, "site_a", make_rows("site_a", start, 90, 120_000, "s"))
    enable(data_dir, "site_a", "sched")
    srv = server_factory(env={"CLICKSTREAM_EXPORT_INTERVAL": "1", "CLICKSTREAM_EXPORT_GRACE": "0"})
    deadline = time.monotonic() + 60
    root = data_dir.path / "export" / "sched"
    while time.monotonic() < deadline:
        health = httpx.get(srv.url + "/healthz").json()["checks"].get("export", {})
        if health.get("runs", 0) >= 2:
            break
        time.sleep(0.3)
    assert health["enabled"] and health["runs"] >= 2, health
    files = sorted(p.name for p in root.rglob("*.parquet"))
    assert len(files) == 3
    assert sum(pq.read_metadata(p).num_rows for p in root.rglob("*.parquet")) == 90
    metrics = httpx.get(srv.url + "/metrics").text
    assert 'clickstream_export_rows_total{site="site_a"} 90.0' in metrics
    # nothing else left behind (no temporary or duplicate file): one manifest per day directory
    # (the three hours may straddle midnight: two days, two manifests)
    others = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert sorted(p.name for p in others) == ["_manifest.json"] * len({p.parent for p in root.rglob("*.parquet")})
    assert {p.parent for p in others} == {p.parent for p in root.rglob("*.parquet")}


def test_late_row_found_even_when_compaction_drops_a_duplicate_at_the_same_time(data_dir, lake_ab):
    """A retried event lands twice, then compaction drops the copy while a late event lands:
    the window's row count is back where it was, yet the late event must still be exported."""
    rows_a, _ = lake_ab
    ex = exporter(data_dir, _url(data_dir))
    ex.export_site("site_a")
    [dup_file] = publish(data_dir, "site_a", rows_a[70:71])  # a duplicate of an exported 01:xx row
    assert exporter(data_dir, _url(data_dir)).export_site("site_a").files == []
    os.unlink(dup_file)  # "compaction" removes the duplicate ...
    late = make_rows("site_a", T0 + HOUR + 999, 1, 1, "late")  # ... while one late row lands
    publish(data_dir, "site_a", late)
    report = exporter(data_dir, _url(data_dir)).export_site("site_a")
    assert report.files == ["alpha/2026-03-10/events_20260310T010000Z_late1.parquet"]
    ids = event_ids(read_objects(ex.target, "alpha").values())
    assert len(ids) == len(set(ids)) == 361 and "late-0" in ids


def test_rows_older_than_the_first_export_inside_the_late_horizon_are_exported(data_dir, lake_ab):
    ex = exporter(data_dir, _url(data_dir))
    ex.export_site("site_a")
    early = make_rows("site_a", T0 - 3 * HOUR + 5, 2, 1_000, "early")  # 21:00 the day before
    publish(data_dir, "site_a", early)
    report = exporter(data_dir, _url(data_dir)).export_site("site_a")
    assert report.files == ["alpha/2026-03-09/events_20260309T210000Z.parquet"]
    ids = event_ids(read_objects(ex.target, "alpha").values())
    assert len(ids) == len(set(ids)) == 362


def test_concurrent_exporters_never_duplicate(data_dir, lake_ab):
    """The scheduled export and a manual one racing on the same site: create-only keys decide."""
    import threading

    errors = []

    def run():
        try:
            exporter(data_dir, _url(data_dir)).export_site("site_a")
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    objects = read_objects(exporter(data_dir, _url(data_dir)).target, "alpha")
    ids = event_ids(objects.values())
    assert len(objects) == 6 and len(ids) == len(set(ids)) == 360
    store = ExportStore(ControlDB(data_dir.control_db), "site_a", f"{exporter(data_dir, _url(data_dir)).target.identity}/alpha")
    assert [f.seq for f in store.files()] == [0] * 6 and store.watermark()[0] == T0 + 6 * HOUR
    manifest = json.loads((data_dir.path / "export/alpha/2026-03-10/_manifest.json").read_text())
    assert len(manifest["files"]) == 6 and manifest["event_count"] == 360
