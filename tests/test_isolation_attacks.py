"""Isolation attack suite: site_a's read key against a lake where site_b holds a canary.

Every query goes through ``POST /v1/sql`` of a real ``clickstream serve``.  For each:
no canary in the answer, no 5xx, every rejection names its rule; after all of them no
file outside site_a's directories was read (atimes), and the server still answers fast.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.query_data import CANARY, age_atimes, build_lake, read_since

B = "site_b"
ATTACKS: list[str] = [
    # cross-tenant reads through the views
    "SELECT * FROM events WHERE site_id = 'site_b'",
    "SELECT * FROM clickstream_events WHERE index1 = 'site_b' OR 1=1",
    "SELECT * FROM events WHERE url LIKE '%CANARY%'",
    "SELECT * FROM sessions WHERE site_id <> 'site_a'",
    # every table function
    "SELECT * FROM read_parquet('{lake}/events/site_id=site_b/**/*.parquet')",
    "SELECT * FROM parquet_scan('{lake}/events/site_id=site_b/**/*.parquet')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM read_json_auto('{lake}/decoy.json')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('{decoy}')",
    "SELECT * FROM glob('{lake}/**')",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('events')",
    "SELECT * FROM parquet_metadata('{decoy}')",
    "SELECT * FROM parquet_schema('{decoy}')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM range(10)",
    "SELECT * FROM generate_series(1, 10)",
    "SELECT * FROM unnest([1, 2])",
    "SELECT * FROM events e, read_parquet('{decoy}') d",
    "SELECT * FROM events e JOIN LATERAL read_parquet('{decoy}') d ON true",
    # path traversal and file names as tables
    "SELECT * FROM '{decoy}'",
    "SELECT * FROM \"{decoy}\"",
    "SELECT * FROM '{lake}/events/site_id=site_a/../site_id=site_b/**/*.parquet'",
    "SELECT * FROM \"../events/site_id=site_b\"",
    # quoted and case-variant names
    "SELECT * FROM \"EVENTS\" WHERE site_id = 'site_b'",
    "SELECT * FROM EvEnTs WHERE blob5 = 'x'",
    "SELECT * FROM \"clickstream_events\" WHERE index1 = 'site_b'",
    "SELECT * FROM main.events",
    "SELECT * FROM memory.main.events",
    "SELECT * FROM \"main\".\"events\"",
    # CTE shadowing
    "WITH events AS (SELECT * FROM read_parquet('{decoy}')) SELECT * FROM events",
    "WITH clickstream_events AS (SELECT 'site_b' AS index1) SELECT * FROM clickstream_events",
    "WITH x AS (SELECT * FROM x) SELECT * FROM x",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r LIMIT 5",
    "WITH a AS (SELECT * FROM events) SELECT * FROM a, sqlite_master",
    # set operations
    "SELECT url FROM events UNION SELECT file FROM glob('{lake}/**')",
    "SELECT url FROM events UNION ALL SELECT sql FROM sqlite_master",
    "SELECT url FROM events INTERSECT SELECT url FROM read_parquet('{decoy}')",
    "SELECT url FROM events EXCEPT SELECT * FROM read_text('/etc/passwd')",
    # subqueries in every clause
    "SELECT (SELECT count(*) FROM read_parquet('{decoy}')) FROM events",
    "SELECT * FROM events WHERE url IN (SELECT url FROM read_parquet('{decoy}'))",
    "SELECT * FROM events WHERE EXISTS (SELECT 1 FROM information_schema.tables)",
    "SELECT url, count(*) FROM events GROUP BY url HAVING count(*) > (SELECT count(*) FROM duckdb_tables())",
    "SELECT * FROM events ORDER BY (SELECT count(*) FROM glob('/*'))",
    "SELECT * FROM (SELECT * FROM read_parquet('{decoy}')) t",
    "SELECT * FROM events LIMIT (SELECT count(*) FROM read_csv('/etc/passwd'))",
    "SELECT * FROM events e, LATERAL (SELECT * FROM read_parquet('{decoy}')) x",
    # comments and multiple statements
    "SELECT 1; ATTACH '{lake}/x.db' AS x",
    "SELECT 1 /* ; */ ; SELECT * FROM read_text('/etc/passwd')",
    "SELECT 1 -- \n; COPY events TO '/tmp/leak.csv'",
    # ATTACH / COPY / INSTALL / LOAD / SET / PRAGMA / CALL / DDL / DML
    "ATTACH '{lake}/x.db' AS x",
    "COPY (SELECT * FROM events) TO '{lake}/events/site_id=site_a/pwn.parquet'",
    "COPY events FROM '/etc/passwd'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "PRAGMA database_list",
    "PRAGMA show_tables",
    "CALL duckdb_settings()",
    "CALL pragma_version()",
    "CREATE TABLE t AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "INSERT INTO events SELECT * FROM events",
    "DROP VIEW events",
    "DESCRIBE events",
    "SUMMARIZE events",
    "EXPORT DATABASE '/tmp/x'",
    "SELECT 1 INTO leak",
    "USE memory",
    "DETACH memory",
    "CHECKPOINT",
    # catalog probing
    "SELECT * FROM duckdb_views()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_functions()",
    "SELECT * FROM duckdb_views",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM information_schema.views",
    "SELECT * FROM pg_catalog.pg_views",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM pragma_table_info('events')",
    # environment and settings
    "SELECT getenv('HOME')",
    "SELECT current_setting('allowed_directories')",
    "SELECT current_setting('temp_directory')",
    "SELECT getvariable('x')",
    "SELECT current_database(), current_schema()",
    "SELECT version()",
    "SELECT json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT url FROM events WHERE starts_with(url, getenv('PWD'))",
    # text a node prints raw (found by review, 2026-11-30): the guard saw abs(), DuckDB ran the string
    "SELECT abs('1) AS z, name, value FROM duckdb_settings() --' => 1)",
    "SELECT abs('1) AS z; CREATE OR REPLACE VIEW events AS SELECT 1 AS hijacked; SELECT 1 --' => 1)",
    "SELECT abs('1) AS z; COPY (SELECT * FROM events) TO ''{lake}/events/site_id=site_a/planted.parquet''; "
    "SELECT 1 --' => 1)",
    "SELECT INTERVAL '1' DAY TO 'x) AS z FROM duckdb_settings() --' FROM events",
    "SELECT EXTRACT(\"x) AS z FROM duckdb_settings() --\" FROM timestamp) FROM events",
    "SELECT 'a' COLLATE 'x FROM duckdb_settings() --' FROM events",
    "SELECT column_name, min, max FROM (SUMMARIZE 'duckdb_views')",
    "SELECT * FROM (SUMMARIZE '{lake}/events/site_id=site_b/**/*.parquet')",
    "SELECT * FROM (DESCRIBE events)",
    # the guard's own work is bounded (a 240 KB select list cost 11-14 s of CPU)
    "SELECT " + ",".join(["1"] * 110_000),
    # huge cross joins and resource abuse (limits, not the guard, stop these)
    "SELECT count(*) FROM events a, events b, events c, events d, events e",
    "SELECT * FROM events a, events b, events c",
    "SELECT list(repeat('x', 1000000)) FROM events a, events b",
]


@pytest.fixture
def attack_server(server_factory, tenants, data_dir):
    lake = build_lake(data_dir)
    (data_dir.lake / "decoy.json").write_text(f'{{"x": "{CANARY}"}}')
    srv = server_factory(env={"CLICKSTREAM_QUERY_TIMEOUT_S": "2", "CLICKSTREAM_QUERY_MAX_ROWS": "5000"})
    return srv, lake, tenants


def test_isolation_attack_suite(attack_server):
    srv, lake, tenants = attack_server
    key = tenants["site_a"].keys["read"]
    headers = {"Authorization": f"Bearer {key}"}
    lake_root = str(lake.data.lake)
    outside = [p for p in lake.files["site_b"]] + [lake.decoy]
    atimes = age_atimes(outside)
    assert len(ATTACKS) >= 60
    rejected, answered = [], []
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        # a normal query works and shows site_a's data
        ok = client.post("/v1/sql", content="SELECT count() AS n FROM clickstream_events", headers=headers)
        assert ok.status_code == 200 and ok.json()["data"][0]["n"] == len(lake.events["site_a"])
        for raw in ATTACKS:
            sql = raw.replace("{lake}", lake_root).replace("{decoy}", lake.decoy)
            t0 = time.monotonic()
            r = client.post("/v1/sql", content=sql, headers=headers)
            assert time.monotonic() - t0 < 20, sql
            assert r.status_code < 500, (sql, r.status_code, r.text)
            assert CANARY not in r.text, f"canary leaked by {sql!r}: {r.text[:300]}"
            if r.status_code == 200:
                answered.append(sql)
                for row in r.json()["data"]:
                    assert "site_b-" not in str(row), (sql, row)  # site_b's visitor/session/order ids
            else:
                body = r.json()
                assert body.get("error") and body.get("rule"), (sql, body)
                rejected.append((sql, r.status_code, body["rule"]))
    assert not read_since(atimes), f"files outside site_a were read: {read_since(atimes)}"
    assert len(rejected) >= 80, answered
    # nothing was written into the lake by COPY, no view was replaced
    assert not list(lake.data.lake.glob("**/pwn.parquet"))
    assert not list(lake.data.lake.glob("**/planted.parquet"))
    for sql, _, rule in rejected:
        if "=> 1)" in sql or "COLLATE" in sql or "SUMMARIZE" in sql or "TO 'x)" in sql or "EXTRACT" in sql:
            assert rule in ("function", "read_only", "regenerated", "table_function"), (sql, rule)
    assert any(rule == "too_complex" for _, _, rule in rejected)
    # still alive and fast
    t0 = time.monotonic()
    r = httpx.post(srv.url + "/v1/sql", content="SELECT count(*) AS n FROM events", headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["data"][0]["n"] == len(lake.events["site_a"])
    assert time.monotonic() - t0 < 2.0
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_auth_and_errors(attack_server):
    srv, lake, tenants = attack_server
    url = srv.url + "/v1/sql"
    assert httpx.post(url, content="SELECT 1").status_code == 401
    assert httpx.post(url, content="SELECT 1", headers={"Authorization": "Bearer nope"}).status_code == 401
    h = {"Authorization": f"Bearer {tenants['site_a'].keys['read']}"}
    r = httpx.post(url, content="SELEC 1 FROM", headers=h)
    assert r.status_code == 400 and r.json()["rule"] == "syntax"
    r = httpx.post(url, content="SELECT nope FROM events", headers=h)
    assert r.status_code == 400 and "nope" in r.json()["error"]
    r = httpx.post(url, content=b"\xff\xfe", headers=h)
    assert r.status_code == 400
    r = httpx.post(url, content="SELECT 1 FORMAT Pretty", headers=h)
    assert r.status_code == 400 and r.json()["rule"] == "format"
    # site_b's key sees site_b (and its canary) — the isolation is per key, not global
    hb = {"Authorization": f"Bearer {tenants['site_b'].keys['read']}"}
    r = httpx.post(url, content=f"SELECT count(*) AS n FROM events WHERE hem = '{CANARY}'", headers=hb)
    assert r.status_code == 200 and r.json()["data"][0]["n"] > 0


@pytest.mark.parametrize("name", ["site_a\n", "site_a\n/../site_b", "\nsite_a", "site_a\r"])
def test_identifiers_with_a_line_break_are_refused(name):
    """A validation regex ending in ``$`` also matches before a trailing newline: every
    identifier that becomes a path or a SQL name must match whole (``fullmatch``)."""
    from clickstream_lake.export.exporter import ExportError, check_namespace
    from clickstream_lake.lake import check_site_id, check_table_name

    with pytest.raises(ValueError):
        check_site_id(name)
    with pytest.raises(ValueError):
        check_table_name(name.replace("site_a", "events"))
    with pytest.raises(ExportError):
        check_namespace(name)
