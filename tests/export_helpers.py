"""Shared by the export tests: lake rows built with the codec and published into the hive layout."""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

from clickstream_lake import codec
from clickstream_lake.control import config as config_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.export import Exporter, ExportSettings, ExportTarget
from clickstream_lake.lake import LakeLayout, day_of, new_file_name, publish_parquet
from clickstream_lake.settings import DataDir

T0 = int(dt.datetime(2026, 3, 10, tzinfo=dt.UTC).timestamp() * 1000)  # a Tuesday, 00:00Z
HOUR = 3_600_000
NOW = (T0 + 6 * HOUR + 10 * 60_000) / 1000  # 06:10Z: windows 00..05 are closed, 06 is open


def make_rows(site: str, start_ms: int, n: int, step_ms: int, prefix: str) -> list[codec.AERow]:
    rows = []
    for i in range(n):
        ts = start_ms + i * step_ms
        rows.append(
            codec.encode(
                {
                    "timestamp": ts,
                    "site_id": site,
                    "visitor_id": f"v{i % 13}",
                    "session_id": f"s{i % 29}",
                    "event_type": ("page_view", "click", "scroll")[i % 3],
                    "url": f"/p/{i % 7}?q={i % 3}",
                    "event_id": f"{prefix}-{i}",
                    "country": ("DE", "FR", "US")[i % 3],
                    "browser": "Firefox|Nightly" if i % 5 == 0 else "Chrome",
                    "intent": float(i % 100),
                    "engagement": (i * 7) % 100,
                }
            )
        )
    return rows


def publish(data: DataDir, site: str, rows: list[codec.AERow]) -> list[str]:
    """Publish rows as lake flush files, one per dt partition (like the ingest worker would)."""
    lake = LakeLayout(data.lake_url())
    by_day: dict[str, list[codec.AERow]] = defaultdict(list)
    for r in rows:
        by_day[day_of(r.timestamp)].append(r)
    out = []
    for day, day_rows in sorted(by_day.items()):
        path = f"{lake.partition_dir(site, day)}/{new_file_name()}"
        out.append(publish_parquet(codec.rows_to_table(day_rows), lake.fs, path))
    return out


def enable(data: DataDir, site: str, namespace: str = "") -> None:
    db = ControlDB(data.control_db)
    config_mod.set_config(db, site, {"parquet_export_enabled": True, "r2_namespace": namespace})


def exporter(data: DataDir, url: str, options: dict | None = None, now: float = NOW, sleep=lambda s: None,
             **settings_kw) -> Exporter:
    settings = ExportSettings.from_env(data, env={}, url=url, storage_options=options or {}, **settings_kw)
    return Exporter(
        ControlDB(data.control_db),
        LakeLayout(data.lake_url()),
        settings,
        target=ExportTarget(settings.url, settings.storage_options),
        clock=lambda: now,
        sleep=sleep,
    )


def read_objects(target: ExportTarget, namespace: str) -> dict[str, pa.Table]:
    """Every exported Parquet object under the namespace: relative key -> table."""
    fs = target.fs
    base = target.path(namespace)
    out = {}
    for p in sorted(fs.find(base)):
        if p.endswith(".parquet"):
            out[p[len(target.root) + 1 :]] = pq.read_table(io.BytesIO(fs.cat_file(p)))
    return out


def event_ids(tables) -> list[str]:
    ids: list[str] = []
    for t in tables:
        ids.extend(t.column("blob18").to_pylist())
    return ids
