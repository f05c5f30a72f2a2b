"""Customer lake export against a real S3-protocol server (moto's server in a subprocess on
loopback), reached through s3fs - export, re-export, metadata, crash recovery, an endpoint
outage mid-export, late rows, clear errors, and DuckDB over the exported objects."""

from __future__ import annotations

import io
import json

import duckdb
import pyarrow.parquet as pq
import pytest
import s3fs

from clickstream_lake.control.db import ControlDB
from clickstream_lake.export import ExportTarget, TargetAccessDenied, TargetMissing, TargetUnavailable
from clickstream_lake.export.store import ExportStore
from tests.conftest import free_port
from tests.export_helpers import HOUR, T0, enable, event_ids, exporter, make_rows, publish, read_objects
from tests.s3server import MotoServer, TCPProxy, make_bucket, storage_options


@pytest.fixture
def bucket(moto):
    return make_bucket(moto.url)


@pytest.fixture
def site_lake(data_dir, tenants):
    rows = make_rows("site_a", T0 + 1_000, 360, 60_000, "a")  # 00:00-06:00, 60 per hour
    publish(data_dir, "site_a", rows)
    publish(data_dir, "site_b", make_rows("site_b", T0 + 2_000, 50, 60_000, "b"))
    enable(data_dir, "site_a", "customers/alpha")
    return rows


def _raw_fs(endpoint: str) -> s3fs.S3FileSystem:
    opts = storage_options(endpoint)
    opts.pop("retries")
    return s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True, **opts)


def test_moto_honours_if_none_match(moto, bucket):
    t = ExportTarget(f"s3://{bucket}/x", storage_options(moto.url))
    p = t.path("k.parquet")
    assert t.put_if_absent(p, b"first", {"site-id": "s"}) is True
    assert t.put_if_absent(p, b"second", {"site-id": "t"}) is False
    assert t.read_bytes(p) == b"first"
    assert t.object_metadata(p) == {"site-id": "s"}


def test_export_reexport_and_object_metadata(data_dir, site_lake, moto, bucket):
    url = f"s3://{bucket}/exports"
    ex = exporter(data_dir, url, storage_options(moto.url))
    report = ex.export_site("site_a")
    assert len(report.files) == 6 and report.rows == 360
    fs = _raw_fs(moto.url)
    keys = sorted(k for k in fs.find(f"{bucket}/exports") if k.endswith(".parquet"))
    assert keys == [f"{bucket}/exports/customers/alpha/2026-03-10/events_20260310T{h:02d}0000Z.parquet" for h in range(6)]
    for key in keys:
        bkt, _, k = key.partition("/")
        head = fs.call_s3("head_object", Bucket=bkt, Key=k)
        meta = head["Metadata"]
        footer = pq.read_metadata(io.BytesIO(fs.cat_file(key))).metadata
        assert meta["site-id"] == footer[b"site-id"].decode() == "site_a"
        assert meta["event-count"] == footer[b"event-count"].decode() == "60"
        assert meta["exported-at"] == footer[b"exported-at"].decode()
    manifest = json.loads(fs.cat_file(f"{bucket}/exports/customers/alpha/2026-03-10/_manifest.json"))
    assert manifest["event_count"] == 360 and len(manifest["files"]) == 6
    # re-export: nothing is written, the objects are the same ones
    etags = {k: fs.info(k)["ETag"] for k in keys}
    again = exporter(data_dir, url, storage_options(moto.url)).export_site("site_a")
    assert again.files == [] and again.rows == 0
    assert {k: fs.info(k)["ETag"] for k in keys} == etags
    ids = event_ids(read_objects(ex.target, "customers/alpha").values())
    assert len(ids) == len(set(ids)) == 360
    # nothing of site_b leaked into site_a's namespace, nothing outside it was written
    assert all(k.startswith(f"{bucket}/exports/customers/alpha/") for k in fs.find(f"{bucket}"))


def test_crash_between_object_and_watermark(data_dir, site_lake, moto, bucket, monkeypatch):
    url = f"s3://{bucket}/e"
    real = ExportStore.commit_file
    calls = {"n": 0}

    def failing_once(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("watermark commit failed")
        return real(self, *a, **kw)

    monkeypatch.setattr(ExportStore, "commit_file", failing_once)
    ex = exporter(data_dir, url, storage_options(moto.url))
    with pytest.raises(RuntimeError, match="watermark commit failed"):
        ex.export_site("site_a")
    assert len(read_objects(ex.target, "customers/alpha")) == 4  # the 4th object is committed
    store = ExportStore(ControlDB(data_dir.control_db), "site_a", f"{ex.target.identity}/customers/alpha")
    assert store.watermark()[0] == T0 + 3 * HOUR
    rerun = exporter(data_dir, url, storage_options(moto.url)).export_site("site_a")
    assert [r.status for r in rerun.windows if r.status != "unchanged"] == ["adopted", "exported", "exported"]
    assert store.watermark()[0] == T0 + 6 * HOUR
    ids = event_ids(read_objects(ex.target, "customers/alpha").values())
    assert len(ids) == len(set(ids)) == 360


def test_endpoint_goes_away_mid_export_and_comes_back(data_dir, site_lake, moto, bucket):
    proxy = TCPProxy(moto.port)
    proxy.start()
    url = f"s3://{bucket}/e"
    outages = {"stopped": 0, "restarted": 0, "refused_while_down": 0}

    written = []

    def progress(done, total, result):
        if result is not None and result.status == "exported":
            written.append(result.window.stamp)
        if len(written) == 2 and not outages["stopped"]:
            proxy.stop()  # the endpoint disappears between window 2 and window 3
            outages["stopped"] += 1

    def sleep(seconds):
        # the backoff sleeps; after the second failed attempt the endpoint comes back on the same port
        outages["refused_while_down"] += 1
        if outages["refused_while_down"] == 2:
            proxy.start()
            outages["restarted"] += 1

    try:
        ex = exporter(data_dir, url, storage_options(proxy.url), sleep=sleep, retries=5)
        report = ex.export_site("site_a", progress=progress)
    finally:
        proxy.stop()
    assert outages == {"stopped": 1, "restarted": 1, "refused_while_down": 2}
    assert written == [f"20260310T0{h}0000Z" for h in range(6)]  # no gap, in order, each once
    assert ex.retries_done == 2
    assert len(report.files) == 6 and report.rows == 360
    direct = ExportTarget(url, storage_options(moto.url))
    objects = read_objects(direct, "customers/alpha")
    assert len(objects) == 6
    ids = event_ids(objects.values())
    assert len(ids) == len(set(ids)) == 360


@pytest.mark.slow
def test_endpoint_down_for_good_fails_clearly_then_resumes(data_dir, site_lake, moto, bucket):
    proxy = TCPProxy(moto.port)
    proxy.start()
    url = f"s3://{bucket}/e"

    def progress(done, total, result):
        if result is not None and result.status == "exported" and result.window.stamp == "20260310T020000Z":
            proxy.stop()  # after three windows the endpoint is gone for good

    ex = exporter(data_dir, url, storage_options(proxy.url), retries=3)
    with pytest.raises(TargetUnavailable, match="gave up after 3 attempts"):
        ex.export_site("site_a", progress=progress)
    proxy.start()
    try:
        rerun = exporter(data_dir, url, storage_options(proxy.url)).export_site("site_a")
    finally:
        proxy.stop()
    assert len(rerun.files) == 3
    ids = event_ids(read_objects(ExportTarget(url, storage_options(moto.url)), "customers/alpha").values())
    assert len(ids) == len(set(ids)) == 360


def test_late_rows_on_s3(data_dir, site_lake, moto, bucket):
    url = f"s3://{bucket}/e"
    exporter(data_dir, url, storage_options(moto.url)).export_site("site_a")
    late = make_rows("site_a", T0 + 4 * HOUR + 17, 3, 500, "late")
    publish(data_dir, "site_a", late)
    ex = exporter(data_dir, url, storage_options(moto.url))
    report = ex.export_site("site_a")
    assert report.files == ["customers/alpha/2026-03-10/events_20260310T040000Z_late1.parquet"]
    assert ex.target.object_metadata(ex.target.path(report.files[0]))["event-count"] == "3"
    ids = event_ids(read_objects(ex.target, "customers/alpha").values())
    assert len(ids) == len(set(ids)) == 363


def test_duckdb_over_exported_bucket_equals_lake(data_dir, site_lake, moto, bucket):
    url = f"s3://{bucket}/e"
    exporter(data_dir, url, storage_options(moto.url)).export_site("site_a")
    q = """SELECT blob4, blob5, count() AS n, sum(double2) AS eng, max(timestamp) AS last
           FROM {rel} GROUP BY ALL ORDER BY ALL"""
    con = duckdb.connect()
    con.register_filesystem(_raw_fs(moto.url))
    exported = con.sql(q.format(rel=f"read_parquet('s3://{bucket}/e/customers/alpha/*/events_*.parquet')")).fetchall()
    lake = con.sql(q.format(rel=f"read_parquet('{data_dir.lake}/events/site_id=site_a/*/*.parquet')")).fetchall()
    assert exported == lake and sum(r[2] for r in lake) == 360


def test_missing_bucket_is_a_clear_error(data_dir, site_lake, moto):
    ex = exporter(data_dir, "s3://no-such-bucket-here/e", storage_options(moto.url))
    with pytest.raises(TargetMissing, match="no-such-bucket-here"):
        ex.export_site("site_a")


def test_unreachable_endpoint_is_retried_then_a_clear_error(data_dir, site_lake):
    sleeps = []
    ex = exporter(data_dir, "s3://b/e", storage_options(f"http://127.0.0.1:{free_port()}"), sleep=sleeps.append,
                  retries=4)
    with pytest.raises(TargetUnavailable, match="unavailable.*gave up after 4 attempts"):
        ex.export_site("site_a")
    assert len(sleeps) == 3 and sleeps[0] < sleeps[2]  # exponential backoff


@pytest.mark.slow
def test_bad_credentials_are_a_clear_error(data_dir, site_lake):
    # a second moto server that checks signatures and access keys from the first request on
    server = MotoServer.start(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        ex = exporter(data_dir, "s3://any-bucket/e", storage_options(server.url))
        with pytest.raises(TargetAccessDenied, match="access denied.*credentials"):
            ex.export_site("site_a")
    finally:
        server.stop()
