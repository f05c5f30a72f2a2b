"""The query layer over an exported lake: ``Lake.from_export(url)`` gives the same views as the
internal lake, on local disk and on a real S3-protocol server."""

from __future__ import annotations

import pytest

from clickstream_lake.export import ExportError
from clickstream_lake.lake import LakeError
from clickstream_lake.query.lake import Lake
from clickstream_lake.query.runner import QueryService
from tests.export_helpers import HOUR, T0, enable, exporter, make_rows, publish
from tests.s3server import make_bucket, storage_options

QUERIES = [
    "SELECT event_type, country, browser, count(*) AS n FROM events GROUP BY ALL ORDER BY ALL",
    "SELECT blob4, count() AS c, SUM(_sample_interval) AS w FROM clickstream_events GROUP BY blob4 ORDER BY blob4",
    "SELECT visitor_id, min(timestamp) AS first, max(timestamp) AS last FROM events GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM sessions",
]


@pytest.fixture
def exported(data_dir, tenants):
    rows = make_rows("site_a", T0 + 1_000, 300, 60_000, "a")  # 00:00-05:00
    publish(data_dir, "site_a", rows)
    publish(data_dir, "site_b", make_rows("site_b", T0 + 2_000, 40, 60_000, "b"))
    enable(data_dir, "site_a", "alpha")
    return rows


def _same_results(internal, external):
    for q in QUERIES:
        a = internal.sql(q).fetchall()
        b = external.sql(q).fetchall()
        assert a == b, q
        assert a, q


def test_from_export_on_disk_matches_internal_lake_including_late_files(data_dir, exported):
    url = f"file://{data_dir.path / 'export'}"
    exporter(data_dir, url).export_site("site_a")
    publish(data_dir, "site_a", make_rows("site_a", T0 + 2 * HOUR + 11, 4, 1_000, "late"))
    assert exporter(data_dir, url).export_site("site_a").files  # a _late1 object
    ext = Lake.from_export(f"{url}/alpha")  # site discovered from the manifests
    assert ext.site_id == "site_a"
    assert set(ext.relations()) >= {"events", "clickstream_events", "sessions", "quarantine"}
    _same_results(Lake(data_dir).connect("site_a"), ext.connect())
    assert ext.connect().sql("SELECT count(*) FROM events").fetchall() == [(304,)]
    # the same guard and runner work over it
    res = QueryService(ext).run_query("site_a", "SELECT count() AS n FROM clickstream_events")
    assert res.table.to_pylist() == [{"n": 304}]
    with pytest.raises(LakeError, match="holds site 'site_a'"):
        ext.connect("site_b")
    with pytest.raises(ExportError, match="holds site 'site_a', not 'site_b'"):
        Lake.from_export(f"{url}/alpha", "site_b")


def test_from_export_needs_a_site_when_it_cannot_tell(tmp_path):
    with pytest.raises(ExportError, match="pass site_id"):
        Lake.from_export(f"file://{tmp_path}/empty")
    assert Lake.from_export(f"file://{tmp_path}/empty", "site_a").connect().sql(
        "SELECT count(*) FROM events").fetchall() == [(0,)]


@pytest.mark.slow
def test_from_export_on_s3_matches_internal_lake(data_dir, exported, moto):
    bucket = make_bucket(moto.url)
    url = f"s3://{bucket}/exports"
    opts = storage_options(moto.url)
    opts.pop("retries")
    exporter(data_dir, url, storage_options(moto.url)).export_site("site_a")
    ext = Lake.from_export(f"{url}/alpha", storage_options=opts)
    assert ext.site_id == "site_a"
    _same_results(Lake(data_dir).connect("site_a"), ext.connect())


def _sql_cli(*args, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "clickstream_lake", "sql", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_clickstream_sql_lake_option(data_dir, exported):
    import json

    url = f"file://{data_dir.path / 'export'}"
    exporter(data_dir, url).export_site("site_a")
    q = "SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1"
    out = _sql_cli("--lake", f"{url}/alpha", "-f", "JSON", q)
    assert out.returncode == 0, out.stderr
    internal = _sql_cli("--site", "site_a", "--data", str(data_dir.path), "-f", "JSON", q)
    assert internal.returncode == 0, internal.stderr
    assert json.loads(out.stdout)["data"] == json.loads(internal.stdout)["data"]
    assert sum(r["n"] for r in json.loads(out.stdout)["data"]) == 300
    # the guard still applies; a wrong site and a missing lake are clear errors
    bad = _sql_cli("--lake", f"{url}/alpha", "SELECT * FROM read_parquet('/etc/passwd')")
    assert bad.returncode == 2 and "error" in bad.stderr
    other = _sql_cli("--lake", f"{url}/alpha", "--site", "site_b", q)
    assert other.returncode == 2 and "holds site 'site_a', not 'site_b'" in other.stderr
    nothing = _sql_cli("--lake", f"{url}/nope", q)
    assert nothing.returncode == 2 and "pass site_id" in nothing.stderr


@pytest.mark.slow
def test_clickstream_sql_lake_on_s3(data_dir, exported, moto):
    import json

    bucket = make_bucket(moto.url)
    exporter(data_dir, f"s3://{bucket}/x", storage_options(moto.url)).export_site("site_a")
    env = {"CLICKSTREAM_EXPORT_ENDPOINT": moto.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    out = _sql_cli("--lake", f"s3://{bucket}/x/alpha", "-f", "JSON", "SELECT count() AS n FROM clickstream_events",
                   env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["data"] == [{"n": 300}]
    missing = _sql_cli("--lake", "s3://no-such-bucket/x", "SELECT 1", env=env)
    assert missing.returncode == 2 and "no-such-bucket" in missing.stderr
