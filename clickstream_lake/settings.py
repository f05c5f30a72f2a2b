"""Resolution of the data directory and its well-known paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "./data"
ENV_DATA_DIR = "CLICKSTREAM_DATA"


@dataclass(frozen=True)
class DataDir:
    """The embedded default: everything lives under one directory.

    ``control.db`` SQLite control database, ``lake/`` the Parquet lake (unless a lake URL is
    configured), ``log/`` the ingest worker's durable append-only log, ``export/`` the
    default export target, ``tmp/`` DuckDB spill space.
    """

    path: Path

    @classmethod
    def resolve(cls, data: str | os.PathLike[str] | None = None) -> DataDir:
        raw = data if data is not None else os.environ.get(ENV_DATA_DIR, DEFAULT_DATA_DIR)
        return cls(Path(raw).expanduser().resolve())

    @property
    def control_db(self) -> Path:
        return self.path / "control.db"

    @property
    def lake(self) -> Path:
        return self.path / "lake"

    @property
    def log(self) -> Path:
        return self.path / "log"

    @property
    def export(self) -> Path:
        return self.path / "export"

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"

    def lake_url(self) -> str:
        """The lake root: ``CLICKSTREAM_LAKE_URL`` (e.g. ``s3://bucket/lake``) or ``<data>/lake``."""
        return os.environ.get("CLICKSTREAM_LAKE_URL") or str(self.lake)

    def ensure(self) -> DataDir:
        for p in (self.path, self.lake, self.log, self.export, self.tmp):
            p.mkdir(parents=True, exist_ok=True)
        return self
