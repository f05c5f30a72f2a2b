"""Where dashboard tiles get their rows: the tenant-scoped query layer and its cache.

:class:`SiteData` is what a notebook holds: the site, the data directory, and a ``table(sql)``
method that sends tile SQL through the query layer (guard, sandbox, TTL result cache,
single-flight, lake-hit metrics).  Nothing in a dashboard opens the lake itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from clickstream_lake.settings import DataDir

ENV_SITE = "CLICKSTREAM_SITE"
ENV_KEY = "CLICKSTREAM_KEY"


class AccessError(PermissionError):
    """No usable key / site for the dashboard."""


@dataclass
class SiteData:
    site_id: str
    data: DataDir
    cache_ttl_s: float = 30.0

    @classmethod
    def open(cls, *, site: str | None = None, key: str | None = None,
             data: str | os.PathLike[str] | None = None) -> SiteData:
        """Resolve the site from an API key (preferred) or a site id, and its cache TTL.

        Arguments fall back to ``CLICKSTREAM_KEY``, ``CLICKSTREAM_SITE`` and ``CLICKSTREAM_DATA``.
        """
        from clickstream_lake.control.config import ConfigCache
        from clickstream_lake.control.db import ControlDB

        d = DataDir.resolve(data)
        if not d.control_db.exists():
            raise AccessError(f"no control database at {d.control_db}: run `clickstream init` first")
        key = key if key is not None else os.environ.get(ENV_KEY)
        site = site if site is not None else os.environ.get(ENV_SITE)
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

    def table(self, sql: str) -> pa.Table:
        """Rows of one tile query, through the query layer and its result cache."""
        return run_tile_query(self.data, self.site_id, sql)


def run_tile_query(data: DataDir, site_id: str, sql: str) -> pa.Table:
    from clickstream_lake.dashboards import _prototype

    return _prototype.run(data, site_id, sql)


def data_dir_of(path: str | os.PathLike[str] | None) -> DataDir:
    return DataDir.resolve(Path(path) if path is not None else None)
