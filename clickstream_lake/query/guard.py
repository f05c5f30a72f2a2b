"""The SQL guard (first wall): exactly one read-only statement over the tenant's relations.

Rules, each with a name that errors report (HTTP 403):

``single_statement``   exactly one statement (no ``;``-chained second statement)
``read_only``          the statement is a SELECT, a WITH … SELECT or a set operation of them
                       (no INSERT/COPY/ATTACH/INSTALL/LOAD/SET/PRAGMA/CALL/CREATE/SELECT INTO…)
``relation``           every table reference is a CTE in scope or one of the tenant's relations,
                       unqualified (no ``schema.table``, no file names, no system catalogs)
``table_function``     no table functions (``read_parquet``, ``glob``, ``query``, ``range`` …)
``function``           every function is on the allowlist (DuckDB scalar/aggregate functions
                       minus anything touching files, settings, the environment or the catalog)

``too_complex``        at most :data:`MAX_TOKENS` tokens (the guard's own work stays bounded)

Identifiers are compared case-insensitively.  The SQL that runs is generated from the
checked tree (comments dropped), never the user's string -- and that generated SQL must
itself pass every rule when parsed again (``regenerated``): a node that prints some of
its text raw (a string used as a named-argument key, an interval unit, a collation...)
cannot smuggle SQL the rules never saw.  Names printed raw must be plain words, and named
arguments (``name => value``) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import duckdb
from sqlglot import exp

from clickstream_lake.query import dialect
from clickstream_lake.query.dialect import SqlSyntaxError, UnsupportedFunction

__all__ = ["GuardError", "SqlSyntaxError", "CheckedQuery", "check"]


class GuardError(PermissionError):
    """The query breaks a rule; ``rule`` names it."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class CheckedQuery:
    sql: str  # the DuckDB SQL to run, generated from the checked tree
    tree: exp.Expression
    relations: frozenset[str]  # tenant relations the query reads


# Functions that read files, settings, the environment, the catalog or run SQL: never.
_DENY_RE = re.compile(
    r"^(read_|parquet_|sniff_|glob|getenv|current_setting|getvariable|duckdb_|pragma|query|checkpoint|"
    r"force_checkpoint|install|load|pg_|has_\w*privilege|txid|nextval|currval|setseed|enable_|disable_|"
    r"which_secret|iceberg|delta|sqlite_|postgres_|mysql_|http|icu_|sql_auto_complete|summary|test_|"
    r"current_query|current_schema|current_database|current_catalog|current_user|session_user|user$|"
    r"json_execute|json_serialize|json_deserialize|.*serialize_sql|write_log|col_description|obj_description|"
    r"shobj_description|format_pg_type|in_search_path|version$|platform|get_block_size|finalize$|"
    r"database_size|table_info|storage_info|metadata_info|import_database|export_database|arrow_scan|"
    r"python_|repeat_row|range$|generate_series$|unnest$|error$)"
)

# sqlglot function classes that are always fine even though their DuckDB names are not
# plain function names (CAST, CASE-like, operators rendered as functions...)
_ALWAYS_OK = (exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Extract, exp.Interval, exp.Coalesce, exp.Count,
              exp.Filter, exp.Window, exp.Distinct, exp.Array, exp.Struct, exp.Unnest, exp.Lambda)


@lru_cache(maxsize=1)
def allowed_functions() -> frozenset[str]:
    """DuckDB scalar and aggregate functions (and our AE macros) minus the deny list."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        rows = con.execute(
            "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'macro') AND NOT internal IS NULL"
        ).fetchall()
    finally:
        con.close()
    names = {r[0] for r in rows if not _DENY_RE.match(r[0])}
    # unnest/range are table-ish in FROM but fine (and bounded by limits) in expressions
    names |= {"columns", "unnest", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
              "first_value", "last_value", "nth_value", "fill", "rank_dense"}
    return frozenset(names | dialect.macro_names())


MAX_TOKENS = 10_000  # a long analytic query has a few thousand; checking 10k takes ~0.8 s
_TOKEN_RE = re.compile(r"\w+|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[^\w\s]")


def check(sql: str, relations: Iterable[str]) -> CheckedQuery:
    """Parse, rewrite the AE dialect, enforce the rules; raise SqlSyntaxError or GuardError.

    The SQL generated from the checked tree -- what DuckDB will run -- is parsed and checked
    again: any text a node printed raw is then seen by the rules."""
    checked = _check(sql, relations)
    try:
        _check(checked.sql, relations, regenerated=True)
    except (GuardError, SqlSyntaxError) as e:
        raise GuardError("regenerated", f"the query does not survive being regenerated ({e}); "
                                        "write it without that construct") from None
    return checked


def _check(sql: str, relations: Iterable[str], *, regenerated: bool = False) -> CheckedQuery:
    if not isinstance(sql, str) or not sql.strip():
        raise SqlSyntaxError("empty query: send one SELECT statement")
    tokens = sum(1 for _ in zip(range(MAX_TOKENS + 1), _TOKEN_RE.finditer(sql), strict=False))
    if tokens > MAX_TOKENS:
        raise GuardError("too_complex", f"the query has more than {MAX_TOKENS} tokens")
    allowed_relations = {r.lower() for r in relations}
    stmts = dialect.parse(sql)
    if len(stmts) == 0:
        raise SqlSyntaxError("empty query: send one SELECT statement")
    if len(stmts) > 1:
        raise GuardError("single_statement", f"exactly one statement is allowed, got {len(stmts)}")
    tree = stmts[0]
    _check_read_only(tree)
    try:
        tree = dialect.to_duckdb(tree)
    except UnsupportedFunction as e:
        raise GuardError("function", str(e)) from None
    used = _check_relations(tree, allowed_relations)
    _check_functions(tree)
    # (sqlglot reads some quoted arguments it printed itself back as names: TIME_BUCKET's zone)
    _check_nodes(tree, raw_names=not regenerated)
    out = tree.sql(dialect="duckdb", comments=False)
    return CheckedQuery(sql=out, tree=tree, relations=frozenset(used))


def _statement_kind(tree: exp.Expression) -> str:
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    return type(tree).__name__.upper()


def _check_read_only(tree: exp.Expression) -> None:
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, (exp.Select, exp.SetOperation)):
        raise GuardError("read_only", f"only SELECT queries are allowed, got {_statement_kind(root)}")
    for node in tree.walk():
        if isinstance(node, exp.Into):
            raise GuardError("read_only", "SELECT … INTO is not allowed")
        if isinstance(node, exp.Lock):
            raise GuardError("read_only", "FOR UPDATE/SHARE is not allowed")
        if isinstance(node, (exp.Command, exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Copy,
                             exp.Attach, exp.Detach, exp.Install, exp.Set, exp.Pragma, exp.Merge, exp.Alter,
                             exp.Use, exp.Summarize, exp.Describe, exp.Show)):
            raise GuardError("read_only", f"{_statement_kind(node)} is not allowed inside a query")
        if isinstance(node, exp.Select) and isinstance(node.parent, exp.With) is False:
            pass


def _visible_ctes(table: exp.Table) -> set[str]:
    """CTE names a table reference can resolve to, following SQL scoping rules."""
    names: set[str] = set()
    child: exp.Expression = table
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with") if isinstance(node, exp.Expression) else None
        if isinstance(node, exp.With):
            # we are inside one CTE's body: only the CTEs before it (and itself when recursive)
            ctes = list(node.expressions)
            idx = next((i for i, c in enumerate(ctes) if c is child), None)
            if idx is not None:
                upto = idx + 1 if node.args.get("recursive") else idx
                names |= {c.alias_or_name.lower() for c in ctes[:upto]}
        elif isinstance(with_, exp.With) and child is not with_:
            names |= {c.alias_or_name.lower() for c in with_.expressions}
        child = node
        node = node.parent
    return names


def _check_relations(tree: exp.Expression, allowed: set[str]) -> set[str]:
    used: set[str] = set()
    for node in tree.walk():
        if isinstance(node, (exp.From, exp.Join, exp.Lateral)):
            src = node.this
            if isinstance(src, exp.Func) or (isinstance(src, exp.Table) and not isinstance(src.this, exp.Identifier)):
                fn = src if isinstance(src, exp.Func) else src.this
                raise GuardError("table_function", f"table functions are not allowed: {_fname(fn)}()")
        if not isinstance(node, exp.Table):
            continue
        if not isinstance(node.this, exp.Identifier):
            raise GuardError("table_function", f"table functions are not allowed: {_fname(node.this)}()")
        if node.args.get("db") or node.args.get("catalog"):
            raise GuardError("relation", f"qualified names are not allowed: {node.sql('duckdb')!r}; "
                                         f"use one of: {', '.join(sorted(allowed))}")
        name = node.name.lower()
        if name in _visible_ctes(node):
            continue
        if name not in allowed:
            raise GuardError("relation", f"unknown relation {node.name!r}: this site can query "
                                         f"{', '.join(sorted(allowed))} and CTEs")
        used.add(name)
    return used


def _fname(fn: exp.Expression) -> str:
    if isinstance(fn, exp.Anonymous):
        return str(fn.this)
    if isinstance(fn, exp.Func):
        return fn.sql_name().lower()
    return type(fn).__name__.lower()


def _check_functions(tree: exp.Expression) -> None:
    allowed = allowed_functions()
    for node in tree.walk():
        if not isinstance(node, exp.Func) or isinstance(node, _ALWAYS_OK):
            continue
        if isinstance(node, exp.Anonymous):
            name = str(node.this).lower()
            if name not in allowed:
                raise GuardError("function", f"function {node.this}() is not allowed")
            continue
        name = node.sql_name().lower()
        generated = node.sql(dialect="duckdb", comments=False)
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\(", generated)
        gen_name = m.group(1).lower() if m else ""
        for candidate in (name, gen_name):
            if candidate and _DENY_RE.match(candidate):
                raise GuardError("function", f"function {candidate}() is not allowed")
        if gen_name and gen_name not in allowed and gen_name not in _SQL_KEYWORD_FUNCS:
            raise GuardError("function", f"function {gen_name}() is not allowed")


_SQL_KEYWORD_FUNCS = {"cast", "try_cast", "extract", "case", "coalesce", "nullif", "exists", "position", "trim",
                      "substring", "overlay", "interval", "struct_pack", "row", "count", "if", "list"}


_PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_nodes(tree: exp.Expression, *, raw_names: bool = True) -> None:
    for node in tree.walk():
        if isinstance(node, (exp.Placeholder, exp.Parameter)):
            raise GuardError("read_only", "query parameters are not supported")
        if isinstance(node, exp.Kwarg):
            raise GuardError("function", "named arguments (name => value) are not supported")
        if isinstance(node, exp.Collate) and isinstance(node.expression, exp.Literal) \
                and not _PLAIN_WORD.fullmatch(node.expression.name):  # a collation string is printed raw
            raise GuardError("read_only", f"collation {node.expression.name[:40]!r} is not a collation name")
        if raw_names and isinstance(node, exp.Var) and not _PLAIN_WORD.fullmatch(node.name):  # printed raw
            raise GuardError("read_only", f"{node.name[:40]!r} is not a keyword")
