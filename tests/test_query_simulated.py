"""AE queries over simulated traffic equal the simulator's ground truth.

Traffic from ``clickstream_lake.simulate`` goes through the tracking contract
(``ingest_worker.normalize``) and the row builder (``events.to_row_values``) into AE rows in
the lake; AE-style SQL through ``run_query`` must give the counts the simulator recorded.
"""

from __future__ import annotations

import math

import pytest

from clickstream_lake import codec
from clickstream_lake.lake import LakeLayout, day_of, new_file_name, publish_parquet
from clickstream_lake.query.lake import Lake
from clickstream_lake.query.runner import QueryService

END_MS = 1772323200000  # 2026-03-01


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from clickstream_lake.simulate import SimConfig, generate, ground_truth
    from ingest_worker.events import to_row_values
    from ingest_worker.normalize import parse_event, request_info

    sims = list(generate(SimConfig(sites=2, days=2, seed=5, end_ms=END_MS, visitors_per_site=60)))
    truth = ground_truth(sims)
    layout = LakeLayout.local(tmp_path_factory.mktemp("sim") / "lake")
    parts: dict[tuple[str, str], list] = {}
    for sim in sims:
        ev = parse_event(sim.body, request_info(sim.site_id, sim.headers, "127.0.0.1", END_MS))
        ev.visitor_id = sim.visitor_key
        ev.session_id = sim.session_key
        row = codec.encode(to_row_values(ev))
        parts.setdefault((sim.site_id, day_of(row.timestamp)), []).append(row)
    for (site, day), rows in parts.items():
        publish_parquet(codec.rows_to_table(rows), layout.fs, f"{layout.partition_dir(site, day)}/{new_file_name()}")
    return QueryService(Lake(layout), ttl_for=lambda s: 0), truth


def test_counts_equal_ground_truth(simulated):
    svc, truth = simulated
    assert len(truth["sites"]) == 2
    for site, t in truth["sites"].items():
        got = svc.run_query(site, """
            SELECT SUM(_sample_interval) AS events,
                   countIf(blob4 = 'page_view') AS page_views,
                   countIf(blob4 = 'purchase') AS purchases,
                   sumIf(toFloat64OrZero(splitByChar('|', blob15)[1]), blob4 = 'purchase') AS revenue,
                   uniq(blob3) AS sessions, uniq(blob2) AS visitors
            FROM clickstream_events""").table.to_pylist()[0]
        assert got["events"] == t["events"], site
        assert got["page_views"] == t["page_views"]
        assert got["purchases"] == t["purchases"]
        assert math.isclose(got["revenue"], t["revenue"], abs_tol=0.01)
        assert got["sessions"] == t["sessions"] and got["visitors"] == t["visitors"]


def test_daily_buckets_equal_ground_truth(simulated):
    svc, truth = simulated
    for site, t in truth["sites"].items():
        rows = svc.run_query(site, "SELECT formatDateTime(toStartOfInterval(timestamp, INTERVAL '1' DAY), '%Y-%m-%d') "
                                   "AS day, count() AS events FROM clickstream_events GROUP BY day ORDER BY day"
                             ).table.to_pylist()
        assert {r["day"]: r["events"] for r in rows} == {d: v["events"] for d, v in t["by_day"].items()}


def test_decoded_and_sessions_views_agree_with_truth(simulated):
    svc, truth = simulated
    for site, t in truth["sites"].items():
        got = svc.run_query(site, "SELECT count(*) AS sessions, count(*) FILTER (WHERE converted) AS buyers, "
                                  "round(sum(revenue), 2) AS revenue FROM sessions").table.to_pylist()[0]
        assert got["sessions"] == t["sessions"]
        assert got["buyers"] == t["buyer_sessions"]
        assert math.isclose(got["revenue"], t["revenue"], abs_tol=0.01)
