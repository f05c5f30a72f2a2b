"""End to end with the traffic simulator: every simulated event of two sites lands once,
under its own site and day, exactly as the ground truth counts them."""

from __future__ import annotations

from collections import Counter

import pytest

from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.lake import day_of
from clickstream_lake.simulate import SimConfig, generate, ground_truth, send

from .worker_helpers import lake_table, wait_for


@pytest.mark.slow
def test_simulated_traffic_lands_exactly_once_per_site_and_day(server_factory, data_dir):
    cfg = SimConfig(sites=2, days=1, seed=11, visitors_per_site=12)
    db = ControlDB(data_dir.control_db)
    for site_id, host in cfg.site_list():
        sites_mod.add_site(db, site_id, domain=host.split(".", 1)[1], hostnames=[host], plan="enterprise")
    db.close()
    events = list(generate(cfg))
    truth = ground_truth(events)
    s = server_factory()
    report = send(events, s.url, batch=20, concurrency=4, progress=False)
    assert report.http_errors == 0, report.errors
    assert report.accepted == len(events)

    def by_site_day() -> dict[str, Counter]:
        out = {}
        for site_id, _ in cfg.site_list():
            t = lake_table(data_dir.path, site_id)
            ts = t.column("timestamp").cast("int64").to_pylist() if t.num_rows else []
            out[site_id] = Counter(day_of(x) for x in ts)
        return out

    expected = {site_id: Counter({day: v["events"] for day, v in info["by_day"].items()})
                for site_id, info in truth["sites"].items()}
    wait_for(lambda: by_site_day() == expected, timeout=20)
    assert by_site_day() == expected
    for site_id, _ in cfg.site_list():
        ids = lake_table(data_dir.path, site_id).column("blob18").to_pylist()
        assert len(ids) == len(set(ids))
