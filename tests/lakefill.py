"""Fill a data directory's lake with simulated traffic, without a running worker.

The same stages as the ingest path, called in process::

    simulate → normalize.parse_event → (identity/session/scores) → events.to_row_values
             → codec.encode → codec.rows_to_table → lake.publish_parquet

into ``lake/events/site_id=<id>/dt=<day>/``.  Reusable by any test or benchmark that needs a
believable lake plus the simulator's ground truth for it::

    from tests.lakefill import fill_lake
    filled = fill_lake(data_dir, SimConfig(site_ids=["site_a"], days=3, seed=5, end_ms=...))
    filled.truth["sites"]["site_a"]["by_day"]["2026-01-02"]["visitors"]

``identity="truth"`` (the default) gives every event the simulator's own visitor and session
keys, so counts can be compared with the ground truth exactly; ``identity="pipeline"`` uses
the scoring engine's identity/session stage (``ingest_worker.scoring.Scorer``) when it is
installed, which is what the worker does.  Device, browser and OS come from the user agent
(``ua-parser``) and the channel from UTM/referrer when the scorer is not there to fill them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickstream_lake import codec
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.config import SiteConfig, load_config
from clickstream_lake.control.db import ControlDB
from clickstream_lake.lake import LakeLayout, day_of, new_file_name, publish_parquet
from clickstream_lake.settings import DataDir
from clickstream_lake.simulate import SimConfig, SimEvent, generate, ground_truth
from ingest_worker import normalize
from ingest_worker.events import TrackedEvent, to_row_values

DAY_MS = 86_400_000


@dataclass
class FilledLake:
    data: DataDir
    events: list[SimEvent]  # every simulated event (accepted or not)
    truth: dict[str, Any]  # ground_truth(accepted events)
    rows: dict[str, int] = field(default_factory=dict)  # site -> rows published
    rejected: int = 0
    files: list[str] = field(default_factory=list)

    def truth_between(self, site_id: str, since: dt.date, until: dt.date) -> dict[str, Any]:
        """Ground truth of one site over whole UTC days ``since``..``until`` (inclusive),
        counted afresh over the range (a visitor or session seen on several days counts once)."""
        lo = int(dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC).timestamp() * 1000)
        hi = int(dt.datetime(until.year, until.month, until.day, tzinfo=dt.UTC).timestamp() * 1000) + DAY_MS
        picked = [e for e in self.events if e.site_id == site_id and lo <= e.send_ms < hi]
        return ground_truth(picked)["sites"].get(site_id, {})

    def days(self, site_id: str) -> list[str]:
        return sorted(self.truth["sites"].get(site_id, {}).get("by_day", {}))


def end_of_day_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000) + DAY_MS


def ensure_sites(data: DataDir, site_ids: Iterable[str]) -> None:
    db = ControlDB(data.control_db)
    try:
        db.migrate()
        for sid in site_ids:
            if sites_mod.get_site(db, sid) is None:
                host = sid.lower().replace("_", "-").replace(".", "-")
                sites_mod.add_site(db, sid, domain=f"{host}.example", hostnames=[f"t.{host}.example"])
    finally:
        db.close()


class _Stages:
    """identity → session → scores: the scorer's when present, else a faithful stand-in."""

    def __init__(self, identity: str):
        self.identity = identity
        self.scorer = None
        if identity == "pipeline":
            from ingest_worker.scoring import Scorer  # raises if the scoring engine is absent

            self.scorer = Scorer()
        else:
            try:
                from ingest_worker.scoring import Scorer

                self.scorer = Scorer()
            except ImportError:
                self.scorer = None
        self._session_channel: dict[str, str] = {}

    def __call__(self, te: TrackedEvent, ev: SimEvent, config: SiteConfig) -> None:
        if self.scorer is not None:
            self.scorer.process(te, config)
        if self.identity == "truth":
            te.visitor_id = ev.visitor_key
            te.session_id = ev.session_key
        if not te.device_type:
            te.device_type, te.browser, te.os = self._device(te.request.user_agent if te.request else "")
        if not te.channel:  # the session's channel is its landing event's
            te.channel = self._session_channel.setdefault(ev.session_key, _channel(te))

    def _device(self, ua: str) -> tuple[str, str, str]:
        from ua_parser import parse

        r = parse(ua or "")
        browser = r.user_agent.family if r.user_agent else ""
        os_ = r.os.family if r.os else ""
        dev = (r.device.family if r.device else "") or ""
        low = ua.lower()
        if "bot" in low or "spider" in low or "crawl" in low:
            kind = "bot"
        elif "ipad" in low or "tablet" in low or ("android" in low and "mobile" not in low):
            kind = "tablet"
        elif "mobile" in low or "iphone" in low or dev.lower() in ("iphone",):
            kind = "mobile"
        else:
            kind = "desktop"
        return kind, browser, os_


def _channel(te: TrackedEvent) -> str:
    medium = te.utm_medium.lower()
    if te.gclid or te.msclkid or medium in ("cpc", "ppc", "paid"):
        return "Paid Search"
    if te.fbclid or medium in ("paid_social", "paidsocial"):
        return "Paid Social"
    if medium == "email":
        return "Email"
    if medium in ("social",):
        return "Organic Social"
    if medium:
        return "Referral" if medium == "referral" else medium.title()
    ref = te.referrer.lower()
    if not ref:
        return "Direct"
    if any(s in ref for s in ("google.", "bing.", "duckduckgo.", "yahoo.")):
        return "Organic Search"
    if any(s in ref for s in ("facebook.", "twitter.", "t.co", "linkedin.", "instagram.", "reddit.")):
        return "Organic Social"
    return "Referral"


def fill_lake(data: DataDir, cfg: SimConfig, *, identity: str = "truth", events: Sequence[SimEvent] | None = None,
              files_per_day: int = 2) -> FilledLake:
    """Simulate ``cfg`` (or take ``events``) and publish the rows into ``data``'s lake."""
    evs = list(events) if events is not None else list(generate(cfg))
    site_ids = sorted({e.site_id for e in evs})
    ensure_sites(data, site_ids)
    db = ControlDB(data.control_db)
    try:
        configs = {sid: load_config(db, sid) or SiteConfig(site_id=sid) for sid in site_ids}
    finally:
        db.close()
    stages = _Stages(identity)
    by_partition: dict[tuple[str, str], list[codec.AERow]] = {}
    accepted: list[SimEvent] = []
    rejected = 0
    for ev in evs:
        req = normalize.request_info(ev.site_id, ev.headers, ev.headers.get("X-Forwarded-For", "127.0.0.1"),
                                     ev.send_ms)
        te = normalize.parse_event(ev.body, req)
        if not isinstance(te, TrackedEvent):
            rejected += 1
            continue
        stages(te, ev, configs[ev.site_id])
        row = codec.encode(to_row_values(te))
        by_partition.setdefault((ev.site_id, day_of(row.timestamp)), []).append(row)
        accepted.append(ev)
    layout = LakeLayout.local(data.lake)
    files: list[str] = []
    counts: dict[str, int] = {}
    for (sid, day), rows in sorted(by_partition.items()):
        chunk = max(1, -(-len(rows) // files_per_day))
        for i in range(0, len(rows), chunk):
            path = f"{layout.partition_dir(sid, day)}/{new_file_name()}"
            files.append(publish_parquet(codec.rows_to_table(rows[i:i + chunk]), layout.fs, path))
        counts[sid] = counts.get(sid, 0) + len(rows)
    return FilledLake(data=data, events=accepted, truth=ground_truth(accepted), rows=counts,
                      rejected=rejected, files=files)


def sim_config(site_ids: Sequence[str], *, days: int = 3, seed: int = 11, end: dt.date | None = None,
               visitors_per_site: int | None = 60, bot_share: float = 0.05) -> SimConfig:
    """A small deterministic simulation ending at the end of ``end`` (default: 2026-01-10)."""
    end = end or dt.date(2026, 1, 10)
    return SimConfig(sites=len(site_ids), days=days, seed=seed, visitors_per_site=visitors_per_site,
                     bot_share=bot_share, end_ms=end_of_day_ms(end), site_ids=list(site_ids))
