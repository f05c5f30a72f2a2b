"""The exporter: one site's closed windows, from the internal lake to the export target, exactly once.

For each window ``[start, end)`` (epoch-aligned, hourly by default) of a site:

1. read the site's lake rows whose ``timestamp`` falls in the window;
2. drop the rows already exported for that window - their event ids (blob18) are read back
   from the window's committed objects, so the objects themselves are the record;
3. if anything is left, write it create-only to ``<ns>/<day>/events_<start>.parquet`` (or, when
   the window already has objects, to ``events_<start>_late<N>.parquet``);
4. when the create finds the key taken (a crashed run committed it and died before the
   control DB knew, or another exporter won a race), adopt that object - check it belongs to
   this site, count its rows as exported - and go back to 2;
5. rewrite the day's ``_manifest.json``; then, in one control-DB transaction, record the
   object(s), the lake row count seen, and advance the watermark.

A crash anywhere leaves either no object (the rerun writes it) or an object the DB does not
know (the rerun adopts it): never a duplicate, never a gap.  Late rows are found by comparing
the lake's row count for a recorded window with the count seen when it was exported; every
recorded window younger than the late horizon is checked on each run.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clickstream_lake.codec import ROW_SCHEMA
from clickstream_lake.control import config as config_mod
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.export.errors import ExportError, NamespaceCollision, with_retry
from clickstream_lake.export.lake_reader import KEY_COLUMNS, SiteLakeReader, new_rows, row_keys
from clickstream_lake.export.settings import ExportSettings
from clickstream_lake.export.store import ExportedFile, ExportStore
from clickstream_lake.export.target import ExportTarget, footer_metadata
from clickstream_lake.export.windows import Window, align_down, windows_between
from clickstream_lake.lake import PARQUET_COMPRESSION, ROW_GROUP_SIZE, LakeLayout

log = logging.getLogger("clickstream.export")

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")


def check_namespace(ns: str) -> str:
    if not ns or len(ns) > 200 or ".." in ns or not _NAMESPACE_RE.fullmatch(ns):
        raise ExportError(
            f"invalid export namespace {ns!r}: use letters, digits, '_', '-', '.' (and '/' between segments)"
        )
    return ns


def iso_ms(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class WindowResult:
    window: Window
    status: str  # "exported", "late", "empty", "unchanged", "adopted"
    rows: int = 0
    bytes: int = 0
    keys: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    site_id: str
    namespace: str
    target: str
    window_s: int
    windows: list[WindowResult] = field(default_factory=list)
    watermark_ms: int | None = None
    skipped: str | None = None
    error: str | None = None

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.windows)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.windows)

    @property
    def files(self) -> list[str]:
        return [k for r in self.windows for k in r.keys]

    def as_dict(self) -> dict:
        return {
            "site_id": self.site_id,
            "namespace": self.namespace,
            "target": self.target,
            "window_s": self.window_s,
            "rows": self.rows,
            "bytes": self.bytes,
            "files": self.files,
            "watermark": iso_ms(self.watermark_ms) if self.watermark_ms is not None else None,
            "skipped": self.skipped,
            "error": self.error,
            "windows": [
                {"start": iso_ms(r.window.start_ms), "status": r.status, "rows": r.rows, "bytes": r.bytes}
                for r in self.windows
                if r.status != "unchanged"
            ],
        }


ProgressFn = Callable[[int, int, WindowResult | None], None]


class Exporter:
    def __init__(
        self,
        db: ControlDB,
        lake: LakeLayout,
        settings: ExportSettings,
        *,
        target: ExportTarget | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.db = db
        self.lake = lake
        self.settings = settings
        self.target = target or ExportTarget(settings.url, settings.storage_options)
        self.clock = clock
        self.sleep = sleep
        self.retries_done = 0

    # -- storage calls, retried -----------------------------------------------------------------
    def _retry(self, fn, where: str):
        def on_retry(attempt, err, delay):
            self.retries_done += 1
            log.warning("export: %s (attempt %d), retrying in %.1fs", err, attempt, delay)

        return with_retry(
            fn,
            where=where,
            attempts=self.settings.retries,
            base_s=self.settings.backoff_base_s,
            max_s=self.settings.backoff_max_s,
            sleep=self.sleep,
            on_retry=on_retry,
        )

    # -- entry points -----------------------------------------------------------------------------
    def export_all(self, progress: ProgressFn | None = None) -> list[ExportReport]:
        """Every site with ``parquet_export_enabled`` (what ``serve`` runs on its schedule)."""
        reports = []
        for site in sites_mod.list_sites(self.db):
            cfg = config_mod.load_config(self.db, site.id)
            if cfg is None or not cfg.parquet_export_enabled:
                continue
            try:
                reports.append(self.export_site(site.id, progress=progress))
            except ExportError as e:
                log.error("export of site %s failed: %s", site.id, e)
                reports.append(
                    ExportReport(site.id, cfg.namespace, self.target.display, self.settings.window_s, error=str(e))
                )
        return reports

    def export_site(
        self,
        site_id: str,
        since: int | None = None,
        until: int | None = None,
        *,
        force: bool = False,
        progress: ProgressFn | None = None,
    ) -> ExportReport:
        """Export the closed windows of one site; ``since``/``until`` in ms (a backfill)."""
        cfg = config_mod.load_config(self.db, site_id)
        if cfg is None:
            raise ExportError(f"no site {site_id!r}")
        namespace = check_namespace(cfg.namespace)
        window_s = self.settings.window_s
        report = ExportReport(site_id, namespace, self.target.display, window_s)
        if not cfg.parquet_export_enabled and not force:
            report.skipped = f"parquet_export_enabled is off for {site_id} (set it, or pass --force)"
            return report
        self._check_namespace_unique(site_id, namespace)
        self._retry(self.target.check, f"checking the export target {self.target.display}")

        store = ExportStore(self.db, site_id, f"{self.target.identity}/{namespace}")
        reader = SiteLakeReader(self.lake, site_id)
        wm = store.watermark()
        if wm is not None and wm[1] != window_s:
            raise ExportError(
                f"site {site_id} was exported to this target with {wm[1]}s windows; it cannot switch to"
                f" {window_s}s (use a new namespace or CLICKSTREAM_EXPORT_WINDOW={wm[1]})"
            )
        now_ms = int(self.clock() * 1000)
        closed_until = int(now_ms - self.settings.grace_s * 1000)
        end = closed_until if until is None else min(until, closed_until)
        if since is not None:
            start = align_down(since, window_s)
        elif wm is not None:
            start = wm[0]
        else:
            earliest = reader.earliest_ms()
            if earliest is None:
                report.skipped = "no events in the lake for this site yet"
                return report
            start = align_down(earliest, window_s)
        if wm is None:
            store.init_watermark(start, window_s)

        # windows to look at: recorded ones inside the late horizon (for late rows), then the range
        horizon = align_down(int(now_ms - self.settings.late_horizon_s * 1000), window_s)
        todo: dict[int, Window] = {}
        if since is None and wm is not None:
            # every window inside the late horizon before the start: recorded ones may have got
            # late rows; unrecorded ones may have got rows older than anything exported so far
            for w in windows_between(horizon, start, window_s):
                todo[w.start_ms] = w
        for w in windows_between(start, end, window_s):
            todo[w.start_ms] = w
        windows = [todo[k] for k in sorted(todo)]
        total = len(windows)
        if progress:
            progress(0, total, None)
        wm_now = store.watermark()
        for i, w in enumerate(windows, 1):
            result = self._export_window(store, reader, cfg.site_id, namespace, w, wm_now[0] if wm_now else None)
            report.windows.append(result)
            if progress:
                progress(i, total, result)
        final = store.watermark()
        report.watermark_ms = final[0] if final else None
        return report

    def _check_namespace_unique(self, site_id: str, namespace: str) -> None:
        for other in sites_mod.list_sites(self.db):
            if other.id == site_id:
                continue
            ocfg = config_mod.load_config(self.db, other.id)
            if ocfg is not None and ocfg.namespace == namespace:
                raise NamespaceCollision(
                    f"site {other.id} uses the same export namespace {namespace!r} as {site_id}; give each"
                    " site its own r2_namespace"
                )

    # -- one window -------------------------------------------------------------------------------
    def _export_window(
        self, store: ExportStore, reader: SiteLakeReader, site_id: str, ns: str, w: Window, wm_ms: int | None
    ) -> WindowResult:
        state = store.window(w.start_ms)
        lake_count = reader.distinct_keys(w)
        if state is not None and state.lake_keys_seen == lake_count:
            return WindowResult(w, "unchanged")
        if state is None and lake_count == 0 and wm_ms is not None and w.start_ms < wm_ms:
            return WindowResult(w, "unchanged")  # before the watermark, never had rows
        rows = reader.rows(w)
        committed = store.files(w.start_ms)
        exported: set[str] = set()
        for f in committed:
            exported |= self._exported_keys(f.key)
        pending: list[ExportedFile] = []
        result = WindowResult(w, "empty" if state is None else "unchanged")
        for _ in range(1000):
            fresh, _keys = new_rows(rows, exported)
            if fresh.num_rows == 0:
                break
            seq = max([f.seq for f in committed + pending], default=-1) + 1
            key = f"{ns}/{w.day}/{w.object_name(seq)}"
            path = self.target.path(key)
            exported_at = iso_ms(int(self.clock() * 1000))
            meta = {
                "site-id": site_id,
                "event-count": str(fresh.num_rows),
                "exported-at": exported_at,
                "window-start": iso_ms(w.start_ms),
                "window-end": iso_ms(w.end_ms),
                "seq": str(seq),
            }
            data = parquet_bytes(fresh, meta)
            created = self._retry(lambda p=path, d=data, m=meta: self.target.put_if_absent(p, d, m), f"writing {key}")
            if created:
                f = ExportedFile(w.start_ms, seq, w.day, key, fresh.num_rows, len(data), exported_at, False)
                exported |= set(_keys.to_pylist())
                result.status = "exported" if seq == 0 else "late"
                result.rows += fresh.num_rows
                result.bytes += len(data)
                result.keys.append(key)
            else:
                f = self._adopt(site_id, w, seq, key)
                exported |= self._exported_keys(key)
                if result.status in ("empty", "unchanged"):
                    result.status = "adopted"
                log.warning("export: %s already existed (an earlier run committed it); adopted it", key)
            pending.append(f)
        else:  # pragma: no cover - 1000 objects for one window means something is badly wrong
            raise ExportError(f"window {w.stamp} of {site_id}: too many follow-up objects")
        listed: set[tuple[int, int]] = set()
        if pending:  # before the DB commit: the manifest never misses a committed object
            listed = self._write_manifest(store, site_id, ns, w.day, pending)
        seen = pc.count_distinct(row_keys(rows)).as_py() if rows.num_rows else 0
        store.commit_file(w.start_ms, w.end_ms, self.settings.window_s, pending, seen)
        if pending and {(f.window_start_ms, f.seq) for f in store.files(day=w.day)} != listed:
            # another exporter committed objects of this day meanwhile: converge on the DB's view
            self._write_manifest(store, site_id, ns, w.day, [])
        return result

    def _adopt(self, site_id: str, w: Window, seq: int, key: str) -> ExportedFile:
        path = self.target.path(key)
        data = self._retry(lambda: self.target.read_bytes(path), f"reading {key}")
        md = footer_metadata(data)
        if md.get("site-id") != site_id:
            raise NamespaceCollision(
                f"{key} exists but was exported for site {md.get('site-id')!r}, not {site_id!r}: the namespace is shared"
            )
        return ExportedFile(
            w.start_ms, seq, w.day, key, int(md.get("event-count", "0")), len(data), md.get("exported-at", ""), True
        )

    def _exported_keys(self, key: str) -> set[str]:
        path = self.target.path(key)
        data = self._retry(lambda: self.target.read_bytes(path), f"reading {key}")
        table = pq.read_table(io.BytesIO(data), columns=KEY_COLUMNS)
        return set(row_keys(table).to_pylist())

    def _write_manifest(
        self, store: ExportStore, site_id: str, ns: str, day: str, pending: list[ExportedFile]
    ) -> set[tuple[int, int]]:
        files = {(f.window_start_ms, f.seq): f for f in store.files(day=day)}
        for f in pending:
            files[(f.window_start_ms, f.seq)] = f
        step = self.settings.window_s * 1000
        doc = {
            "site_id": site_id,
            "namespace": ns,
            "day": day,
            "window_s": self.settings.window_s,
            "format": "parquet",
            "schema": (ROW_SCHEMA.metadata or {}).get(b"clickstream.schema", b"").decode(),
            "updated_at": iso_ms(int(self.clock() * 1000)),
            "event_count": sum(f.event_count for f in files.values()),
            "files": [
                {
                    "key": f.key,
                    "path": f.key.split("/", 1)[1] if f.key.startswith(ns + "/") else f.key,
                    "window_start": iso_ms(f.window_start_ms),
                    "window_end": iso_ms(f.window_start_ms + step),
                    "seq": f.seq,
                    "kind": "window" if f.seq == 0 else "late",
                    "site-id": site_id,
                    "event-count": f.event_count,
                    "exported-at": f.exported_at,
                    "size_bytes": f.size_bytes,
                }
                for _, f in sorted(files.items())
            ],
        }
        body = json.dumps(doc, indent=2).encode()
        key = f"{ns}/{day}/_manifest.json"
        self._retry(lambda: self.target.put_replace(self.target.path(key), body), f"writing {key}")
        return set(files)


def parquet_bytes(table: pa.Table, metadata: dict[str, str]) -> bytes:
    merged = dict(table.schema.metadata or {})
    merged.update({k.encode(): v.encode() for k, v in metadata.items()})
    table = table.replace_schema_metadata(merged)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION, row_group_size=ROW_GROUP_SIZE)
    return buf.getvalue()
