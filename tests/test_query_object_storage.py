"""The same tenant views over a lake on S3-protocol object storage (a real moto server)."""

from __future__ import annotations

import duckdb
import pytest

from clickstream_lake import codec
from clickstream_lake.lake import LakeLayout, publish_parquet
from clickstream_lake.query.lake import Lake
from clickstream_lake.query.runner import QueryService
from tests.conftest import free_port


@pytest.fixture
def s3():
    server_mod = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    port = free_port()
    srv = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    srv.start()
    fs = s3fs.S3FileSystem(key="test", secret="test", client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}",
                                                                     "region_name": "us-east-1"},
                           use_listings_cache=False)
    boto3 = pytest.importorskip("boto3")
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="lake-bucket")
    yield fs
    srv.stop()


def test_tenant_views_on_s3(s3):
    layout = LakeLayout("s3://lake-bucket/lake")
    for site in ("site_a", "site_b"):
        rows = [codec.encode({"timestamp": 1741612800000 + i, "site_id": site, "url": f"/{site}/{i}",
                              "event_type": "page_view", "session_id": f"{site}-s{i % 3}"}) for i in range(20)]
        publish_parquet(codec.rows_to_table(rows), s3, f"{layout.partition_dir(site, '2025-03-10')}/part-1.parquet")
    lake = Lake(layout, filesystem=s3)
    svc = QueryService(lake, ttl_for=lambda s: 0)
    r = svc.run_query("site_a", "SELECT count() AS n, count(DISTINCT blob1) AS sites FROM clickstream_events")
    assert r.table.to_pylist() == [{"n": 20, "sites": 1}]
    assert svc.run_query("site_a", "SELECT count(*) AS n FROM sessions").table.to_pylist() == [{"n": 3}]
    con = lake.connect("site_a")
    with pytest.raises(duckdb.Error):
        con.sql("SELECT * FROM read_parquet('s3://lake-bucket/lake/events/site_id=site_b/**/*.parquet')").fetchall()
    # a site with nothing on the bucket still has its views
    assert svc.run_query("site_c", "SELECT count(*) AS n FROM events").table.to_pylist() == [{"n": 0}]
