"""Session rebuild on start: how long the worker needs to restore N rows of visitor history.

Scores ``--rows`` page views of ``--visitors`` visitors live, publishes them as Parquet
(10 files), rebuilds a fresh scorer from the lake (``ingest_worker.rebuild``) and checks
every rebuilt state equals the live one.  ``python benchmarks/rebuild.py [--rows 50000] [--json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from clickstream_lake import codec
from clickstream_lake.control.config import SiteConfig
from clickstream_lake.lake import LakeLayout, day_of, publish_parquet
from ingest_worker.events import RequestInfo, TrackedEvent, to_row_values
from ingest_worker.rebuild import rebuild_sessions
from ingest_worker.scoring import Scorer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--visitors", type=int, default=5_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cfg = SiteConfig(site_id="site_a", domain="alpha.test")
    live = Scorer(secret=b"s" * 32)
    now = int(time.time() * 1000)
    rows = []
    t0 = time.perf_counter()
    for k in range(a.rows):
        v = f"v_{k % a.visitors:032x}"
        ts = now - 3_600_000 + k * (3_500_000 // max(a.rows, 1))
        ev = TrackedEvent(type="page_view" if k % 3 else "click", ts_ms=ts, event_id=f"e{k}", url=f"/p{k % 17}",
                          screen="1920x1080", x=float(k % 800), y=float(k % 600),
                          request=RequestInfo(site_id="site_a", received_ms=ts, cookie_visitor_id=v))
        live.process(ev, cfg)
        rows.append(codec.encode(to_row_values(ev)))
    live_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        lake = LakeLayout.local(Path(tmp) / "lake")
        step = max(1, a.rows // 10)
        for i in range(0, a.rows, step):
            part = lake.partition_dir("site_a", day_of(rows[i].timestamp))
            publish_parquet(codec.rows_to_table(rows[i:i + step]), lake.fs, f"{part}/flush-{i:09d}.parquet")
        fresh = Scorer(secret=b"s" * 32)
        res = rebuild_sessions(lake, fresh, now_ms=now)
    equal = all(fresh.store.get(site, vid, now).as_dict() == st.as_dict()
                for (site, vid), st in list(live.store._states.items()))
    out = {"rows": res.rows, "visitors": res.visitors, "files": res.files, "rebuild_s": res.seconds,
           "rebuild_us_per_row": res.seconds / max(res.rows, 1) * 1e6,
           "live_score_and_encode_us_per_row": live_s / max(a.rows, 1) * 1e6, "states_equal": equal}
    if a.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:36s} {v:.1f}" if isinstance(v, float) else f"{k:36s} {v}")


if __name__ == "__main__":
    main()
