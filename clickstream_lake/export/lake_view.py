"""An exported lake as a query source: ``Lake.from_export(url)``.

A customer's export namespace (``<url>/<YYYY-MM-DD>/events_<start>[_late<N>].parquet``) is
read with the same sandboxed DuckDB connection and the same views as the internal lake -
``clickstream_events`` (raw AE shape), ``events`` (decoded), ``sessions`` and an empty
``quarantine`` - so the workbench works on the customer's own bucket.  Every object of a
window (the window file and its late files) is read: together they hold each row once.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence

import duckdb

from clickstream_lake.export.errors import ExportError, classify
from clickstream_lake.export.settings import storage_options_from_env
from clickstream_lake.export.target import ExportTarget, footer_metadata
from clickstream_lake.lake import LakeError, LakeLayout, check_site_id
from clickstream_lake.query import dialect
from clickstream_lake.query.lake import RAW_COLUMNS, Lake, SandboxLimits, TenantSources, _ident, _q
from clickstream_lake.query.sandbox import open_sandbox


class ExportedLake(Lake):
    """A read-only :class:`Lake` over one site's export namespace (any fsspec URL)."""

    def __init__(
        self,
        url: str,
        site_id: str | None = None,
        *,
        storage_options: dict | None = None,
        tmp_dir: str | None = None,
        limits: SandboxLimits | None = None,
    ):
        self.target = ExportTarget(url, storage_options or {})
        root_url = self.target.url_of(self.target.root)
        super().__init__(LakeLayout(root_url), tmp_dir=tmp_dir, limits=limits, filesystem=self.target.fs)
        found = self._sites_found()
        if site_id:
            self.site_id = check_site_id(site_id)
            if found and found != {site_id}:
                raise ExportError(
                    f"the export at {self.target.display} holds site {', '.join(map(repr, sorted(found)))},"
                    f" not {site_id!r}"
                )
        elif len(found) == 1:
            self.site_id = check_site_id(found.pop())
        else:
            raise ExportError(
                f"cannot tell which site the export at {self.target.display} belongs to "
                f"(found {sorted(found) or 'no manifest'}): pass site_id"
            )

    # -- discovery ------------------------------------------------------------------------------
    def _event_objects(self) -> list[str]:
        try:
            found = self.fs.glob(f"{self.target.root}/*/events_*.parquet")
        except FileNotFoundError:
            return []
        return sorted(p for p in found if not p.rsplit("/", 1)[-1].startswith("."))

    def _sites_found(self) -> set[str]:
        """Site ids named by the day manifests (else by the first object's footer)."""
        sites: set[str] = set()
        try:
            manifests = self.fs.glob(f"{self.target.root}/*/_manifest.json")
        except FileNotFoundError:
            manifests = []
        for m in manifests:
            sites.add(json.loads(self.fs.cat_file(m))["site_id"])
        if not sites:
            objects = self._event_objects()
            if objects:
                with self.fs.open(objects[0], "rb") as f:
                    sites.add(footer_metadata(f.read()).get("site-id", ""))
        sites.discard("")
        return sites

    def _url(self, path: str) -> str:
        return path if self.target.is_local else self.target.url_of(path)

    # -- what Lake.connect uses -----------------------------------------------------------------
    def tables(self, site_id: str) -> dict[str, str]:
        return {}

    def sources(self, site_id: str | None = None) -> TenantSources:
        site = site_id or self.site_id
        if site != self.site_id:
            raise LakeError(f"this exported lake holds site {self.site_id!r}, not {site!r}")
        src = TenantSources(site_id=site)
        if self._event_objects():
            src.events = [self._url(f"{self.target.root}/*/events_*.parquet")]
        src.allowed_directories = [self._url(self.target.root)]
        return src

    def relations(self, site_id: str | None = None) -> list[str]:
        return self.sources(site_id).relations

    def connect(self, site_id: str | None = None, *, limits: SandboxLimits | None = None) -> duckdb.DuckDBPyConnection:
        return super().connect(site_id or self.site_id, limits=limits)

    def connect_sources(self, src: TenantSources, *, limits: SandboxLimits | None = None) -> duckdb.DuckDBPyConnection:
        temp = tempfile.mkdtemp(prefix=f"qx-{src.site_id}-", dir=self.tmp_dir)
        stmts = Lake.build_views(src.site_id, [], [], {})
        stmts[0] = f"CREATE OR REPLACE VIEW clickstream_events AS {_export_select(src.site_id, src.events)}"
        return open_sandbox(
            allowed_directories=src.allowed_directories,
            temp_dir=temp,
            limits=limits or self.limits,
            setup_sql=[*dialect.macro_statements(), *stmts],
            filesystems=[] if self.target.is_local else [self.fs],
        )


def open_exported_lake(url: str, site_id: str | None = None, env: dict[str, str] | None = None) -> ExportedLake:
    """``clickstream sql --lake URL``: the exported lake at ``url``, S3 endpoint and options taken
    from ``CLICKSTREAM_EXPORT_ENDPOINT`` / ``CLICKSTREAM_EXPORT_OPTIONS``; every failure is an
    :class:`ExportError` with a message for the user."""
    try:
        options = storage_options_from_env(env)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    try:
        lake = ExportedLake(url, site_id, storage_options=options)
        lake.sources()
        return lake
    except ExportError:
        raise
    except LakeError as exc:
        raise ExportError(str(exc)) from exc
    except Exception as exc:
        err = classify(exc, f"reading the exported lake at {url}")
        if err is None:
            raise
        raise err from exc


def _export_select(site_id: str, files: Sequence[str]) -> str:
    if not files:
        return Lake.build_views(site_id, [])[0].split(" AS ", 1)[1]
    cols = ", ".join(
        f"CAST({_ident(c)} AS TIMESTAMPTZ) AS {_ident(c)}" if c == "timestamp" else _ident(c) for c in RAW_COLUMNS
    )
    file_list = "[" + ", ".join(_q(f) for f in files) + "]"
    return (
        f"SELECT {cols} FROM read_parquet({file_list}, hive_partitioning = false, union_by_name = true)"
        f" WHERE index1 = {_q(site_id)}"
    )
