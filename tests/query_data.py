"""Realistic AE rows for the query-layer tests, published into a data dir's lake.

Two (or more) sites over three days: visitors, sessions of page views and clicks,
purchases with values and order ids, UTM/channel, device, geo and scores.  Site ``site_b``
carries a canary string in its blobs; any query of ``site_a`` that returns it is a leak.
The plain-Python event dicts are returned too, so tests can compute expected results
independently of DuckDB.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

from clickstream_lake import codec
from clickstream_lake.lake import LakeLayout, day_of, new_file_name, publish_parquet
from clickstream_lake.settings import DataDir

CANARY = "CANARY-7f3a9c"
BASE_TS = 1741564800000  # 2025-03-10T00:00:00Z
PAGES = ["/", "/pricing", "/blog/duckdb", "/product/shoe", "/product/hat", "/cart", "/checkout"]
CHANNELS = [("google", "cpc", "Paid Search"), ("", "", "Direct"), ("newsletter", "email", "Email"),
            ("facebook", "social", "Paid Social")]
COUNTRIES = ["US", "FR", "DE", "JP"]


@dataclass
class LakeFixture:
    data: DataDir
    events: dict[str, list[dict]]  # site -> decoded event dicts as encoded
    files: dict[str, list[str]]  # site -> parquet paths
    decoy: str  # a parquet file outside every tenant directory, holding the canary


def make_events(site_id: str, seed: int, n_sessions: int = 60, canary: bool = False) -> list[dict]:
    rnd = random.Random(seed)
    out: list[dict] = []
    for s in range(n_sessions):
        visitor = f"{site_id}-v{rnd.randrange(n_sessions // 2)}"
        session = f"{site_id}-s{s}"
        src, med, channel = rnd.choice(CHANNELS)
        ts = BASE_TS + rnd.randrange(3 * 86_400_000)
        device = rnd.choice(["desktop", "mobile"])
        country = rnd.choice(COUNTRIES)
        n_pages = rnd.randint(1, 6)
        for p in range(n_pages):
            url = rnd.choice(PAGES) + (f"?utm_source={src}" if p == 0 and src else "")
            if canary and p == 0:
                url = f"/secret/{CANARY}"
            ev = {
                "timestamp": ts, "site_id": site_id, "visitor_id": visitor, "session_id": session,
                "event_type": "page_view", "url": url, "referrer": "https://google.com/" if src == "google" else "",
                "utm_source": src, "utm_medium": med, "channel": channel, "device_type": device,
                "browser": "Chrome", "os": "Linux", "country": country, "city": "Paris" if country == "FR" else "X",
                "title": f"{CANARY} title" if canary else "Page", "intent": round(rnd.uniform(0, 100), 3),
                "engagement": round(rnd.uniform(0, 100), 3), "scroll_depth": rnd.choice([25, 50, 75, 100]),
                "time_on_page_ms": rnd.randrange(500, 90_000), "session_number": 1,
                "event_id": f"{session}-{p}", "hem": CANARY if canary else "",
            }
            out.append(ev)
            ts += rnd.randrange(2_000, 120_000)
            if rnd.random() < 0.4:
                out.append({**ev, "event_type": "click", "timestamp": ts, "event_id": f"{session}-{p}-c",
                            "target": "button.buy", "x": 10, "y": 20})
                ts += rnd.randrange(1_000, 20_000)
        if rnd.random() < 0.3:
            value = round(rnd.uniform(5, 300), 2)
            out.append({**out[-1], "event_type": "purchase", "timestamp": ts, "value": value, "currency": "USD",
                        "order_id": f"{site_id}-o{s}", "url": "/checkout", "event_id": f"{session}-buy"})
    return out


def publish(layout: LakeLayout, site_id: str, events: list[dict], files_per_day: int = 2) -> list[str]:
    rows = [codec.encode(e) for e in events]
    by_day: dict[str, list[codec.AERow]] = {}
    for r in rows:
        by_day.setdefault(day_of(r.timestamp), []).append(r)
    paths = []
    for day, day_rows in sorted(by_day.items()):
        chunk = max(1, len(day_rows) // files_per_day + 1)
        for i in range(0, len(day_rows), chunk):
            path = f"{layout.partition_dir(site_id, day)}/{new_file_name()}"
            publish_parquet(codec.rows_to_table(day_rows[i:i + chunk]), layout.fs, path)
            paths.append(path)
    return paths


def build_lake(data: DataDir, sites: dict[str, bool] | None = None) -> LakeFixture:
    """Publish events for ``sites`` (site -> has canary) into ``data``'s lake."""
    sites = sites or {"site_a": False, "site_b": True}
    layout = LakeLayout.local(data.lake)
    events, files = {}, {}
    for i, (site, canary) in enumerate(sorted(sites.items())):
        events[site] = make_events(site, seed=11 + i, canary=canary)
        files[site] = publish(layout, site, events[site])
    decoy = f"{layout.base}/decoy-secret.parquet"
    publish_parquet(codec.rows_to_table([codec.encode({**events["site_b"][0]})]) if "site_b" in events
                    else codec.rows_to_table([]), layout.fs, decoy)
    return LakeFixture(data, events, files, decoy)


def age_atimes(paths: list[str]) -> dict[str, float]:
    """Set atime well in the past (so relatime updates it on any read); return the values."""
    old = time.time() - 5 * 86400
    out = {}
    for p in paths:
        st = os.stat(p)
        os.utime(p, (old, st.st_mtime))
        out[p] = os.stat(p).st_atime
    return out


def read_since(atimes: dict[str, float]) -> list[str]:
    """Paths whose atime moved (someone read them)."""
    return [p for p, a in atimes.items() if os.stat(p).st_atime != a]
