"""Property tests of the guard: whatever the text, it either refuses with a reason or
returns SQL that reads only the tenant's relations and is a fixpoint of the guard."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from clickstream_lake.query import guard

REL = ["events", "clickstream_events", "sessions", "quarantine", "orders"]
TOKENS = ["SELECT", "*", "FROM", "events", "orders", "x", "WITH", "AS", "(", ")", ",", ";", "UNION", "ALL",
          "WHERE", "1", "=", "'a'", "read_parquet('/etc')", "glob('*')", "getenv('H')", "count()", "JOIN", "ON",
          "true", "LATERAL", "--", "/*", "*/", "\n", "main.", "\"events\"", "EVENTS", "COPY", "TO", "'f'",
          "ATTACH", "INSTALL", "SET", "PRAGMA", "CALL", "sqlite_master", "duckdb_views()", "GROUP BY", "1",
          "ORDER BY", "LIMIT", "10", "IN", "EXISTS", "INTERSECT", "EXCEPT", "toStartOfInterval(timestamp, INTERVAL '1' DAY)",
          "quantileExactWeighted(0.5)(double1, _sample_interval)", "countIf(blob4 = 'x')", "RECURSIVE", "cte"]


def _tables_ok(tree: exp.Expression) -> bool:
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    return all(t.name.lower() in set(REL) | ctes and not t.args.get("db") for t in tree.find_all(exp.Table))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25).map(" ".join))
def test_guard_refuses_or_returns_safe_fixpoint(text):
    try:
        checked = guard.check(text, REL)
    except guard.GuardError as e:
        assert e.rule in {"single_statement", "read_only", "relation", "table_function", "function"} and e.message
        return
    except guard.SqlSyntaxError as e:
        assert str(e)
        return
    assert _tables_ok(checked.tree)
    again = guard.check(checked.sql, REL)
    assert again.sql == checked.sql


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_guard_never_crashes_on_arbitrary_text(text):
    try:
        guard.check(text, REL)
    except (guard.GuardError, guard.SqlSyntaxError):
        pass
