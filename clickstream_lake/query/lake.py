"""``Lake``: a tenant's view of the lake as a locked-down DuckDB connection.

``Lake(data).connect(site_id)`` returns a connection whose only relations are the site's
views: ``clickstream_events`` (raw AE shape, read from ``events/site_id=<id>/**/*.parquet``
only, and still filtered on ``index1``), ``events`` (decoded, ``sql/views/events.sql``),
``sessions`` (``sql/views/sessions.sql``), ``quarantine`` and the site's uploaded tables.
The connection is a sandbox (:mod:`clickstream_lake.query.sandbox`) that can read only
that site's directories.

View building is separate (:meth:`Lake.build_views` takes Parquet paths/globs and a site
id), so a lake that is not laid out under a ``LakeLayout`` (an exported lake) can reuse it.
"""

from __future__ import annotations

import glob as globmod
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import fsspec

from clickstream_lake.codec import N_BLOBS, N_DOUBLES
from clickstream_lake.lake import LakeLayout, check_site_id, check_table_name
from clickstream_lake.query import dialect
from clickstream_lake.query.sandbox import SandboxLimits, open_sandbox
from clickstream_lake.resources import read_sql
from clickstream_lake.settings import DataDir

BUILTIN_RELATIONS = ("events", "clickstream_events", "sessions", "quarantine")

RAW_COLUMNS = (
    ["timestamp", "index1"]
    + [f"blob{i}" for i in range(1, N_BLOBS + 1)]
    + [f"double{i}" for i in range(1, N_DOUBLES + 1)]
    + ["_sample_interval"]
)
_RAW_TYPES = (
    ["TIMESTAMPTZ", "VARCHAR"] + ["VARCHAR"] * N_BLOBS + ["DOUBLE"] * N_DOUBLES + ["BIGINT"]
)
# The quarantine's columns when a site has none yet (the worker writes at least these).
QUARANTINE_COLUMNS = (("received_at", "TIMESTAMPTZ"), ("reason", "VARCHAR"), ("payload", "VARCHAR"))


def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class TenantSources:
    """Where a site's relations come from: Parquet paths or globs per relation."""

    site_id: str
    events: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)  # name -> parquet path
    allowed_directories: list[str] = field(default_factory=list)

    @property
    def relations(self) -> list[str]:
        return [*BUILTIN_RELATIONS, *sorted(self.tables)]


class Lake:
    """The lake of a data directory (or any lake root URL / :class:`LakeLayout`)."""

    def __init__(self, data: str | os.PathLike[str] | DataDir | LakeLayout, *, tmp_dir: str | None = None,
                 limits: SandboxLimits | None = None, filesystem: fsspec.AbstractFileSystem | None = None):
        if isinstance(data, LakeLayout):
            self.layout = data
        elif isinstance(data, DataDir):
            self.layout = LakeLayout(data.lake_url()) if data.lake_url() != str(data.lake) else LakeLayout.local(data.lake)
            tmp_dir = tmp_dir or str(data.tmp)
        else:
            text = os.fspath(data)
            if "://" in text:
                self.layout = LakeLayout(text)
            else:
                p = Path(text)
                d = DataDir.resolve(p)
                if d.control_db.exists() or (p / "lake").is_dir():
                    self.layout = LakeLayout.local(d.lake)
                    tmp_dir = tmp_dir or str(d.tmp)
                else:
                    self.layout = LakeLayout.local(p)
        self.tmp_dir = tmp_dir or tempfile.gettempdir()
        self.limits = limits or SandboxLimits()
        self._fs = filesystem
        # one locked, in-memory DuckDB database per tenant (opening one costs ~100 ms);
        # every query gets its own connection (cursor) to it.  Rebuilt when the tenant's
        # sources change shape (first file landed, table uploaded).
        self._instances: OrderedDict[str, tuple[tuple, duckdb.DuckDBPyConnection]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_instances = 64
        # what a site's directories hold is re-listed at most every ``sources_ttl_s``
        # (new files inside existing partitions are seen at once: the views glob)
        self.sources_ttl_s = 2.0
        self._sources: dict[str, tuple[float, TenantSources]] = {}

    # -- discovery ----------------------------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs = self.layout.fs
        return self._fs

    def _url(self, path: str) -> str:
        """A path as DuckDB should open it (protocol kept for object storage)."""
        if self.layout.is_local:
            return path
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{path}"

    def _has_parquet(self, directory: str) -> bool:
        if self.layout.is_local:
            return any(not os.path.basename(p).startswith(".")
                       for p in globmod.iglob(f"{directory}/**/*.parquet", recursive=True))
        try:
            return bool(self.fs.glob(f"{directory}/**/*.parquet"))
        except FileNotFoundError:
            return False

    def tables(self, site_id: str) -> dict[str, str]:
        """The site's uploaded tables: name → Parquet path."""
        d = self.layout.tables_dir(site_id)
        out: dict[str, str] = {}
        try:
            entries = self.fs.ls(d, detail=False) if self.fs.exists(d) else []
        except FileNotFoundError:
            entries = []
        for p in entries:
            base = p.rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(".parquet") and not base.startswith("."):
                name = base[: -len(".parquet")]
                try:
                    check_table_name(name)
                except ValueError:
                    continue
                if name.lower() not in BUILTIN_RELATIONS:
                    out[name.lower()] = self._url(p)
        return out

    def sources(self, site_id: str) -> TenantSources:
        """The site's Parquet globs and uploaded tables (listed at most every ``sources_ttl_s``)."""
        now = time.monotonic()
        hit = self._sources.get(site_id)
        if hit is not None and now - hit[0] < self.sources_ttl_s:
            return hit[1]
        src = self._list_sources(site_id)
        self._sources[site_id] = (now, src)
        return src

    def _list_sources(self, site_id: str) -> TenantSources:
        check_site_id(site_id)
        ev_dir = self.layout.events_dir(site_id)
        q_dir = self.layout.quarantine_dir(site_id)
        t_dir = self.layout.tables_dir(site_id)
        src = TenantSources(site_id=site_id, tables=self.tables(site_id))
        if self._has_parquet(ev_dir):
            src.events = [self._url(f"{ev_dir}/**/*.parquet")]
        if self._has_parquet(q_dir):
            src.quarantine = [self._url(f"{q_dir}/**/*.parquet")]
        src.allowed_directories = [self._url(d) for d in (ev_dir, q_dir, t_dir)]
        return src

    # -- connections ----------------------------------------------------------------------
    def connect(self, site_id: str, *, limits: SandboxLimits | None = None) -> duckdb.DuckDBPyConnection:
        """A sandboxed DuckDB connection that sees only ``site_id``'s views.

        It is a new connection to the tenant's locked database (shared by its queries);
        ``relations(site_id)`` lists what it can see.
        """
        src = self.sources(site_id)
        key = (tuple(src.events), tuple(src.quarantine), tuple(sorted(src.tables.items())), limits)
        with self._lock:
            hit = self._instances.get(site_id)
            if hit is not None and hit[0] == key:
                self._instances.move_to_end(site_id)
                return hit[1].cursor()
        base = self.connect_sources(src, limits=limits)
        with self._lock:
            self._instances[site_id] = (key, base)
            self._instances.move_to_end(site_id)
            while len(self._instances) > self.max_instances:
                self._instances.popitem(last=False)  # cursors in use keep their database alive
        return base.cursor()

    def relations(self, site_id: str) -> list[str]:
        return self.sources(site_id).relations

    def invalidate(self, site_id: str | None = None) -> None:
        """Forget cached tenant databases (after an upload, for instance)."""
        with self._lock:
            if site_id is None:
                self._instances.clear()
                self._sources.clear()
            else:
                self._instances.pop(site_id, None)
                self._sources.pop(site_id, None)

    def connect_sources(self, src: TenantSources, *, limits: SandboxLimits | None = None
                        ) -> duckdb.DuckDBPyConnection:
        temp = tempfile.mkdtemp(prefix=f"q-{src.site_id}-", dir=self.tmp_dir)
        filesystems = [] if self.layout.is_local else [self.fs]
        return open_sandbox(
            allowed_directories=src.allowed_directories,
            temp_dir=temp,
            limits=limits or self.limits,
            setup_sql=[*dialect.macro_statements(), *self.build_views(src.site_id, src.events, src.quarantine,
                                                                      src.tables)],
            filesystems=filesystems,
        )

    @staticmethod
    def build_views(site_id: str, event_files: Sequence[str], quarantine_files: Sequence[str] = (),
                    tables: dict[str, str] | None = None) -> list[str]:
        """SQL statements creating the tenant views over the given Parquet paths/globs.

        Empty inputs give views with the right columns and zero rows.
        """
        check_site_id(site_id)
        stmts = [f"CREATE OR REPLACE VIEW clickstream_events AS {_raw_select(site_id, event_files)}"]
        stmts.append(read_sql("views/events.sql"))
        stmts.append(read_sql("views/sessions.sql"))
        stmts.append(f"CREATE OR REPLACE VIEW quarantine AS {_quarantine_select(site_id, quarantine_files)}")
        for name, path in sorted((tables or {}).items()):
            check_table_name(name)
            stmts.append(f"CREATE OR REPLACE VIEW {_ident(name.lower())} AS SELECT * FROM read_parquet({_q(path)})")
        return stmts


def _file_list(files: Sequence[str]) -> str:
    return "[" + ", ".join(_q(f) for f in files) + "]"


def _raw_select(site_id: str, files: Sequence[str]) -> str:
    if not files:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in zip(RAW_COLUMNS, _RAW_TYPES, strict=True))
        return f"SELECT {cols} WHERE false"
    cols = ", ".join(
        f"CAST({_ident(c)} AS TIMESTAMPTZ) AS {_ident(c)}" if c == "timestamp" else _ident(c) for c in RAW_COLUMNS
    )
    return (
        f"SELECT {cols} FROM read_parquet({_file_list(files)}, hive_partitioning = true, "
        f"hive_types = {{'site_id': VARCHAR, 'dt': DATE}}, union_by_name = true) "
        f"WHERE site_id = {_q(site_id)} AND index1 = {_q(site_id)}"
    )


def _quarantine_select(site_id: str, files: Sequence[str]) -> str:
    if not files:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in QUARANTINE_COLUMNS)
        return f"SELECT {cols} WHERE false"
    return (
        f"SELECT * EXCLUDE (site_id) FROM read_parquet({_file_list(files)}, hive_partitioning = true, "
        f"hive_types = {{'site_id': VARCHAR, 'dt': DATE}}, union_by_name = true) WHERE site_id = {_q(site_id)}"
    )
