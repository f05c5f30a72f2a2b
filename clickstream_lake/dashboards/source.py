"""Where dashboard tiles get their rows: the tenant-scoped query layer and its cache.

:class:`SiteData` is what a notebook holds: the site, the data directory, and a
``table(sql)`` method that sends tile SQL through :class:`~clickstream_lake.query.runner.QueryService`
(SQL guard, sandboxed tenant connection, TTL result cache with single-flight, lake-hit
metrics).  Nothing in a dashboard or notebook opens the lake itself.

One ``QueryService`` per data directory per process: inside ``clickstream serve`` the
dashboards mount registers the server's own service (:func:`register_service`), so every
viewer's kernel thread, the SQL API and the notebooks share one cache and one set of
metrics; a standalone ``marimo run`` / notebook / ``clickstream report`` process makes its
own on first use.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from clickstream_lake.settings import DataDir

ENV_SITE = "CLICKSTREAM_SITE"
ENV_KEY = "CLICKSTREAM_KEY"

_services: dict[Path, object] = {}
_services_lock = threading.Lock()


class AccessError(PermissionError):
    """No usable key / site for the dashboard."""


def register_service(data: DataDir, service) -> None:
    """Make ``service`` the query service of ``data`` in this process (used by the mount)."""
    with _services_lock:
        _services[data.path] = service


def query_service(data: DataDir):
    """The process's :class:`QueryService` for ``data`` (created on first use)."""
    with _services_lock:
        svc = _services.get(data.path)
        if svc is None:
            svc = _new_service(data)
            _services[data.path] = svc
        return svc


def _new_service(data: DataDir):
    from prometheus_client import CollectorRegistry

    from clickstream_lake.control.config import ConfigCache
    from clickstream_lake.control.db import ControlDB
    from clickstream_lake.query.lake import Lake
    from clickstream_lake.query.runner import QueryService

    config = ConfigCache(ControlDB(data.control_db)) if data.control_db.exists() else None

    def ttl_for(site_id: str) -> float:
        cfg = config.config(site_id) if config is not None else None
        return cfg.cache_ttl_s if cfg is not None else 30.0

    return QueryService(Lake(data), registry=CollectorRegistry(), ttl_for=ttl_for)


@dataclass
class SiteData:
    """One site's dashboard data: its id, data directory and cache TTL."""

    site_id: str
    data: DataDir
    cache_ttl_s: float = 30.0

    @classmethod
    def open(cls, *, site: str | None = None, key: str | None = None,
             data: str | os.PathLike[str] | DataDir | None = None) -> SiteData:
        """Resolve the site from an API key (preferred) or a site id, and its cache TTL.

        Arguments fall back to ``CLICKSTREAM_KEY``, ``CLICKSTREAM_SITE`` and ``CLICKSTREAM_DATA``.
        """
        from clickstream_lake.control.config import ConfigCache
        from clickstream_lake.control.db import ControlDB

        d = data if isinstance(data, DataDir) else DataDir.resolve(data)
        if not d.control_db.exists():
            raise AccessError(f"no control database at {d.control_db}: run `clickstream init` first")
        key = key or os.environ.get(ENV_KEY) or None
        site = site or os.environ.get(ENV_SITE) or None
        db = ControlDB(d.control_db)
        try:
            cache = ConfigCache(db)
            if key:
                rec = cache.api_key(key)
                if rec is None:
                    raise AccessError("unknown or revoked API key")
                if site and site != rec.site_id:
                    raise AccessError(f"the key belongs to site {rec.site_id!r}, not {site!r}")
                site = rec.site_id
            if not site:
                raise AccessError(f"no site: pass a key (--key / {ENV_KEY}) or a site (--site / {ENV_SITE})")
            cfg = cache.config(site)
            if cfg is None:
                raise AccessError(f"no site {site!r}")
            return cls(site_id=site, data=d, cache_ttl_s=float(cfg.cache_ttl_s))
        finally:
            db.close()

    @property
    def service(self):
        return query_service(self.data)

    def table(self, sql: str) -> pa.Table:
        """Rows of one tile query, through the query layer and its result cache."""
        return self.service.run_query(self.site_id, sql).table

    def frame(self, sql: str):
        """The same as a polars DataFrame (what Altair and marimo tables take)."""
        import polars as pl

        return pl.from_arrow(self.table(sql))

    def lake_queries(self) -> float:
        """How many queries of this site actually ran on the lake (cache misses) so far."""
        return self.service.m_lake.labels(self.site_id)._value.get()
