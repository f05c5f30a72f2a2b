"""Control plane: the SQLite control database (the source article's D1) and the site
config read through a TTL cache (its KV)."""

from clickstream_lake.control.config import DEFAULT_CONFIG, ConfigCache, SiteConfig
from clickstream_lake.control.db import ControlDB, MigrationError
from clickstream_lake.control.keys import ApiKey, KeyError_, Permission
from clickstream_lake.control.sites import Site, SiteError

__all__ = [
    "DEFAULT_CONFIG",
    "ApiKey",
    "ConfigCache",
    "ControlDB",
    "KeyError_",
    "MigrationError",
    "Permission",
    "Site",
    "SiteConfig",
    "SiteError",
]
