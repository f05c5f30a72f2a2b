"""The tenant-safe query layer (docs/query.md).

``Lake(data).connect(site_id)`` — a DuckDB connection over one site's views;
``QueryService(lake).run_query(site_id, sql)`` — guard, sandbox, limits, cache and metrics.
"""

from clickstream_lake.query.guard import GuardError, SqlSyntaxError
from clickstream_lake.query.lake import Lake, TenantSources
from clickstream_lake.query.runner import QueryError, QueryService, Result

__all__ = ["GuardError", "Lake", "QueryError", "QueryService", "Result", "SqlSyntaxError", "TenantSources"]
