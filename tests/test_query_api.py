"""POST /v1/sql formats, cache headers and metrics on a real server; the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickstream_lake.control import config as config_mod
from clickstream_lake.control.db import ControlDB
from tests.query_data import build_lake

Q = "SELECT blob4 AS type, count() AS n FROM clickstream_events GROUP BY type ORDER BY type"


@pytest.fixture
def api(server_factory, tenants, data_dir):
    fx = build_lake(data_dir)
    db = ControlDB(data_dir.control_db)
    config_mod.set_config(db, "site_a", {"cache_ttl_s": 2})
    db.close()
    srv = server_factory()
    h = {"Authorization": f"Bearer {tenants['site_a'].keys['read']}"}
    return srv, h, fx


def expected_counts(fx):
    out: dict[str, int] = {}
    for e in fx.events["site_a"]:
        out[e["event_type"]] = out.get(e["event_type"], 0) + 1
    return dict(sorted(out.items()))


def lake_executions(srv) -> float:
    text = httpx.get(srv.url + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith('clickstream_query_lake_executions_total{site="site_a"}'):
            total += float(line.split()[-1])
    return total


def test_formats(api):
    srv, h, fx = api
    expect = expected_counts(fx)
    url = srv.url + "/v1/sql"
    doc = httpx.post(url, content=Q, headers=h).json()
    assert doc["meta"] == [{"name": "type", "type": "String"}, {"name": "n", "type": "Int64"}]
    assert {r["type"]: r["n"] for r in doc["data"]} == expect and doc["rows"] == len(expect)
    r = httpx.post(url, content=Q + " FORMAT JSONEachRow", headers=h)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert {json.loads(x)["type"]: json.loads(x)["n"] for x in r.text.splitlines()} == expect
    r = httpx.post(url, content=Q + "\nFORMAT TabSeparated;", headers=h)
    assert r.text == "".join(f"{k}\t{v}\n" for k, v in expect.items())
    r = httpx.post(url + "?format=csv", content=Q, headers=h)
    assert r.text.splitlines()[0] == '"type","n"' and len(r.text.splitlines()) == len(expect) + 1
    r = httpx.post(url + "?format=parquet", content=Q, headers=h)
    t = pq.read_table(io.BytesIO(r.content))
    assert dict(zip(t.column("type").to_pylist(), t.column("n").to_pylist(), strict=True)) == expect
    r = httpx.post(url + "?format=arrow", content=Q, headers=h)
    t = pa.ipc.open_stream(r.content).read_all()
    assert t.num_rows == len(expect)


def test_cache_headers_single_flight_and_ttl(api):
    srv, h, fx = api
    url = srv.url + "/v1/sql"
    before = lake_executions(srv)
    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda _: httpx.post(url, content=Q, headers=h, timeout=30), range(8)))
    assert all(r.status_code == 200 for r in rs)
    assert [r.headers["x-cache"] for r in rs].count("MISS") == 1
    assert lake_executions(srv) - before == 1  # one lake query for eight identical requests
    time.sleep(1.1)
    r = httpx.post(url, content=Q.lower() + "  -- same query", headers=h)
    assert r.headers["x-cache"] == "HIT" and int(r.headers["age"]) >= 1
    time.sleep(1.2)  # the site's TTL is 2 s
    r = httpx.post(url, content=Q, headers=h)
    assert r.headers["x-cache"] == "MISS" and lake_executions(srv) - before == 2


def test_cli_sql_and_errors(api, data_dir):
    _, _, fx = api
    base = [sys.executable, "-m", "clickstream_lake", "sql", "--data", str(data_dir.path), "--site", "site_a"]
    out = subprocess.run([*base, Q, "--format", "JSONEachRow"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert {json.loads(x)["type"]: json.loads(x)["n"] for x in out.stdout.splitlines()} == expected_counts(fx)
    out = subprocess.run([*base, "SELECT * FROM read_csv('/etc/passwd')"], capture_output=True, text=True)
    assert out.returncode == 2 and "table_function" in out.stderr and "root:" not in out.stdout
    out = subprocess.run([*base, "-"], input="SELECT count(*) AS n FROM sessions", capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.splitlines()[1] == str(
        len({e["session_id"] for e in fx.events["site_a"]}))
