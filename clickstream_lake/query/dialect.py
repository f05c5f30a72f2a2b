"""The AE (ClickHouse-style) dialect, rewritten into DuckDB SQL with sqlglot.

A query is parsed as DuckDB SQL; if that fails, or if DuckDB's parser misreads a
ClickHouse parametric aggregate such as ``quantileExactWeighted(0.5)(x, w)`` (it would
read ``f(0.5) AS (x, w)``), it is parsed with sqlglot's ClickHouse dialect instead.  The
tree is then rewritten so that AE functions become DuckDB expressions or calls to the
macros of ``sql/ae_macros.sql``; the guard checks the rewritten tree and the SQL that runs
is generated from it.
"""

from __future__ import annotations

import re
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from clickstream_lake.resources import read_sql


class SqlSyntaxError(ValueError):
    """The text is not SQL we can parse; ``line``/``col`` say where (1-based) when known."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.line = line
        self.col = col


@lru_cache(maxsize=1)
def macro_statements() -> tuple[str, ...]:
    """``CREATE MACRO`` statements of ``sql/ae_macros.sql``."""
    text = "\n".join(line for line in read_sql("ae_macros.sql").splitlines() if not line.strip().startswith("--"))
    return tuple(s.strip() for s in re.split(r";\s*\n", text) if s.strip())


@lru_cache(maxsize=1)
def macro_names() -> frozenset[str]:
    names = set()
    for stmt in macro_statements():
        m = re.match(r"CREATE\s+OR\s+REPLACE\s+MACRO\s+(\w+)", stmt, re.I)
        if m:
            names.add(m.group(1).lower())
    return frozenset(names)


# --- parsing ---------------------------------------------------------------------------
def parse(sql: str) -> list[exp.Expression]:
    """Statements of ``sql`` (empty ones dropped), DuckDB first, ClickHouse as fallback."""
    try:
        stmts = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
        if not any(_misread_parametric(s) for s in stmts):
            return stmts
        duck_error: Exception | None = None
    except (ParseError, TokenError) as e:
        duck_error = e
    try:
        return [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except (ParseError, TokenError) as e:
        raise _syntax_error(duck_error or e) from None


def _misread_parametric(tree: exp.Expression) -> bool:
    """DuckDB's reading of ``f(p)(x)`` is ``f(p) AS (x)``: a function aliased to a column list."""
    return any(isinstance(a.this, exp.Func) for a in tree.find_all(exp.Aliases))


def _syntax_error(e: Exception) -> SqlSyntaxError:
    if isinstance(e, ParseError) and e.errors:
        first = e.errors[0]
        desc = first.get("description") or str(e)
        line, col = first.get("line"), first.get("col")
        near = (first.get("highlight") or "").strip()
        where = f" at line {line}, column {col}" if line else ""
        near_s = f" near {near!r}" if near else ""
        return SqlSyntaxError(f"syntax error{where}{near_s}: {desc}", line, col)
    return SqlSyntaxError(f"syntax error: {e}")


# --- rewriting -------------------------------------------------------------------------
_CH_FORMAT = {"%i": "%M", "%M": "%B", "%h": "%I", "%e": "%-d", "%f": "%f", "%F": "%Y-%m-%d", "%T": "%H:%M:%S"}

_UNITS = {
    "tostartofminute": "1 MINUTE",
    "tostartoffiveminutes": "5 MINUTE",
    "tostartoffifteenminutes": "15 MINUTE",
    "tostartofhour": "1 HOUR",
    "tostartofday": "1 DAY",
}
_TRUNC = {"tostartofweek": "week", "tomonday": "week", "tostartofmonth": "month", "tostartofquarter": "quarter",
          "tostartofyear": "year"}
_PARTS = {"toyear": "year", "tomonth": "month", "todayofmonth": "day", "tohour": "hour", "tominute": "minute",
          "tosecond": "second", "todayofweek": "isodow", "todayofyear": "doy", "toquarter": "quarter"}
_RENAMES = {
    "uniq": None,  # handled: count(DISTINCT x)
    "any": "any_value",
    "anylast": "last",
    "grouparray": "list",
    "argmax": "arg_max",
    "argmin": "arg_min",
    "startswith": "starts_with",
    "endswith": "ends_with",
    "match": "regexp_matches",
    "stddevpop": "stddev_pop",
    "stddevsamp": "stddev_samp",
    "varpop": "var_pop",
    "varsamp": "var_samp",
    "quantileexactweighted": "ae_quantile_exact_weighted",
}
_UNIQ = {"uniq", "uniqexact", "uniqcombined", "uniqcombined64", "uniqhll12", "uniqtheta"}


def _utc_tz(tz: exp.Expression | None) -> exp.Expression:
    return tz if tz is not None else exp.Literal.string("UTC")


def _as_tz(e: exp.Expression) -> exp.Expression:
    return exp.Cast(this=e, to=exp.DataType.build("TIMESTAMPTZ"))


def _local(ts: exp.Expression, tz: exp.Expression | None) -> exp.Expression:
    """Wall-clock time of ``ts`` in ``tz`` (UTC by default), as AE prints DateTime values."""
    return exp.func("timezone", _utc_tz(tz), _as_tz(ts))


def _bucket(interval: exp.Expression, ts: exp.Expression, tz: exp.Expression | None) -> exp.Expression:
    if isinstance(interval, exp.Literal) and interval.is_string:
        interval = exp.Interval(this=exp.Literal.string(interval.this))
    return exp.func("timezone", _utc_tz(tz), exp.func("time_bucket", interval, _as_tz(ts), _utc_tz(tz)))


def _interval(text: str) -> exp.Expression:
    n, unit = text.split()
    return exp.Interval(this=exp.Literal.string(n), unit=exp.Var(this=unit))


def _ch_format(fmt: exp.Expression) -> exp.Expression:
    if isinstance(fmt, exp.Literal) and fmt.is_string:
        out = re.sub(r"%[a-zA-Z%]", lambda m: _CH_FORMAT.get(m.group(0), m.group(0)), fmt.this)
        return exp.Literal.string(out)
    return fmt


def _func_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return ""


def _rewrite_anonymous(node: exp.Anonymous) -> exp.Expression | None:
    name = _func_name(node)
    args = list(node.expressions)
    tz = args[2] if len(args) > 2 else None
    if name == "tostartofinterval" and len(args) >= 2:
        return _bucket(args[1], args[0], tz)
    if name in _UNITS and args:
        return _bucket(_interval(_UNITS[name]), args[0], args[1] if len(args) > 1 else None)
    if name in _TRUNC and args:
        local = _local(args[0], args[1] if len(args) > 1 else None)
        return exp.func("date_trunc", exp.Literal.string(_TRUNC[name]), local)
    if name in _PARTS and args:
        local = _local(args[0], args[1] if len(args) > 1 else None)
        return exp.func("date_part", exp.Literal.string(_PARTS[name]), local)
    if name == "todate" and args:
        return exp.Cast(this=_local(args[0], args[1] if len(args) > 1 else None), to=exp.DataType.build("DATE"))
    if name == "todatetime" and args:
        x = args[0]
        if isinstance(x, exp.Literal) and x.is_string:
            return exp.Cast(this=x, to=exp.DataType.build("TIMESTAMP"))
        if isinstance(x, exp.Literal):
            return exp.func("timezone", exp.Literal.string("UTC"), exp.func("to_timestamp", x))
        return _local(x, args[1] if len(args) > 1 else None)
    if name == "formatdatetime" and len(args) >= 2:
        return exp.func("strftime", _local(args[0], tz), _ch_format(args[1]))
    if name in ("splitbychar", "splitbystring") and len(args) == 2:
        return exp.Anonymous(this="string_split", expressions=[args[1], args[0]])
    if name in _UNIQ and args:
        return exp.Count(this=exp.Distinct(expressions=args))
    if name == "multiif" and len(args) >= 3:
        case = exp.Case()
        for i in range(0, len(args) - 1, 2):
            case = case.when(args[i], args[i + 1])
        return case.else_(args[-1])
    if name == "grouparrayuniq" or name == "groupuniqarray":
        return exp.func("list", exp.Distinct(expressions=args))
    if name in _RENAMES and _RENAMES[name]:
        return exp.Anonymous(this=_RENAMES[name], expressions=args)
    return None


def _rewrite_parameterized(node: exp.ParameterizedAgg) -> exp.Expression:
    name = str(node.this).lower()
    params = list(node.expressions)
    args = list(node.args.get("params") or [])
    if name == "quantileexactweighted" and len(params) == 1 and len(args) == 2:
        return exp.Anonymous(this="ae_quantile_exact_weighted", expressions=[params[0], *args])
    if name == "quantileexact" and len(params) == 1 and len(args) == 1:
        return exp.Anonymous(this="ae_quantile_exact", expressions=[params[0], *args])
    if name in ("quantile", "quantiletdigest", "quantiletiming") and len(params) == 1 and len(args) == 1:
        return exp.Anonymous(this="quantile_cont", expressions=[args[0], params[0]])
    if name == "topk" and len(params) == 1 and len(args) == 1:
        return exp.Anonymous(this="ae_top_k", expressions=[params[0], args[0]])
    raise UnsupportedFunction(f"{node.this}(…)(…) is not supported")


class UnsupportedFunction(ValueError):
    pass


def _rewrite_combined(node: exp.CombinedAggFunc) -> exp.Expression:
    """``sumIf(x, cond)`` → ``sum(x) FILTER (WHERE cond)`` (any ``-If`` combinator)."""
    name = str(node.this)
    args = list(node.expressions)
    if name.lower().endswith("if") and args:
        base, cond = name[:-2], args[-1]
        inner = exp.Anonymous(this=base, expressions=args[:-1])
        inner = _rewrite_node(inner) or inner
        return exp.Filter(this=inner, expression=exp.Where(this=cond))
    raise UnsupportedFunction(f"{name}() is not supported")


def _rewrite_node(node: exp.Expression) -> exp.Expression | None:
    if isinstance(node, exp.TimeToStr):
        fmt = node.args.get("format")
        if isinstance(fmt, exp.Literal) and "%i" in fmt.this:  # ClickHouse minutes; invalid in DuckDB
            new = node.copy()
            new.set("format", exp.Literal.string(fmt.this.replace("%i", "%M")))
            return new
        return None
    if isinstance(node, exp.ParameterizedAgg):
        return _rewrite_parameterized(node)
    if isinstance(node, exp.CombinedAggFunc):
        return _rewrite_combined(node)
    if isinstance(node, exp.Anonymous):
        if _func_name(node).endswith("if") and _func_name(node) not in ("countif",) and len(node.expressions) >= 2 \
                and _func_name(node)[:-2] in _IF_BASES:
            return _rewrite_combined(exp.CombinedAggFunc(this=str(node.this), expressions=list(node.expressions)))
        return _rewrite_anonymous(node)
    return None


_IF_BASES = {"sum", "avg", "min", "max", "any", "uniq", "uniqexact", "count", "grouparray", "argmax", "argmin"}


def to_duckdb(tree: exp.Expression) -> exp.Expression:
    """Rewrite AE functions of ``tree`` into DuckDB (a new tree)."""

    def visit(node: exp.Expression) -> exp.Expression:
        new = _rewrite_node(node)
        if new is None:
            return node
        # sqlglot does not descend into a replaced node: rewrite its children here
        for child in list(new.iter_expressions()):
            child.replace(child.transform(visit, copy=False))
        return new

    return tree.transform(visit, copy=True)
