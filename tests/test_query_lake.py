"""Lake.connect views, the guard, the sandbox, run_query limits and the result cache."""

from __future__ import annotations

import threading
import time

import duckdb
import pyarrow as pa
import pytest

from clickstream_lake.query import formats, guard
from clickstream_lake.query.cache import ResultCache
from clickstream_lake.query.lake import RAW_COLUMNS, Lake
from clickstream_lake.query.runner import QueryError, QueryService
from tests.query_data import CANARY, build_lake

REL = ["events", "clickstream_events", "sessions", "quarantine"]


@pytest.fixture
def lake_fx(data_dir):
    return build_lake(data_dir)


def test_connect_sees_only_its_site(lake_fx):
    lake = Lake(lake_fx.data)
    con = lake.connect("site_a")
    n, sites = con.sql("SELECT count(*), list(DISTINCT site_id) FROM events").fetchall()[0]
    assert n == len(lake_fx.events["site_a"]) and sites == ["site_a"]
    raw = con.sql("SELECT * FROM clickstream_events LIMIT 1")
    assert raw.columns == RAW_COLUMNS
    assert con.sql("SELECT count(*) FROM events WHERE url LIKE '%CANARY%'").fetchall() == [(0,)]
    # the sandbox refuses the other tenant's files even without the guard
    other = lake_fx.files["site_b"][0]
    with pytest.raises(duckdb.PermissionException):
        con.sql(f"SELECT * FROM read_parquet('{other}')").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")


def test_sessions_view_matches_python(lake_fx):
    con = Lake(lake_fx.data).connect("site_a")
    got = {r[0]: r[1:] for r in con.sql(
        "SELECT session_id, pages, converted, round(revenue, 2), entry_page, bounce FROM sessions").fetchall()}
    expect: dict[str, list] = {}
    for e in sorted(lake_fx.events["site_a"], key=lambda e: e["timestamp"]):
        s = expect.setdefault(e["session_id"], [0, False, 0.0, None])
        if e["event_type"] == "page_view":
            s[0] += 1
            s[3] = s[3] or e["url"].split("?")[0]
        if e["event_type"] == "purchase":
            s[1] = True
            s[2] += e["value"]
    assert set(got) == set(expect)
    for sid, (pages, conv, rev, entry) in expect.items():
        assert got[sid] == (pages, conv, round(rev, 2), entry, pages <= 1), sid


def test_empty_site_has_all_views_with_columns(data_dir):
    con = Lake(data_dir).connect("nobody_yet")
    for rel in REL:
        r = con.sql(f"SELECT * FROM {rel}")
        assert r.fetchall() == [] and len(r.columns) > 0
    assert con.sql("SELECT * FROM clickstream_events").columns == RAW_COLUMNS


@pytest.mark.parametrize("sql,rule", [
    ("SELECT 1; SELECT 2", "single_statement"),
    ("DELETE FROM events", "read_only"),
    ("COPY events TO 'x.csv'", "read_only"),
    ("SELECT * FROM read_parquet('x')", "table_function"),
    ("SELECT * FROM main.events", "relation"),
    ("SELECT * FROM other_site_table", "relation"),
    ("SELECT getenv('HOME')", "function"),
    ("SELECT 1 INTO t", "read_only"),
])
def test_guard_rules(sql, rule):
    with pytest.raises(guard.GuardError) as ei:
        guard.check(sql, REL)
    assert ei.value.rule == rule and ei.value.message


def test_guard_regenerates_sql_and_resolves_ctes():
    q = guard.check("with Events as (select * from EVENTS) -- hi\n select count(*) from events", REL)
    assert "--" not in q.sql and "hi" not in q.sql
    assert q.relations == {"events"}
    # a CTE's own name inside its (non-recursive) body is the real relation, so still checked
    with pytest.raises(guard.GuardError):
        guard.check("with x as (select * from x) select * from x", REL)
    with pytest.raises(guard.SqlSyntaxError) as ei:
        guard.check("SELECT FROM WHERE (", REL)
    assert "syntax" in str(ei.value)


def test_run_query_timeout_and_row_cap(lake_fx):
    svc = QueryService(Lake(lake_fx.data), timeout_s=0.5, max_rows=10)
    r = svc.run_query("site_a", "SELECT * FROM events")
    assert r.rows == 10 and r.truncated
    t0 = time.monotonic()
    with pytest.raises(QueryError) as ei:
        svc.run_query("site_a", "SELECT count(*) FROM events a, events b, events c, events d", use_cache=False)
    assert ei.value.rule == "timeout" and ei.value.status == 422
    assert time.monotonic() - t0 < 5


def test_cache_hits_and_single_flight(lake_fx):
    svc = QueryService(Lake(lake_fx.data), ttl_for=lambda s: 30)
    sql = "SELECT blob4 AS event_type, count() AS n FROM clickstream_events GROUP BY 1 ORDER BY 1"
    results = []
    threads = [threading.Thread(target=lambda: results.append(svc.run_query("site_a", sql))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert svc.m_lake.labels("site_a")._value.get() == 1
    assert len({tuple(r.table.column("n").to_pylist()) for r in results}) == 1
    # whitespace, comments and keyword case do not make a new entry
    again = svc.run_query("site_a", "select   blob4 as event_type, COUNT() as n /* x */ from clickstream_events\n"
                                    "group by 1 order by 1 -- comment")
    assert again.cached and svc.m_lake.labels("site_a")._value.get() == 1
    assert svc.run_query("site_b", sql).cached is False  # per site


def test_result_cache_ttl_and_bound():
    now = [0.0]
    c = ResultCache(max_entries=2, clock=lambda: now[0])
    calls = []
    c.get_or_compute("a", 10, lambda: calls.append(1) or "A")
    assert c.get_or_compute("a", 10, lambda: calls.append(1) or "A")[1] is True
    now[0] = 11
    assert c.get_or_compute("a", 10, lambda: calls.append(1) or "A")[1] is False
    c.put("b", 1, 10)
    c.put("c", 1, 10)
    assert len(c) == 2 and c.get("a") is None
    assert len(calls) == 2


def test_formats_shapes():
    t = pa.table({"a": [1, 2], "s": ["x\ty", None]})
    doc = __import__("json").loads(formats.render(t, "JSON"))
    assert doc["meta"] == [{"name": "a", "type": "Int64"}, {"name": "s", "type": "String"}]
    assert doc["data"] == [{"a": 1, "s": "x\ty"}, {"a": 2, "s": None}] and doc["rows"] == 2
    assert formats.render(t, "TabSeparated") == b"1\tx\\ty\n2\t\\N\n"
    assert formats.split_format("SELECT 1 FORMAT JSONEachRow") == ("SELECT 1", "JSONEachRow")
    assert formats.split_format("SELECT 'FORMAT JSON'") == ("SELECT 'FORMAT JSON'", None)
    assert CANARY not in formats.render(t, "csv").decode()
