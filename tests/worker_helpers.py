"""Helpers shared by the worker's black-box tests: talk to a real server, read the lake."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

EVENT_ID_COLUMN = "blob18"


def event(**fields: Any) -> dict[str, Any]:
    base = {"type": "page_view", "url": "/pricing?utm_source=news", "event_id": uuid.uuid4().hex,
            "ts": int(time.time() * 1000)}
    base.update(fields)
    return base


def post(url: str, host: str, body: Any = None, *, content: bytes | None = None, headers: dict | None = None,
         client: httpx.Client | None = None) -> httpx.Response:
    hdrs = {"Host": host, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", **(headers or {})}
    c = client or httpx
    if content is not None:
        hdrs.setdefault("Content-Type", "application/json")
        return c.post(url + "/v1/collect", content=content, headers=hdrs, timeout=10)
    return c.post(url + "/v1/collect", json=body, headers=hdrs, timeout=10)


def lake_table(data_path: Path, site_id: str, kind: str = "events") -> pa.Table:
    files = sorted(p for p in (data_path / "lake" / kind / f"site_id={site_id}").glob("dt=*/*.parquet"))
    if not files:
        return pa.table({})
    return pa.concat_tables([pq.read_table(f) for f in files])


def lake_ids(data_path: Path, site_id: str) -> list[str]:
    t = lake_table(data_path, site_id)
    return t.column(EVENT_ID_COLUMN).to_pylist() if t.num_rows else []


def wait_for(predicate, timeout: float = 8.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for_ids(data_path: Path, site_id: str, ids: set[str], timeout: float = 8.0) -> list[str]:
    wait_for(lambda: ids <= set(lake_ids(data_path, site_id)), timeout)
    return lake_ids(data_path, site_id)


def quarantine_rows(data_path: Path, site_id: str) -> list[dict[str, Any]]:
    t = lake_table(data_path, site_id, "quarantine")
    return t.to_pylist() if t.num_rows else []


def site_a_data_dir(path: Path):
    """A second initialised data directory holding site_a on t.alpha.test (as the
    ``tenants`` fixture registers it): a server to compare with, over its own lake."""
    from clickstream_lake.control import sites as sites_mod
    from clickstream_lake.control.db import ControlDB
    from clickstream_lake.settings import DataDir

    d = DataDir.resolve(path).ensure()
    db = ControlDB(d.control_db)
    db.migrate()
    sites_mod.add_site(db, "site_a", domain="alpha.test", hostnames=["t.alpha.test"], plan="enterprise")
    db.close()
    return d
