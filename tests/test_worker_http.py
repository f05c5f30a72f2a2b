"""Black-box tests of the collect endpoint over real HTTP on loopback (a real
``clickstream serve`` subprocess), reading what landed with pyarrow."""

from __future__ import annotations

import json
import os
import re
import time

import httpx
import pytest

from clickstream_lake.codec import SCORE_NAMES
from clickstream_lake.control.config import set_config
from clickstream_lake.control.db import ControlDB

from .worker_helpers import event, lake_ids, post, quarantine_rows, wait_for, wait_for_ids


def _configure(data_dir, site_id, **updates):
    db = ControlDB(data_dir.control_db)
    set_config(db, site_id, updates)
    db.close()


def test_events_land_only_under_their_own_site(server, tenants, data_dir):
    a_ids, b_ids = set(), set()
    for i in range(5):
        ev = event(url=f"/a/{i}")
        a_ids.add(ev["event_id"])
        r = post(server.url, "t.alpha.test", ev)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 1 and body["rejected"] == []
        assert body["visitor_id"] and body["session_id"]
        assert set(body["scores"]) == set(SCORE_NAMES)
        assert all(0 <= v <= 100 for v in body["scores"].values())
    batch = [event(url=f"/b/{i}") for i in range(3)]
    b_ids = {e["event_id"] for e in batch}
    r = post(server.url, "T.BETA.TEST:80", {"events": batch})  # case and port do not matter
    assert r.status_code == 200 and r.json()["accepted"] == 3
    got_a = wait_for_ids(data_dir.path, "site_a", a_ids)
    got_b = wait_for_ids(data_dir.path, "site_b", b_ids)
    assert sorted(got_a) == sorted(a_ids)
    assert sorted(got_b) == sorted(b_ids)


def test_unknown_host_is_404_json_and_stores_nothing(server, tenants, data_dir):
    r = post(server.url, "t.nobody.test", event())
    assert r.status_code == 404
    assert r.json()["reason"] == "unknown_host"
    assert not (data_dir.path / "lake" / "quarantine").exists() or not list(
        (data_dir.path / "lake" / "quarantine").glob("site_id=*"))
    assert "clickstream_unknown_host_requests_total 1.0" in httpx.get(server.url + "/metrics").text
    long_host = "x" * 60_000 + ".test"
    r = post(server.url, long_host, event())
    assert r.status_code == 404 and len(r.content) < 1_000  # the answer does not echo it whole


@pytest.mark.parametrize("host", ["T.ALPHA.TEST", "t.alpha.test.", "t.alpha.test:8787", "t.alpha.test.:80"])
def test_host_spellings_of_a_site_reach_it(server, tenants, host):
    assert post(server.url, host, event()).status_code == 200


def test_visitor_cookie_is_first_party_and_recognised(server, tenants):
    r = post(server.url, "t.alpha.test", event())
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("_cs_vid=")
    lowered = cookie.lower()
    for attr in ("httponly", "secure", "samesite=lax", "max-age=31536000", "domain=alpha.test", "path=/"):
        assert attr in lowered, cookie
    vid = r.json()["visitor_id"]
    again = post(server.url, "t.alpha.test", event(), headers={"Cookie": f"_cs_vid={vid}"})
    assert again.json()["visitor_id"] == vid


def test_consent_required_site_sets_no_cookie_without_consent(server_factory, tenants, data_dir):
    _configure(data_dir, "site_b", consent_required=True, cookie_max_age=3600)
    s = server_factory()
    no = post(s.url, "t.beta.test", event())
    assert no.status_code == 200 and no.json()["visitor_id"]
    assert "set-cookie" not in no.headers
    yes = post(s.url, "t.beta.test", event(consent=True))
    assert "max-age=3600" in yes.headers["set-cookie"].lower()
    # site_a does not require consent: cookie set
    assert "set-cookie" in post(s.url, "t.alpha.test", event()).headers


def test_mixed_batch_lands_good_events_and_lists_bad_ones(server, tenants, data_dir):
    good1, good2 = event(), event(type="click", target="#buy")
    batch = [good1, {"type": "teleport", "event_id": "bad-type"}, good2, {"url": "/no-type"}, "not an object"]
    r = post(server.url, "t.alpha.test", {"events": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert [x["index"] for x in body["rejected"]] == [1, 3, 4]
    assert all(x["error"] for x in body["rejected"])
    assert sorted(wait_for_ids(data_dir.path, "site_a", {good1["event_id"], good2["event_id"]})) == sorted(
        [good1["event_id"], good2["event_id"]])
    rows = wait_for(lambda: len(quarantine_rows(data_dir.path, "site_a")) >= 3 and quarantine_rows(
        data_dir.path, "site_a"))
    assert sorted(r["batch_index"] for r in rows) == [1, 3, 4]
    assert any("teleport" in r["payload"] for r in rows)


BAD_INPUTS = {
    "malformed_json": b'{"type": "page_view", ',
    "not_an_object": b'[1, 2, 3]',
    "wrong_type": json.dumps({"type": "page_view", "url": 42, "scroll_depth": "deep"}).encode(),
    "missing_type": json.dumps({"url": "/x"}).encode(),
    "unknown_event_type": json.dumps({"type": "teleport"}).encode(),
    "field_too_long": json.dumps({"type": "page_view", "url": "/" + "x" * 20_000}).encode(),
    "ts_far_future": json.dumps({"type": "page_view", "ts": 32_503_680_000_000}).encode(),
    "ts_before_2000": json.dumps({"type": "page_view", "ts": 900_000_000_000}).encode(),
    "batch_too_large": json.dumps({"events": [{"type": "click"}] * 501}).encode(),
    "empty_batch": json.dumps({"events": []}).encode(),
    "invalid_utf8": b'{"type": "page_view", "url": "\xff\xfe"}',
}


def test_every_bad_input_class_is_4xx_quarantined_and_server_keeps_serving(server, tenants, data_dir):
    for name, raw in BAD_INPUTS.items():
        r = post(server.url, "t.beta.test", content=raw)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert r.json()["error"], name
    big = b'{"type": "page_view", "url": "' + b"x" * 1_100_000 + b'"}'
    r = post(server.url, "t.beta.test", content=big)
    assert r.status_code == 413 and r.json()["reason"] == "body_too_large"
    ok = event()
    assert post(server.url, "t.beta.test", ok).status_code == 200
    assert wait_for_ids(data_dir.path, "site_b", {ok["event_id"]}) == [ok["event_id"]]
    rows = wait_for(lambda: len(quarantine_rows(data_dir.path, "site_b")) >= len(BAD_INPUTS)
                    and quarantine_rows(data_dir.path, "site_b"))
    assert rows, "rejected payloads must be quarantined"
    raws = [r["payload"] for r in rows]
    for name, raw in BAD_INPUTS.items():
        probe = raw.decode("utf-8", errors="replace")[:20]
        assert any(probe in x for x in raws), f"{name} not in quarantine"
    assert all(r["reason"] and r["error"] and r["status"] >= 400 for r in rows)


def test_retry_with_same_event_id_is_stored_once(server, tenants, data_dir):
    ev = event()
    for _ in range(3):
        assert post(server.url, "t.alpha.test", ev).status_code == 200
    other = event()
    post(server.url, "t.alpha.test", {"events": [other, other]})
    wait_for_ids(data_dir.path, "site_a", {ev["event_id"], other["event_id"]})
    wait_for(lambda: False, timeout=1.2)  # a few more flushes: nothing else may appear
    ids = lake_ids(data_dir.path, "site_a")
    assert sorted(ids) == sorted([ev["event_id"], other["event_id"]])


def test_pixel_lands_and_answers_a_gif(server, tenants, data_dir):
    r = httpx.get(server.url + "/v1/collect.gif", params={"type": "page_view", "url": "/pix", "event_id": "pix-1"},
                  headers={"Host": "t.alpha.test"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    assert r.content.startswith(b"GIF89a")
    assert wait_for_ids(data_dir.path, "site_a", {"pix-1"}) == ["pix-1"]
    bad = httpx.get(server.url + "/v1/collect.gif", params={"type": "teleport"}, headers={"Host": "t.alpha.test"})
    assert bad.status_code == 400 and bad.json()["error"]


def test_cors_preflight_allows_only_the_sites_domain(server, tenants):
    ok = httpx.options(server.url + "/v1/collect", headers={
        "Host": "t.alpha.test", "Origin": "https://www.alpha.test", "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://www.alpha.test"
    assert ok.headers["access-control-allow-credentials"] == "true"
    other = httpx.options(server.url + "/v1/collect", headers={
        "Host": "t.alpha.test", "Origin": "https://beta.test", "Access-Control-Request-Method": "POST"})
    assert other.status_code == 403 and other.json()["reason"] == "cors_origin"
    r = post(server.url, "t.alpha.test", event(), headers={"Origin": "https://alpha.test"})
    assert r.headers["access-control-allow-origin"] == "https://alpha.test"


def _timings(r: httpx.Response) -> dict[str, float]:
    """The Server-Timing metrics of an answer: ``collect`` always, ``log`` when events were stored."""
    header = r.headers["server-timing"]
    assert re.fullmatch(r"collect;dur=\d+\.\d{3}(, log;dur=\d+\.\d{3})?", header), header
    return {name: float(dur) for name, dur in re.findall(r"(\w+);dur=([\d.]+)", header)}


def _served_ms(r: httpx.Response) -> float:
    return _timings(r)["collect"]


def test_server_timing_gives_the_workers_share_of_each_answer(server, tenants):
    """Every collect answer (accepted, rejected, pixel) says how long it spent inside the worker;
    a page on the site's own domain may read it (Timing-Allow-Origin), another origin may not."""
    for _ in range(3):
        t0 = time.perf_counter()
        r = post(server.url, "t.alpha.test", event(), headers={"Origin": "https://www.alpha.test"})
        client_ms = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200
        timings = _timings(r)
        # inside the worker, so never more than the round trip; the log wait is part of it
        assert 0 < timings["log"] <= timings["collect"] <= client_ms
        assert r.headers["timing-allow-origin"] == "https://www.alpha.test"
    bad = post(server.url, "t.alpha.test", {"type": "teleport"})
    assert bad.status_code == 400 and set(_timings(bad)) == {"collect"}  # nothing stored: no log wait
    pixel = httpx.get(server.url + "/v1/collect.gif", params={"type": "page_view", "url": "/st"},
                      headers={"Host": "t.alpha.test"})
    assert pixel.status_code == 200 and _served_ms(pixel) > 0
    foreign = post(server.url, "t.alpha.test", event(), headers={"Origin": "https://beta.test"})
    assert "timing-allow-origin" not in foreign.headers and _served_ms(foreign) > 0


def test_rate_limit_answers_429_with_retry_after(server_factory, tenants, data_dir):
    _configure(data_dir, "site_a", rate_limit_eps=0.02, rate_limit_burst=5)  # one token per 50 s
    s = server_factory()
    statuses = [post(s.url, "t.alpha.test", event()).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    r = post(s.url, "t.alpha.test", event())
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and r.json()["reason"] == "rate_limited"
    assert post(s.url, "t.beta.test", event()).status_code == 200  # another site is not limited
    metrics = httpx.get(s.url + "/metrics").text
    assert 'clickstream_rate_limited_total{site="site_a"}' in metrics


def test_metrics_count_per_site(server, tenants, data_dir):
    good = [event(), event()]
    post(server.url, "t.alpha.test", {"events": [*good, {"type": "teleport"}]})
    wait_for_ids(data_dir.path, "site_a", {e["event_id"] for e in good})
    text = httpx.get(server.url + "/metrics").text
    assert 'clickstream_events_accepted_total{site="site_a"} 2.0' in text
    assert 'clickstream_events_rejected_total{' in text and 'site="site_a"' in text
    assert "clickstream_collect_latency_seconds_bucket" in text
    assert "clickstream_log_pending_bytes" in text
    # every acknowledged request waited for a group commit, and each one's duration is observed
    commits = re.search(r"^clickstream_log_group_commit_seconds_count (\S+)$", text, re.M)
    assert commits and float(commits.group(1)) >= 1
    # the flush read the rows with its compiled reader (tests/test_flush_compiled.py), and says so
    if os.environ.get("CLICKSTREAM_COMPILED_FLUSH") != "0":
        def compiled_rows() -> float:  # counted just after the flush publishes its files
            found = re.search(r"^clickstream_flush_compiled_rows_total (\S+)$",
                              httpx.get(server.url + "/metrics").text, re.M)
            return float(found.group(1)) if found else 0.0

        assert wait_for(lambda: compiled_rows() >= 2), compiled_rows()
        assert httpx.get(server.url + "/healthz").json()["checks"]["collect"]["flush_reader"] == "compiled"


@pytest.mark.parametrize("n", [500])
def test_largest_batch_is_accepted(server, tenants, data_dir, n):
    batch = [event(type="scroll", scroll_depth=50) for _ in range(n)]
    r = post(server.url, "t.beta.test", {"events": batch})
    assert r.status_code == 200 and r.json()["accepted"] == n
    ids = wait_for_ids(data_dir.path, "site_b", {e["event_id"] for e in batch})
    assert len(ids) == n
