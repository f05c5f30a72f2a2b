"""Visitor-sharded scoring (``clickstream serve --shards N``, ingest_worker/shards.py).

In process: the route of an event is the visitor it resolves to; the shard function is
stable and spreads.  Over real HTTP: a sharded server answers and lands what one process
does; event ids stay exactly-once across shards (retries from another visitor, repeats in
a batch, concurrent requests); a shard killed with SIGKILL starts again, its visitors keep
their sessions, and nothing acknowledged is lost; the shards leave with the server."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream_lake.control.config import SiteConfig
from ingest_worker import normalize
from ingest_worker.events import RequestInfo
from ingest_worker.identity import routing_id
from ingest_worker.scoring import Scorer
from ingest_worker.shards import shard_of

from .worker_helpers import (
    event,
    lake_ids,
    lake_table,
    post,
    quarantine_rows,
    site_a_data_dir,
    wait_for,
    wait_for_ids,
)

SECRET = "shard-test-secret"
ENV = {"CLICKSTREAM_ID_SECRET": SECRET, "CLICKSTREAM_FLUSH_INTERVAL": "0.1"}
HOST = "t.alpha.test"
NOW = 1_790_000_000_000


def sdk_ids_on_two_shards(count: int = 2) -> tuple[str, str]:
    """Two SDK visitor ids (already in visitor-id shape, so used as they are) that fall on
    different shards."""
    ids = [f"v_{uuid.uuid4().hex}" for _ in range(64)]
    first = ids[0]
    other = next(i for i in ids if shard_of(i, count) != shard_of(first, count))
    return first, other


def shard_health(url: str) -> dict:
    return httpx.get(url + "/healthz", timeout=5).json()["checks"]["collect"]["shards"]


def all_ready(url: str) -> dict:
    """The shard health once every shard has rebuilt its sessions and serves."""
    assert wait_for(lambda: (h := shard_health(url))["ready"] == h["count"], timeout=60)
    return shard_health(url)


# --- in process ------------------------------------------------------------------------------------
visitor_ids = st.one_of(st.none(), st.just(""), st.just("   "), st.text(max_size=40),
                        st.from_regex(r"v_[0-9a-f]{32}", fullmatch=True), st.integers())
cookies = st.one_of(st.just(""), st.from_regex(r"v_[0-9a-f]{32}", fullmatch=True), st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(vid=visitor_ids, consent=st.sampled_from([None, True, False, "yes"]), cookie=cookies,
       consent_required=st.booleans(), ua=st.text(max_size=30), ip=st.sampled_from(["203.0.113.9", "2001:db8::1"]))
def test_an_event_is_routed_by_the_visitor_it_resolves_to(vid, consent, cookie, consent_required, ua, ip):
    config = SiteConfig(site_id="site_a", consent_required=consent_required)
    info = RequestInfo(site_id="site_a", received_ms=NOW, user_agent=ua, ip=ip, cookie_visitor_id=cookie)
    obj = {"type": "page_view", "url": "/", "event_id": "e1", "ts": NOW}
    if vid is not None:
        obj["visitor_id"] = vid
    if consent is not None:
        obj["consent"] = consent
    scorer = Scorer(secret=SECRET)
    route = routing_id(obj, info, config, scorer.secret)
    event = normalize.parse_event(obj, info)
    if isinstance(event, normalize.Rejection):
        return  # a shard rejects it wherever it goes
    scorer.process(event, config)
    assert event.visitor_id == route


def test_the_shard_of_a_visitor_is_stable_and_spreads():
    # crc32, not Python's per-process randomised hash: the server and every shard agree
    # (crc32 of this id is 3893384364)
    assert shard_of("v_0123456789abcdef0123456789abcdef", 2) == 0
    assert shard_of("v_0123456789abcdef0123456789abcdef", 16) == 12
    for count in (2, 3, 8):
        shares = Counter(shard_of(f"v_{uuid.uuid4().hex}", count) for _ in range(6000))
        assert set(shares) == set(range(count))
        assert min(shares.values()) > 6000 / count * 0.85


# --- over HTTP --------------------------------------------------------------------------------------
def _traffic() -> list[tuple[dict, dict]]:
    """(headers, body) of a small mixed day: SDK visitors, cookie visitors, cookieless ones,
    a bad event in a batch, a pixel-sized single event."""
    t0 = int(time.time() * 1000) - 600_000
    reqs = []
    for v in range(12):
        headers = {"User-Agent": f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{100 + v}.0",
                   "X-Forwarded-For": f"198.51.100.{v}"}
        if v % 3 == 1:
            headers["Cookie"] = f"_cs_vid=v_{v:032x}"
        for k in range(3):
            evs = [{"type": t, "url": f"/p{v}/{k}?utm_source=s{v % 2}", "event_id": f"ev-{v}-{k}-{j}",
                    "ts": t0 + v * 1000 + k * 20_000 + j * 500, **({"visitor_id": f"sdk-{v}"} if v % 3 == 0 else {})}
                   for j, t in enumerate(("page_view", "scroll", "click"))]
            if k == 1 and v % 4 == 0:
                evs.insert(1, {"type": "teleport", "event_id": f"bad-{v}"})
            reqs.append((headers, {"events": evs} if k != 2 else evs[0]))
    return reqs


def test_a_sharded_server_answers_and_lands_what_one_process_does(server_factory, tenants, data_dir, tmp_path):
    other = site_a_data_dir(tmp_path / "data2")
    one = server_factory(env=ENV)
    sharded = server_factory(data=other, env=ENV, extra_args=["--shards", "2"])
    answers = {}
    traffic = _traffic()
    with httpx.Client(timeout=10) as client:
        for name, srv in (("one", one), ("sharded", sharded)):
            got = []
            for headers, body in traffic:
                r = post(srv.url, HOST, body, headers=headers, client=client)
                assert r.status_code == 200, r.text
                a = r.json()
                got.append((a["visitor_id"], a["session_id"], a["accepted"], a["rejected"], a.get("duplicates", 0),
                            a["scores"], r.headers.get("set-cookie", "").split(";")[0]))
            answers[name] = got
    assert len(answers["one"]) == 36
    for mine, theirs in zip(answers["one"], answers["sharded"], strict=True):
        assert mine[:5] == theirs[:5]
        assert mine[6] == theirs[6]  # the same cookie set (or none)
        assert mine[5] == pytest.approx(theirs[5], abs=1e-6)  # the scores of the last event
    health = shard_health(sharded.url)
    assert health["ready"] == 2 and all(n > 0 for n in health["events"]), health

    ids = {f"ev-{v}-{k}-{j}" for v in range(12) for k in range(3) for j in range(3 if k != 2 else 1)}
    cols = ["blob18", "blob2", "blob3", "blob4", "blob5"]  # event id, visitor, session, type, url
    rows = {}
    for name, d in (("one", data_dir.path), ("sharded", other.path)):
        assert set(wait_for_ids(d, "site_a", ids)) == ids
        t = lake_table(d, "site_a").select(cols)
        rows[name] = sorted(zip(*(t.column(c).to_pylist() for c in cols), strict=True))
        assert wait_for(lambda d=d: len(quarantine_rows(d, "site_a")) == 3)  # the three "teleport" events
    assert rows["one"] == rows["sharded"]


def test_event_ids_are_exactly_once_across_shards(server_factory, tenants, data_dir):
    s = server_factory(env=ENV, extra_args=["--shards", "2"])
    a, b = sdk_ids_on_two_shards()
    with httpx.Client(timeout=10) as client:
        first = event(visitor_id=a)
        r = post(s.url, HOST, first, client=client)
        assert r.status_code == 200 and r.json()["accepted"] == 1 and "duplicates" not in r.json()
        # the retry comes from a visitor on the other shard: still a duplicate
        r = post(s.url, HOST, dict(first, visitor_id=b), client=client)
        assert r.status_code == 200 and r.json()["duplicates"] == 1, r.text
        # an invalid event with a stored id is rejected (and quarantined), not a duplicate
        r = post(s.url, HOST, dict(first, type="teleport"), client=client)
        assert r.status_code == 400 and r.json()["reason"] == "bad_type", r.text

        # one id three times in a batch: the first is invalid, the second (other shard) is
        # stored, the third is its duplicate -- as one process decides it
        k2 = uuid.uuid4().hex
        batch = [event(event_id=k2, visitor_id=a, type="teleport"), event(event_id=k2, visitor_id=b),
                 event(event_id=k2, visitor_id=a), event(visitor_id=a)]
        r = post(s.url, HOST, {"events": batch}, client=client)
        body = r.json()
        assert r.status_code == 200, r.text
        assert body["accepted"] == 3 and body["duplicates"] == 1
        assert [x["index"] for x in body["rejected"]] == [0]
        assert body["visitor_id"] == a  # the last accepted event's visitor

    # concurrent requests carrying one new id, from visitors on both shards: stored once
    k3 = uuid.uuid4().hex
    results: list[dict] = []

    def send(vid: str) -> None:
        with httpx.Client(timeout=10) as c:
            results.append(post(s.url, HOST, event(event_id=k3, visitor_id=vid), client=c).json())

    threads = [threading.Thread(target=send, args=(v,)) for v in (a, b) * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(x["accepted"] == 1 for x in results), results
    assert sum(1 for x in results if not x.get("duplicates")) == 1, results

    ids = wait_for_ids(data_dir.path, "site_a", {first["event_id"], k2, k3, batch[3]["event_id"]})
    counts = Counter(ids)
    assert counts[first["event_id"]] == counts[k2] == counts[k3] == 1, counts
    visitors = dict(zip(lake_table(data_dir.path, "site_a").column("blob18").to_pylist(),
                        lake_table(data_dir.path, "site_a").column("blob2").to_pylist(), strict=True))
    assert visitors[first["event_id"]] == a and visitors[k2] == b
    reasons = [q for q in quarantine_rows(data_dir.path, "site_a")]
    assert len(reasons) >= 2  # the invalid retry and the invalid first of the batch


def test_events_json_cannot_carry_reach_their_shard_and_land(server_factory, tenants, data_dir):
    """A lone surrogate (a JSON escape orjson will not encode) or an integer beyond 64 bits
    travel to the shard pickled; the answer is the one process's."""
    s = server_factory(env=ENV, extra_args=["--shards", "2"])
    one = server_factory(env=ENV, data=site_a_data_dir(data_dir.path.parent / "one"))
    bodies = [b'{"type": "click", "title": "\\ud800 title", "event_id": "odd-1", "visitor_id": "sdk-odd"}',
              b'{"events": [{"type": "custom", "name": "n", "event_id": "odd-2", '
              b'"props": {"big": -99999999999999999999999}}, {"type": "click", "event_id": "odd-3", '
              b'"x": 123456789012345678901234}]}']
    accepted = 0
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            answers = [post(srv.url, HOST, content=body, client=client) for srv in (one, s)]
            assert answers[0].status_code == answers[1].status_code < 500, [a.text for a in answers]
            mine, theirs = answers[0].json(), answers[1].json()
            assert (mine["accepted"], mine["rejected"]) == (theirs["accepted"], theirs["rejected"])
            assert mine["visitor_id"] == theirs["visitor_id"]
            accepted += theirs["accepted"]
    assert accepted >= 2  # the lone surrogate's event and the long x's at least
    lakes = [one.data.path, data_dir.path]
    assert wait_for(lambda: all(len(lake_ids(p, "site_a")) == accepted for p in lakes))
    assert set(lake_ids(lakes[0], "site_a")) == set(lake_ids(lakes[1], "site_a")) >= {"odd-1", "odd-3"}
    titles = dict(zip(lake_table(data_dir.path, "site_a").column("blob18").to_pylist(),
                      lake_table(data_dir.path, "site_a").column("blob11").to_pylist(), strict=True))
    assert titles["odd-1"].endswith(" title")  # the lone surrogate cleaned, the rest kept


def test_a_killed_shard_starts_again_and_nothing_acknowledged_is_lost(server_factory, tenants, data_dir):
    s = server_factory(env=ENV, extra_args=["--shards", "2"])
    a, b = sdk_ids_on_two_shards()
    victim = shard_of(a, 2)
    pid = all_ready(s.url)["pids"][victim]
    with httpx.Client(timeout=10) as client:
        r = post(s.url, HOST, {"events": [event(visitor_id=a), event(visitor_id=a)]}, client=client)
        session = r.json()["session_id"]
        assert wait_for(lambda: len(lake_ids(data_dir.path, "site_a")) == 2, timeout=10)

    acked: list[str] = []
    statuses: Counter[int] = Counter()
    reasons: set[str] = set()
    stop = threading.Event()

    errors: list[BaseException] = []

    def stream() -> None:
        try:
            send_until_stopped()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    def send_until_stopped() -> None:
        n = 0
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                evs = [event(visitor_id=a if (n + j) % 2 else b) for j in range(4)]
                n += 1
                r = post(s.url, HOST, {"events": evs}, client=c)
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    acked.extend(e["event_id"] for e in evs)
                else:
                    reasons.add(r.json()["reason"] + ("" if r.headers.get("retry-after") else " (no Retry-After)"))

    t = threading.Thread(target=stream)
    t.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    restarted = wait_for(lambda: (h := shard_health(s.url))["restarts"] >= 1 and h["ready"] == 2, timeout=30)
    time.sleep(0.5)
    stop.set()
    t.join()
    assert not errors, errors
    assert restarted, shard_health(s.url)
    assert set(statuses) <= {200, 503}, statuses
    assert reasons <= {"shard_unavailable"}
    new_pid = shard_health(s.url)["pids"][victim]
    assert new_pid != pid
    metrics = httpx.get(s.url + "/metrics", timeout=5).text
    assert "clickstream_scoring_shard_restarts_total 1.0" in metrics
    assert "clickstream_scoring_shards_ready 2.0" in metrics

    ids = wait_for_ids(data_dir.path, "site_a", set(acked), timeout=15)
    assert set(acked) <= set(ids)
    counts = Counter(ids)
    assert max(counts.values()) == 1
    assert len(ids) == len(acked) + 2  # nothing unacknowledged landed
    # the restarted shard rebuilt its visitors from the lake: the session goes on
    with httpx.Client(timeout=10) as client:
        r = post(s.url, HOST, event(visitor_id=a), client=client)
        assert r.json()["session_id"] == session


def test_a_hung_shard_is_killed_and_started_again(server_factory, tenants, data_dir):
    s = server_factory(env={**ENV, "CLICKSTREAM_SHARD_TIMEOUT": "2"}, extra_args=["--shards", "2"])
    a, b = sdk_ids_on_two_shards()
    pid = all_ready(s.url)["pids"][shard_of(a, 2)]
    os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        with httpx.Client(timeout=20) as client:
            t0 = time.monotonic()
            r = post(s.url, HOST, {"events": [event(visitor_id=a), event(visitor_id=b)]}, client=client)
            assert r.status_code == 503 and r.json()["reason"] == "shard_unavailable", r.text
            assert time.monotonic() - t0 < 10
            # the other shard's visitors were served meanwhile, and the hung one was replaced
            assert post(s.url, HOST, event(visitor_id=b), client=client).status_code == 200
            assert wait_for(lambda: (h := shard_health(s.url))["restarts"] == 1 and h["ready"] == 2, timeout=30)
            assert shard_health(s.url)["pids"][shard_of(a, 2)] != pid
            ok = event(visitor_id=a)
            assert post(s.url, HOST, ok, client=client).status_code == 200
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ids = wait_for_ids(data_dir.path, "site_a", {ok["event_id"]})
    assert len(ids) == 2  # the 503 stored nothing: only the two events answered 200


def test_the_shards_leave_with_the_server(server_factory, tenants):
    s = server_factory(env=ENV, extra_args=["--shards", "3"])
    pids = all_ready(s.url)["pids"]
    assert len(pids) == 3 and all(pids)
    s.kill(signal.SIGKILL)  # not even a graceful stop: the shards see their socket close

    def gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                continue
        return True

    assert wait_for(gone, timeout=10)


def test_shards_out_of_range_are_refused(tmp_path, data_dir):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "clickstream_lake", "serve", "--shards", "0", "--data",
                        str(data_dir.path)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--shards" in (r.stderr + r.stdout)
    r = subprocess.run([sys.executable, "-m", "clickstream_lake", "serve", "--data", str(data_dir.path)],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "CLICKSTREAM_SHARDS": "two"})
    assert r.returncode != 0 and "CLICKSTREAM_SHARDS must be a whole number" in (r.stderr + r.stdout)
    assert "Traceback" not in r.stderr
