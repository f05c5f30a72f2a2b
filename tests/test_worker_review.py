"""Bad input a review found mishandled (2026-11-30), over real HTTP, in process and with
scoring shards: each gets the same 4xx with a JSON reason (never a 5xx), the payload is kept
in quarantine, valid events land, and exactly-once holds across a restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickstream_lake import codec
from clickstream_lake.control.config import set_config
from clickstream_lake.control.db import ControlDB
from clickstream_lake.lake import LakeLayout, day_of
from ingest_worker.rebuild import recent_rows

from .worker_helpers import event, lake_ids, post, quarantine_rows, wait_for, wait_for_ids

FAST_FLUSH = {"CLICKSTREAM_FLUSH_INTERVAL": "0.2"}


@pytest.fixture(params=[1, 2], ids=["in-process", "2-shards"])
def served(request, server_factory, tenants, data_dir):
    return server_factory(env=FAST_FLUSH, extra_args=["--shards", str(request.param)])


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_bad_input_the_review_found_gets_a_4xx_and_is_kept(served, data_dir):
    url = served.url
    # an Origin urlsplit cannot read: the event is served (no CORS grant), never a 500
    ok = event()
    r = post(url, "t.alpha.test", ok, headers={"Origin": "http://[::1"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = httpx.options(url + "/v1/collect", headers={"Host": "t.alpha.test", "Origin": "http://[::1"})
    assert r.status_code == 403 and r.json()["reason"] == "cors_origin"
    # nesting: a body deeper than 200 levels is refused whole, with its reason, in both modes
    deep_body = ('{"type":"page_view","junk":' + _deep(500) + "}").encode()
    deep_member = ('{"events":[{"type":"page_view"},{"type":"bad","junk":' + _deep(980) + "}]}").encode()
    for body in (deep_body, deep_member):
        r = post(url, "t.alpha.test", content=body)
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"], r.text
    r = httpx.get(url + "/v1/collect.gif", params={"type": "page_view", "props": _deep(900)},
                  headers={"Host": "t.alpha.test"})
    assert r.status_code == 400 and "props" in r.text
    r = httpx.get(url + "/v1/collect.gif?type=page_view&type=bogus", headers={"Host": "t.alpha.test"})
    assert r.status_code == 400  # (the last value wins) -- and quarantine keeps the query as received
    # a number beyond float64 is refused as one process refuses it (shards got it as null)
    for bad in ({"type": "page_view", "x": 1e400}, {"type": "page_view", "ts": 1e400}):
        content = f'{{"type":"page_view","{next(k for k in bad if k != "type")}":1e400}}'.encode()
        r = post(url, "t.alpha.test", content=content)
        assert r.status_code == 400, r.text
    # event ids the lake would not store as they are (a retry would not match them)
    for eid in ("\\ud800-x", "\U0001F600" * 100):
        r = post(url, "t.alpha.test", content=f'{{"type":"page_view","event_id":"{eid}"}}'.encode())
        assert r.status_code == 400 and "event_id" in r.json()["error"], r.text
    # the valid event landed; every refusal is in quarantine with its reason
    wait_for_ids(data_dir.path, "site_a", {ok["event_id"]})
    assert wait_for(lambda: len(quarantine_rows(data_dir.path, "site_a")) >= 8, timeout=10)
    reasons = [q["error"] for q in quarantine_rows(data_dir.path, "site_a")]
    assert "type=page_view&type=bogus" in [q["payload"] for q in quarantine_rows(data_dir.path, "site_a")]
    assert sum("nested too deeply" in r for r in reasons) == 2
    assert sum("must be a finite number" in r for r in reasons) == 2
    assert sum("'event_id'" in r for r in reasons) == 2
    assert sum("'props'" in r for r in reasons) == 1, reasons
    assert httpx.get(url + "/healthz").status_code == 200


def test_a_malformed_body_takes_a_rate_limit_token(server_factory, tenants, data_dir):
    db = ControlDB(data_dir.control_db)
    set_config(db, "site_a", {"rate_limit_eps": 0.02, "rate_limit_burst": 3})
    db.close()
    s = server_factory(env=FAST_FLUSH)
    statuses = [post(s.url, "t.alpha.test", content=b'{"type": "bad", "pad": "' + b"x" * 1000).status_code
                for _ in range(8)]
    assert statuses[:3] == [400] * 3 and set(statuses[3:]) == {429}
    time.sleep(1.0)
    assert len(quarantine_rows(data_dir.path, "site_a")) == 3  # only what the plan let in is kept


def test_a_late_event_retried_across_a_restart_is_stored_once(server_factory, tenants, data_dir):
    late = event(ts=int(time.time() * 1000) - 5 * 86_400_000)  # lands in its own day, 5 days back
    s = server_factory(env=FAST_FLUSH)
    assert post(s.url, "t.alpha.test", late).json()["accepted"] == 1
    s.kill(signal.SIGTERM)  # a clean stop: the log is flushed into the lake
    s2 = server_factory(env=FAST_FLUSH)
    r = post(s2.url, "t.alpha.test", late)
    assert r.status_code == 200 and r.json()["duplicates"] == 1
    time.sleep(0.6)
    assert lake_ids(data_dir.path, "site_a").count(late["event_id"]) == 1


def test_the_rebuild_takes_a_row_s_site_from_its_directory_and_skips_what_it_cannot_read(tmp_path: Path):
    lake = LakeLayout.local(tmp_path / "lake")
    now = int(time.time() * 1000)
    own = codec.encode({"timestamp": now - 1000, "site_id": "site_a", "visitor_id": "v_a", "session_id": "s_a",
                        "event_type": "page_view", "event_id": "e-a"})
    planted = codec.encode({"timestamp": now - 1000, "site_id": "site_b", "visitor_id": "v_b",
                            "session_id": "s_planted", "event_type": "page_view", "event_id": "e-b"})
    part = Path(lake.partition_dir("site_a", day_of(now)))
    part.mkdir(parents=True)
    pq.write_table(codec.rows_to_table([own, planted]), part / "a.parquet")
    pq.write_table(pa.table({"timestamp": ["garbage"]}), part / "broken.parquet")
    rows = recent_rows(lake, now - 3_600_000, now)
    assert [(r["site_id"], r["visitor_id"]) for r in rows] == [("site_a", "v_a")]
