"""``run_query``: guard + sandbox + timeout + row cap + result cache + metrics.

One entry point for every reader (``POST /v1/sql``, ``clickstream sql``, dashboards)::

    svc = QueryService(Lake(data_dir), registry=registry, ttl_for=lambda site: 30.0)
    result = svc.run_query("site_a", "SELECT count() FROM clickstream_events")

``clickstream_query_lake_executions_total{site}`` counts the queries that actually ran on
the lake (cache misses), so "one query per dashboard tile per TTL" can be checked.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Histogram

from clickstream_lake.query import guard
from clickstream_lake.query.cache import ResultCache
from clickstream_lake.query.lake import Lake

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ROWS = 20_000


class QueryError(Exception):
    """A user's query failed; ``status`` is the HTTP status, ``rule`` what was broken."""

    def __init__(self, status: int, rule: str, message: str, line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.status = status
        self.rule = rule
        self.message = message
        self.line = line
        self.col = col

    def as_json(self) -> dict:
        d: dict = {"error": self.message, "rule": self.rule}
        if self.line is not None:
            d["line"] = self.line
            d["column"] = self.col
        return d


@dataclass
class Result:
    table: pa.Table
    sql: str  # the SQL that ran (regenerated from the checked tree)
    elapsed_s: float
    truncated: bool = False
    cached: bool = False
    age_s: float = 0.0
    relations: frozenset[str] = field(default_factory=frozenset)

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @property
    def columns(self) -> list[str]:
        return self.table.column_names


class QueryService:
    def __init__(self, lake: Lake, *, registry: CollectorRegistry | None = None,
                 ttl_for: Callable[[str], float] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_rows: int = DEFAULT_MAX_ROWS, cache: ResultCache | None = None, max_concurrent: int = 4):
        self.lake = lake
        self.ttl_for = ttl_for or (lambda site: 30.0)
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.cache = cache or ResultCache()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        # guard verdicts per (site, text, relations): a repeated query skips parsing
        self._checked: OrderedDict[tuple, guard.CheckedQuery] = OrderedDict()
        self._checked_lock = threading.Lock()
        self.max_checked = 4096
        registry = registry if registry is not None else CollectorRegistry()
        self.m_lake = Counter("clickstream_query_lake_executions", "Queries executed on the lake (cache misses)",
                              ["site"], registry=registry)
        self.m_requests = Counter("clickstream_query_requests", "Queries received, by outcome",
                                  ["outcome"], registry=registry)
        self.m_latency = Histogram("clickstream_query_seconds", "Query latency (including cache hits)",
                                   registry=registry, buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    # -- the one entry point ------------------------------------------------------------------
    def run_query(self, site_id: str, sql: str, *, use_cache: bool = True) -> Result:
        t0 = time.perf_counter()
        try:
            checked = self.check(site_id, sql)
            key = (site_id, checked.sql)
            ttl = float(self.ttl_for(site_id)) if use_cache else 0.0
            if ttl > 0:
                res, hit, age = self.cache.get_or_compute(
                    key, ttl, lambda: self._execute(site_id, checked), size_of=lambda r: r.table.nbytes)
            else:
                res, hit, age = self._execute(site_id, checked), False, 0.0
            self.m_requests.labels("hit" if hit else "miss").inc()
            if hit:
                res = Result(res.table, res.sql, res.elapsed_s, res.truncated, True, age, res.relations)
            return res
        except QueryError as e:
            self.m_requests.labels(e.rule).inc()
            raise
        finally:
            self.m_latency.observe(time.perf_counter() - t0)

    def check(self, site_id: str, sql: str) -> guard.CheckedQuery:
        try:
            relations = self.lake.relations(site_id)
        except ValueError as e:
            raise QueryError(404, "site", str(e)) from None
        memo_key = (site_id, sql, tuple(relations))
        with self._checked_lock:
            hit = self._checked.get(memo_key)
            if hit is not None:
                self._checked.move_to_end(memo_key)
                return hit
        try:
            checked = guard.check(sql, relations)
            with self._checked_lock:
                self._checked[memo_key] = checked
                while len(self._checked) > self.max_checked:
                    self._checked.popitem(last=False)
            return checked
        except guard.SqlSyntaxError as e:
            raise QueryError(400, "syntax", str(e), e.line, e.col) from None
        except guard.GuardError as e:
            raise QueryError(403, e.rule, e.message) from None
        except RecursionError:
            raise QueryError(400, "syntax", "query is nested too deeply") from None
        except Exception as e:  # noqa: BLE001 - an analyser failure is still the query's problem, not a 5xx
            raise QueryError(400, "syntax", f"cannot analyse the query: {type(e).__name__}: {str(e)[:300]}") from None

    def invalidate(self, site_id: str) -> None:
        self.cache.invalidate(lambda k: k[0] == site_id)
        self.lake.invalidate(site_id)

    # -- execution ----------------------------------------------------------------------------
    def _execute(self, site_id: str, checked: guard.CheckedQuery) -> Result:
        with self._slots:
            self.m_lake.labels(site_id).inc()
            t0 = time.perf_counter()
            con = self.lake.connect(site_id)
            timed_out = threading.Event()

            def interrupt() -> None:
                timed_out.set()
                con.interrupt()

            timer = threading.Timer(self.timeout_s, interrupt)
            timer.daemon = True
            timer.start()
            try:
                reader = con.sql(checked.sql).to_arrow_reader(65536)
                batches, n, truncated = [], 0, False
                for batch in reader:
                    if n + batch.num_rows > self.max_rows:
                        batches.append(batch.slice(0, self.max_rows - n))
                        truncated = True
                        break
                    batches.append(batch)
                    n += batch.num_rows
                table = pa.Table.from_batches(batches, schema=reader.schema)
            except duckdb.InterruptException:
                raise QueryError(422, "timeout", f"query exceeded the {self.timeout_s:g} s time limit") from None
            except duckdb.OutOfMemoryException:
                raise QueryError(422, "memory", "query exceeded the memory limit") from None
            except duckdb.PermissionException as e:
                raise QueryError(403, "sandbox", f"blocked by the sandbox: {_first_line(e)}") from None
            except duckdb.ParserException as e:
                raise QueryError(400, "syntax", _first_line(e)) from None
            except duckdb.Error as e:
                if timed_out.is_set():
                    raise QueryError(422, "timeout", f"query exceeded the {self.timeout_s:g} s time limit") from None
                raise QueryError(400, "query", _first_line(e)) from None
            finally:
                timer.cancel()
                con.close()
            return Result(table, checked.sql, time.perf_counter() - t0, truncated, relations=checked.relations)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text if len(text) < 500 else text[:500] + "…"
