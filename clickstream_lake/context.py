"""What every HTTP component of ``clickstream serve`` shares: the data directory, the
control database, the config cache, the lake and the metrics registry.

It lives in ``clickstream_lake`` so the read side (SQL API, dashboards, export) and the
write side (``ingest_worker``) can both take it without ``clickstream_lake`` importing
``ingest_worker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from clickstream_lake.control.config import ConfigCache
from clickstream_lake.control.db import ControlDB
from clickstream_lake.lake import LakeLayout
from clickstream_lake.settings import DataDir


@dataclass
class AppContext:
    data: DataDir
    db: ControlDB
    config: ConfigCache
    lake: LakeLayout
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # components started by the server put themselves here by name (log, flusher, hub, ...)
    components: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, data: str | None = None, *, config_ttl: float = 60.0) -> AppContext:
        d = DataDir.resolve(data)
        if not d.control_db.exists():
            raise FileNotFoundError(f"no control database at {d.control_db}: run `clickstream init` first")
        d.ensure()
        db = ControlDB(d.control_db)
        return cls(data=d, db=db, config=ConfigCache(db, ttl=config_ttl), lake=LakeLayout(d.lake_url()))
