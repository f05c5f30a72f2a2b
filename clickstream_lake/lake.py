"""Lake layout and atomic publication of Parquet files.

Layout under the lake root (a local directory or any fsspec URL such as ``s3://bucket/lake``)::

    events/site_id=<id>/dt=<YYYY-MM-DD>/<file>.parquet      AE-shaped rows, zstd
    quarantine/site_id=<id>/dt=<YYYY-MM-DD>/<file>.parquet  rejected payloads + reason
    tables/site_id=<id>/<name>.parquet                      the site owner's uploaded tables

A file is published atomically: readers globbing ``*.parquet`` never see a partial file.
Locally it is written under a temporary name that does not end in ``.parquet`` (and starts
with a dot), fsynced, then renamed into place.  On object storage a single PUT is already
atomic, so the object is written under its final key.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"
ROW_GROUP_SIZE = 122_880  # DuckDB's row group size: one Parquet row group per DuckDB task

_SITE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class LakeError(ValueError):
    """A lake path or name that must not be used."""


def check_site_id(site_id: str) -> str:
    """Site ids become path segments and SQL literals: keep them boring."""
    if not isinstance(site_id, str) or not _SITE_ID_RE.fullmatch(site_id) or ".." in site_id:
        raise LakeError(
            f"invalid site id {site_id!r}: use 1-64 characters of letters, digits, '_', '-', '.'"
        )
    return site_id


def check_table_name(name: str) -> str:
    if not isinstance(name, str) or not _TABLE_NAME_RE.fullmatch(name):
        raise LakeError(f"invalid table name {name!r}: use letters, digits and '_', starting with a letter")
    return name


def day_of(ts_ms: int) -> str:
    """UTC calendar day (``YYYY-MM-DD``) of a ms timestamp: the ``dt`` partition."""
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")


def new_file_name(prefix: str = "part") -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:12]}.parquet"


@dataclass(frozen=True)
class LakeLayout:
    """Paths of the lake under ``root`` (local path or fsspec URL)."""

    root: str

    @classmethod
    def local(cls, path: str | os.PathLike[str]) -> LakeLayout:
        return cls(str(Path(path).resolve()))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        fs, _ = fsspec.core.url_to_fs(self.root)
        return fs

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    @property
    def base(self) -> str:
        """Root without protocol (the form fsspec filesystems take)."""
        _, path = fsspec.core.url_to_fs(self.root)
        return path.rstrip("/")

    def events_dir(self, site_id: str | None = None) -> str:
        if site_id is None:
            return f"{self.base}/events"
        return f"{self.base}/events/site_id={check_site_id(site_id)}"

    def partition_dir(self, site_id: str, day: str) -> str:
        dt.date.fromisoformat(day)  # raises on anything but a date
        return f"{self.events_dir(site_id)}/dt={day}"

    def quarantine_dir(self, site_id: str | None = None) -> str:
        if site_id is None:
            return f"{self.base}/quarantine"
        return f"{self.base}/quarantine/site_id={check_site_id(site_id)}"

    def tables_dir(self, site_id: str) -> str:
        return f"{self.base}/tables/site_id={check_site_id(site_id)}"

    def table_path(self, site_id: str, name: str) -> str:
        return f"{self.tables_dir(site_id)}/{check_table_name(name).lower()}.parquet"

    def site_partitions(self, site_id: str) -> list[str]:
        """``dt`` values present for a site, sorted."""
        fs = self.fs
        d = self.events_dir(site_id)
        if not fs.exists(d):
            return []
        out = []
        for p in fs.ls(d, detail=False):
            name = p.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("dt="):
                out.append(name[3:])
        return sorted(out)

    def partition_files(self, site_id: str, day: str) -> list[str]:
        fs = self.fs
        d = self.partition_dir(site_id, day)
        if not fs.exists(d):
            return []
        return sorted(
            p for p in fs.ls(d, detail=False) if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith(".")
        )


def publish_parquet(
    table: pa.Table,
    fs: fsspec.AbstractFileSystem,
    path: str,
    *,
    metadata: dict[str, str] | None = None,
    row_group_size: int = ROW_GROUP_SIZE,
) -> str:
    """Write ``table`` to ``path`` so that no reader ever sees it half written."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if _is_local_fs(fs):
        tmp = f"{parent}/.{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression=PARQUET_COMPRESSION, row_group_size=row_group_size)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(parent)
    else:
        with fs.open(path, "wb") as f:
            pq.write_table(table, f, compression=PARQUET_COMPRESSION, row_group_size=row_group_size)
    return path


def _is_local_fs(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def fsync_dir(path: str | os.PathLike[str], *, strict: bool = False) -> None:
    """fsync a directory so a create/rename/link inside it is durable.  Best effort by
    default; ``strict`` raises the OSError (the durable log and compaction must know)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)
