"""The live stream hub over real sockets.

A real uvicorn server runs in a thread of the test process with the stream component
(``build_app(ctx, components=[...])``), so the tests can publish straight into the hub (as the
collect route does after acknowledging an event) and look at the hub registry.  Clients are
real: the ``websockets`` library and httpx streaming for Server-Sent Events.  The path
through ``POST /v1/collect`` is in ``test_stream_collect.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from clickstream_lake.codec import SCORE_NAMES
from clickstream_lake.context import AppContext
from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control.db import ControlDB
from ingest_worker.app import build_app
from ingest_worker.events import RequestInfo, TrackedEvent
from ingest_worker.stream import FilterError, Filters, StreamHub
from tests.conftest import free_port


# -- a real server in a thread ------------------------------------------------------------------
@dataclass
class LiveServer:
    url: str
    ws_url: str
    ctx: AppContext
    hub: StreamHub
    server: uvicorn.Server
    thread: threading.Thread

    def publish(self, site_id: str, event_type: str = "page_view", props: dict | None = None,
                **scores: float) -> TrackedEvent:
        ev = make_event(site_id, event_type)
        ev.props = props or {}
        full = {name: 10.0 for name in SCORE_NAMES[:4]}
        full.update(scores)
        ev.scores = full
        self.hub.publish(site_id, ev, full)
        return ev


def make_event(site_id: str, event_type: str = "page_view") -> TrackedEvent:
    now = int(time.time() * 1000)
    return TrackedEvent(type=event_type, ts_ms=now, event_id=uuid.uuid4().hex, url="/pricing?plan=pro",
                        title="Pricing", request=RequestInfo(site_id=site_id, received_ms=now, country="FR"),
                        visitor_id="v1", session_id="s1")


def start_live_server(data_dir, monkeypatch, *, queue: int = 1000, heartbeat_s: float = 15.0,
                      ping_interval: float = 20.0, ping_timeout: float = 20.0, config_ttl: float = 60.0) -> LiveServer:
    monkeypatch.setenv("CLICKSTREAM_STREAM_QUEUE", str(queue))
    monkeypatch.setenv("CLICKSTREAM_STREAM_HEARTBEAT_S", str(heartbeat_s))
    ctx = AppContext.open(str(data_dir.path), config_ttl=config_ttl)
    app = build_app(ctx, components=["ingest_worker.stream:component"])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            ws_ping_interval=ping_interval, ws_ping_timeout=ping_timeout)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("in-process server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", ctx,
                      ctx.components["stream"].hub, server, thread)


@pytest.fixture
def live(data_dir, tenants, monkeypatch) -> Iterator[LiveServer]:
    s = start_live_server(data_dir, monkeypatch)
    yield s
    s.server.should_exit = True
    s.thread.join(15)


@pytest.fixture
def live_factory(data_dir, tenants, monkeypatch):
    started: list[LiveServer] = []

    def make(**kwargs) -> LiveServer:
        s = start_live_server(data_dir, monkeypatch, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        s.server.should_exit = True
        s.thread.join(15)


def wait_until(predicate, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


async def recv_json(ws, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Messages received until one satisfies ``predicate`` (included)."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        out.append(msg)
        if predicate(msg):
            return out


def events_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m["type"] == "event":
            out.append(m)
        elif m["type"] == "batch":
            out.extend(m["events"])
    return out


async def open_viewer(live: LiveServer, key: str, query: str = "", **kwargs):
    ws = await connect(f"{live.ws_url}/v1/stream?token={key}{query}", compression=None, **kwargs)
    hello = await recv_json(ws)
    assert hello["type"] == "hello"
    return ws, hello


# -- isolation ------------------------------------------------------------------------------------
def test_viewers_receive_only_their_own_sites_events(live, tenants):
    a, b = tenants["site_a"], tenants["site_b"]

    async def scenario():
        wa1, hello = await open_viewer(live, a.keys["read"])
        assert hello["site_id"] == "site_a"
        # header authentication works too (a write key can read)
        wa2 = await connect(f"{live.ws_url}/v1/stream", compression=None,
                            additional_headers={"Authorization": f"Bearer {a.keys['write']}"})
        assert (await recv_json(wa2))["site_id"] == "site_a"
        wb, _ = await open_viewer(live, b.keys["admin"])
        assert sorted(live.hub.sites) == ["site_a", "site_b"]
        sent = {"site_a": [], "site_b": []}
        for i in range(20):
            site = "site_a" if i % 3 else "site_b"
            sent[site].append(live.publish(site, "click").event_id)
        got_a1 = events_of(await recv_until(wa1, lambda m: m.get("event", {}).get("event_id") == sent["site_a"][-1]))
        got_a2 = events_of(await recv_until(wa2, lambda m: m.get("event", {}).get("event_id") == sent["site_a"][-1]))
        got_b = events_of(await recv_until(wb, lambda m: m.get("event", {}).get("event_id") == sent["site_b"][-1]))
        for ws in (wa1, wa2, wb):
            await ws.close()
        return got_a1, got_a2, got_b, sent

    got_a1, got_a2, got_b, sent = asyncio.run(scenario())
    assert [m["event"]["event_id"] for m in got_a1] == sent["site_a"]
    assert [m["event"]["event_id"] for m in got_a2] == sent["site_a"]
    assert [m["event"]["event_id"] for m in got_b] == sent["site_b"]
    assert {m["site_id"] for m in got_a1} == {"site_a"} and {m["event"]["site_id"] for m in got_b} == {"site_b"}
    first = got_a1[0]
    # the decoded event and its scores, scores apart from the row values
    assert first["event"]["event_type"] == "click" and first["event"]["url"] == "/pricing?plan=pro"
    assert first["event"]["country"] == "FR" and first["scores"]["intent"] == 10.0
    assert "intent" not in first["event"]
    assert [m["seq"] for m in got_a1] == sorted(m["seq"] for m in got_a1)


# -- authentication ---------------------------------------------------------------------------------
def test_bad_missing_and_revoked_keys_are_refused(live, tenants, data_dir):
    a = tenants["site_a"]
    db = ControlDB(data_dir.control_db)
    secret, rec = keys_mod.create_key(db, "site_a", name="to revoke", permissions="read")
    keys_mod.revoke_key(db, rec.key_prefix)

    async def denied(url: str, **kw) -> tuple[int, dict]:
        with pytest.raises(InvalidStatus) as exc:
            await connect(url, compression=None, **kw)
        resp = exc.value.response
        return resp.status_code, json.loads(resp.body)

    async def scenario():
        out = {
            "missing": await denied(f"{live.ws_url}/v1/stream"),
            "unknown": await denied(f"{live.ws_url}/v1/stream?token=csk_not-a-real-key"),
            "revoked": await denied(f"{live.ws_url}/v1/stream",
                                    additional_headers={"Authorization": f"Bearer {secret}"}),
            "other_site": await denied(f"{live.ws_url}/v1/stream?token={a.keys['read']}&site=site_b"),
            "bad_filter": await denied(f"{live.ws_url}/v1/stream?token={a.keys['read']}&types=teleport"),
        }
        return out

    out = asyncio.run(scenario())
    assert out["missing"][0] == 401 and out["missing"][1]["reason"] == "missing_key"
    assert out["unknown"][0] == 401 and out["unknown"][1]["reason"] == "invalid_key"
    assert out["revoked"][0] == 401 and out["revoked"][1]["reason"] == "invalid_key"
    assert out["other_site"][0] == 403
    assert out["bad_filter"][0] == 400 and "teleport" in out["bad_filter"][1]["error"]
    # SSE answers the same refusals as plain HTTP
    assert httpx.get(f"{live.url}/v1/stream.sse", timeout=5).status_code == 401
    r = httpx.get(f"{live.url}/v1/stream.sse", headers={"Authorization": f"Bearer {secret}"}, timeout=5)
    assert r.status_code == 401 and r.json()["reason"] == "invalid_key"
    assert live.hub.sites == {}


def test_a_key_revoked_while_connected_closes_the_stream(live_factory, tenants, data_dir):
    live = live_factory(heartbeat_s=0.3, config_ttl=0.2)
    db = ControlDB(data_dir.control_db)
    secret, rec = keys_mod.create_key(db, "site_a", name="soon revoked", permissions="read")

    async def scenario():
        ws, _ = await open_viewer(live, secret)
        keys_mod.revoke_key(db, rec.key_prefix)
        msgs = []
        with pytest.raises(ConnectionClosed) as exc:
            while True:
                msgs.append(await recv_json(ws, 5))
        return msgs, exc.value.rcvd.code

    msgs, code = asyncio.run(scenario())
    assert code == 4401
    assert msgs[-1] == {"type": "error", "reason": "invalid_key", "error": "the API key was revoked"}
    assert wait_until(lambda: live.hub.sites == {})


# -- filters ----------------------------------------------------------------------------------------
def test_subscribe_filters_by_type_and_minimum_score(live, tenants):
    key = tenants["site_a"].keys["read"]

    async def scenario():
        filtered, _ = await open_viewer(live, key)
        everything, _ = await open_viewer(live, key)
        await filtered.send(json.dumps({"subscribe": {"types": ["click", "purchase"],
                                                      "min_scores": {"frustration": 70}}}))
        ack = await recv_json(filtered)
        await filtered.send(json.dumps({"subscribe": {"types": ["warp"]}}))
        bad = await recv_json(filtered)
        await filtered.send("not json")
        bad_json = await recv_json(filtered)
        cases = [("click", 90.0, True), ("click", 69.9, False), ("purchase", 70.0, True),
                 ("page_view", 99.0, False), ("purchase", 10.0, False), ("click", 100.0, True)]
        for event_type, frustration, _ in cases:
            live.publish("site_a", event_type, frustration=frustration)
        last = live.publish("site_a", "purchase", frustration=75.0).event_id
        got = events_of(await recv_until(filtered, lambda m: m.get("event", {}).get("event_id") == last))
        all_msgs = events_of(await recv_until(everything, lambda m: m.get("event", {}).get("event_id") == last))
        for ws in (filtered, everything):
            await ws.close()
        return ack, bad, bad_json, cases, got, all_msgs

    ack, bad, bad_json, cases, got, all_msgs = asyncio.run(scenario())
    assert ack == {"type": "subscribed", "filters": {"types": ["click", "purchase"],
                                                     "min_scores": {"frustration": 70.0}}, "batch": False}
    assert bad["type"] == "error" and bad["reason"] == "bad_filter" and "warp" in bad["error"]
    assert bad_json["type"] == "error" and bad_json["reason"] == "bad_json"
    expected = [(t, f) for t, f, keep in cases if keep] + [("purchase", 75.0)]
    assert [(m["event"]["event_type"], m["scores"]["frustration"]) for m in got] == expected
    assert len(all_msgs) == len(cases) + 1  # the other viewer of the site is not filtered


def test_filters_validation():
    f = Filters.from_query({"types": "click,purchase", "min.frustration": "70", "token": "x"})
    assert f.accepts("click", {"frustration": 70}) and not f.accepts("click", {"frustration": 69})
    assert not f.accepts("click", {}) and not f.accepts("click", {"frustration": float("nan")})
    assert not f.accepts("scroll", {"frustration": 99})
    assert Filters.from_query({}).accepts("scroll", {})
    for bad in ({"subscribe": {"types": "click"}}, {"subscribe": {"min_scores": {"nope": 1}}},
                {"subscribe": {"min_scores": {"intent": "high"}}}, {"subscribe": {"min_scores": {"intent": True}}},
                {"subscribe": {"colour": "red"}}, {"subscribe": {"batch": "yes"}}, {"subscribe": []}, []):
        with pytest.raises(FilterError):
            Filters.from_subscribe(bad)


# -- back-pressure ----------------------------------------------------------------------------------
def stalled_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer, so that a viewer that stops reading
    pushes back on the server quickly (as a phone on a bad network would)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


def test_a_stalled_viewer_loses_oldest_events_is_told_and_slows_nobody(live, tenants, capsys):
    key = tenants["site_a"].keys["read"]
    port = live.server.config.port
    total = 3000

    def ingest(n: int, pace_s: float) -> list[float]:
        """Publish n events at a steady pace from another thread (like the collect route
        answering requests); returns each publish call's latency in ms."""
        lat = []
        props = {"note": "x" * 4000}  # ~5 KB messages: the stalled socket's buffers fill sooner
        for i in range(n):
            t0 = time.perf_counter()
            live.publish("site_a", "click", props=props, intent=float(i % 100))
            lat.append((time.perf_counter() - t0) * 1000)
            if pace_s:
                time.sleep(pace_s)
        return lat

    async def scenario():
        healthy, _ = await open_viewer(live, key)
        baseline = await asyncio.to_thread(ingest, 500, 0.0005)
        await recv_until(healthy, lambda m: m.get("seq") == 500, timeout=10)
        # the stalled viewer: small queue, tiny socket buffer, stops reading after hello
        stalled = await connect(f"{live.ws_url}/v1/stream?token={key}&queue=50", compression=None,
                                sock=stalled_socket(port), max_queue=1, max_size=2**20)
        assert (await recv_json(stalled))["queue_size"] == 50
        first_seq = 501
        received_healthy: list[dict] = []

        async def read_healthy():
            received_healthy.extend(events_of(await recv_until(
                healthy, lambda m: m.get("seq") == 500 + total, timeout=30)))

        reader = asyncio.create_task(read_healthy())
        with_stall = await asyncio.to_thread(ingest, total, 0.0002)
        await reader
        stalled_viewer = next(v for v in live.hub.sites["site_a"].viewers if v.queue.maxlen == 50)
        dropped_while_stalled = stalled_viewer.missed_total
        # the stalled viewer reads again: a missed notice, then the newest events
        got = []
        while True:
            msg = await recv_json(stalled, 10)
            got.append(msg)
            if msg.get("seq") == 500 + total:
                break
        await healthy.close()
        await stalled.close()
        return baseline, with_stall, received_healthy, got, dropped_while_stalled, first_seq

    baseline, with_stall, healthy_got, stalled_got, dropped, first_seq = asyncio.run(scenario())

    def p(values, q):
        return statistics.quantiles(values, n=100)[q - 1]

    with capsys.disabled():
        print(f"\n[stream] publish latency without a stalled viewer: p50 {p(baseline, 50) * 1000:.1f} us, "
              f"p99 {p(baseline, 99) * 1000:.1f} us; with a stalled viewer: p50 {p(with_stall, 50) * 1000:.1f} us, "
              f"p99 {p(with_stall, 99) * 1000:.1f} us; stalled viewer dropped {dropped} of {total}")
    # the healthy viewer got everything, in order
    assert [m["seq"] for m in healthy_got] == list(range(first_seq, first_seq + total))
    # the stalled viewer really fell behind, and every event is accounted for: received or missed
    assert dropped > 0
    missed = [m["count"] for m in stalled_got if m["type"] == "missed"]
    events = [m for m in stalled_got if m["type"] == "event"]
    assert missed and sum(missed) == dropped
    assert len(events) + sum(missed) == total
    assert events[-1]["seq"] == 500 + total  # it lost the oldest, kept the newest
    seqs = [m["seq"] for m in events]
    assert seqs == sorted(seqs)
    # publishing never waited for the stalled viewer
    assert p(with_stall, 99) < max(5 * p(baseline, 99), 5.0)  # ms: GIL noise, not waiting
    assert wait_until(lambda: live.hub.sites == {})


# -- Server-Sent Events -----------------------------------------------------------------------------
def read_sse(lines: Iterator[str], until, timeout: float = 10.0) -> tuple[list[dict], list[str]]:
    messages, comments = [], []
    deadline = time.monotonic() + timeout
    for line in lines:
        if line.startswith("data: "):
            msg = json.loads(line[6:])
            messages.append(msg)
            if until(msg):
                break
        elif line.startswith(":"):
            comments.append(line)
            if until(None):
                break
        if time.monotonic() > deadline:
            raise AssertionError("SSE stream did not deliver in time")
    return messages, comments


def test_sse_with_query_filters_and_heartbeats(live_factory, tenants):
    live = live_factory(heartbeat_s=0.2)
    key = tenants["site_b"].keys["read"]
    with httpx.Client(timeout=10) as client:
        url = f"{live.url}/v1/stream.sse?types=click,purchase&min.frustration=70"
        with client.stream("GET", url, headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            assert next(lines) == "retry: 3000"
            assert wait_until(lambda: "site_b" in live.hub.sites)
            live.publish("site_a", "click", frustration=99)  # another site: never seen
            live.publish("site_b", "click", frustration=50)
            live.publish("site_b", "page_view", frustration=90)
            keep = live.publish("site_b", "purchase", frustration=80).event_id
            msgs, _ = read_sse(lines, lambda m: bool(m) and m.get("event", {}).get("event_id") == keep)
            assert msgs[0]["type"] == "hello" and msgs[0]["transport"] == "sse"
            assert msgs[0]["filters"] == {"types": ["click", "purchase"], "min_scores": {"frustration": 70.0}}
            assert [m["event"]["event_id"] for m in events_of(msgs)] == [keep]
            _, comments = read_sse(lines, lambda m: m is None)
            assert comments[0].startswith(": heartbeat")
        bad = client.get(f"{live.url}/v1/stream.sse?token={key}&min.frustration=lots")
        assert bad.status_code == 400 and "frustration" in bad.json()["error"]
    # closing the response detaches the viewer at once (not at the next heartbeat write)
    assert wait_until(lambda: live.hub.sites == {}, timeout=3)


# -- hub lifecycle ------------------------------------------------------------------------------------
def test_hubs_exist_only_while_watched(live_factory, tenants):
    live = live_factory(ping_interval=0.3, ping_timeout=0.5)
    key_a, key_b = tenants["site_a"].keys["read"], tenants["site_b"].keys["read"]
    assert live.hub.sites == {}
    # nobody watches: publishing costs a lookup and leaves nothing behind
    for _ in range(100):
        live.publish("site_a")
    assert live.hub.sites == {} and live.hub.published == 0

    async def scenario():
        a1, _ = await open_viewer(live, key_a)
        a2, _ = await open_viewer(live, key_a)
        b1, _ = await open_viewer(live, key_b)
        counts = [(sorted(live.hub.sites), len(live.hub.sites["site_a"].viewers))]
        await a1.close()
        assert wait_until(lambda: len(live.hub.sites["site_a"].viewers) == 1)
        counts.append(sorted(live.hub.sites))
        await a2.close()
        assert wait_until(lambda: "site_a" not in live.hub.sites)
        counts.append(sorted(live.hub.sites))
        await b1.close()
        assert wait_until(lambda: live.hub.sites == {})
        # a peer that vanishes without closing (no pong): found by ping/pong, hub removed
        raw = socket.create_connection(("127.0.0.1", live.server.config.port))
        raw.sendall((f"GET /v1/stream?token={key_a} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        assert b" 101 " in raw.recv(4096)
        attached = wait_until(lambda: "site_a" in live.hub.sites)
        t0 = time.monotonic()
        gone = await asyncio.to_thread(wait_until, lambda: live.hub.sites == {}, 5.0)
        raw.close()
        return counts, attached, gone, time.monotonic() - t0

    counts, attached, gone, took = asyncio.run(scenario())
    assert counts == [(["site_a", "site_b"], 2), ["site_a", "site_b"], ["site_b"]]
    assert attached and gone, "a silent peer must be dropped by the ping timeout"
    assert took < 3.0
    health = httpx.get(f"{live.url}/healthz", timeout=5).json()["checks"]["stream"]
    assert health["sites"] == 0 and health["viewers"] == 0
    metrics = httpx.get(f"{live.url}/metrics", timeout=5).text
    assert "clickstream_stream_viewers 0.0" in metrics


def test_publish_from_the_loop_thread_and_serialise_once(tenants):
    """Publishing on the loop (as the collect route does) serialises one payload shared by
    every viewer, and a NaN score is sent as null (JSON has no NaN)."""

    async def scenario():
        hub = StreamHub(queue_size=3)
        hub.bind_loop()
        viewers = [hub.attach("site_a") for _ in range(3)]
        ev = make_event("site_a", "error")
        hub.publish("site_a", ev, {"intent": float("nan"), "frustration": 80.0})
        assert [len(v.queue) for v in viewers] == [0, 0, 0]  # fanned out at the end of this loop turn
        await asyncio.sleep(0)
        payloads = [v.queue[0] for v in viewers]
        assert all(p is payloads[0] for p in payloads)  # one string object, shared
        msg = json.loads(payloads[0])
        assert msg["scores"] == {"intent": None, "frustration": 80.0}
        for _ in range(5):
            hub.publish("site_a", ev, {})
        await asyncio.sleep(0)
        assert [len(v.queue) for v in viewers] == [3, 3, 3] and viewers[0].missed == 3
        assert hub.published == 6  # serialised once per event, not per viewer
        hub.publish("site_b", ev, {})  # nobody watches site_b
        assert sorted(hub.sites) == ["site_a"]
        for v in viewers:
            hub.detach(v)
        assert hub.sites == {}

    asyncio.run(scenario())


def test_batch_mode_gathers_events_into_one_message(live, tenants):
    key = tenants["site_a"].keys["read"]

    async def scenario():
        ws, hello = await open_viewer(live, key, "&batch=1")
        assert hello["batch"] is True
        ids = [live.publish("site_a", "scroll").event_id for _ in range(30)]
        msgs = await recv_until(ws, lambda m: m["type"] == "batch" and m["events"][-1]["event"]["event_id"] == ids[-1])
        await ws.close()
        return ids, msgs

    ids, msgs = asyncio.run(scenario())
    batches = [m for m in msgs if m["type"] == "batch"]
    assert [e["event"]["event_id"] for e in events_of(batches)] == ids
    assert len(batches) < len(ids)  # published in one burst: gathered, not one message per event


@settings(deadline=None)
@given(queue_size=st.integers(1, 20),
       ops=st.lists(st.one_of(st.just("offer"), st.integers(1, 30)), max_size=200))
def test_viewer_queue_accounts_for_every_event(queue_size, ops):
    """Whatever the interleaving of publishing and (partial) reading: every offered event is
    delivered, still queued, or announced as missed — and order is kept."""
    from ingest_worker.stream import Viewer

    v = Viewer("site_a", Filters(), queue_size)
    offered, taken, announced = 0, [], 0
    for op in ops:
        if op == "offer":
            v.offer(str(offered))
            offered += 1
        else:
            announced += v.take_missed()
            taken.extend(v.take(op))
    announced += v.take_missed()
    assert len(taken) + len(v.queue) + announced == offered
    assert v.missed_total == announced and v.delivered == len(taken)
    seen = [int(x) for x in taken + list(v.queue)]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert len(v.queue) <= queue_size
    if offered:
        assert seen[-1] == offered - 1  # the newest is never the one dropped


@settings(deadline=None)
@given(queue_size=st.integers(1, 20),
       ops=st.lists(st.one_of(st.tuples(st.integers(1, 12), st.booleans()), st.integers(1, 30), st.just("batch")),
                    max_size=120))
def test_shared_batch_frames_always_match_the_queue(queue_size, ops):
    """Shared frames (built once per group) next to drops and partial reads: a batch message
    holds exactly the events it takes off the queue, in order, and every event is
    delivered, still queued or announced as missed."""
    from ingest_worker.stream import MAX_BATCH, Viewer, batch_frame

    v = Viewer("site_a", Filters(), queue_size, batch=True)
    offered, taken, announced, shared = 0, [], 0, 0
    for op in ops:
        if isinstance(op, tuple):
            n, with_frame = op
            payloads = [str(offered + i) for i in range(n)]
            offered += n
            v.offer_many(payloads, batch_frame(payloads) if with_frame else None)
        elif op == "batch":
            before = list(v.queue)
            frame = v.take_batch()
            if frame is None:
                assert not before
                continue
            events = json.loads(frame)["events"]
            assert [str(e) for e in events] == before[:len(events)]  # exactly what it took
            assert len(events) == min(len(before), MAX_BATCH)
            taken.extend(str(e) for e in events)
            shared = v.shared_frames
        else:
            taken.extend(v.take(op))
        announced += v.take_missed()
    assert len(taken) + len(v.queue) + announced == offered
    assert v.delivered == len(taken) and v.missed_total == announced
    seen = [int(x) for x in taken + list(v.queue)]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert shared <= v.shared_frames


def test_groups_share_one_frame_and_filters_split_them(tenants):
    """Viewers with the same filters get the same batch frame (one string object, built
    once per window), viewers with other filters their own; each event is serialised once
    whatever the number of viewers and groups; a stream viewer gets the same events one
    message each."""

    async def scenario():
        hub = StreamHub(batch_linger_s=0.005)
        hub.bind_loop()
        everything = [hub.attach("site_a", batch=True) for _ in range(3)]
        clicks = [hub.attach("site_a", Filters.build(["click"], None), batch=True) for _ in range(2)]
        frustrated = hub.attach("site_a", Filters.build(None, {"frustration": 70}), batch=True)
        stream = hub.attach("site_a")  # one message per event
        other_site = hub.attach("site_b", batch=True)
        sent = []
        for i in range(20):
            ev = make_event("site_a", "click" if i % 2 else "page_view")
            sent.append(ev.event_id)
            hub.publish("site_a", ev, {"frustration": float(i * 5)})
        await asyncio.sleep(0)  # the stream viewer's flush: end of this loop turn
        assert len(stream.queue) == 20 and all(not v.queue for v in everything)  # batch: still lingering
        await asyncio.sleep(0.05)
        frames = {name: [v.take_batch() for v in vs]
                  for name, vs in (("everything", everything), ("clicks", clicks), ("frustrated", [frustrated]))}
        assert other_site.take_batch() is None
        assert all(f is frames["everything"][0] for f in frames["everything"])  # one object, shared
        assert all(f is frames["clicks"][0] for f in frames["clicks"])
        ids = {name: [e["event"]["event_id"] for e in json.loads(fs[0])["events"]] for name, fs in frames.items()}
        assert ids["everything"] == sent
        assert ids["clicks"] == sent[1::2]
        assert ids["frustrated"] == sent[14:]  # frustration 70, 75, … 95
        assert [json.loads(m)["event"]["event_id"] for m in stream.take(100)] == sent
        assert hub.frames_built == 3  # one per group, not one per viewer
        assert hub.published == 20  # each event serialised once for 7 viewers in 4 groups
        assert all(v.shared_frames == 1 for v in everything + clicks)
        for v in everything + clicks + [frustrated, stream, other_site]:
            hub.detach(v)
        assert hub.sites == {}

    asyncio.run(scenario())


def test_resubscribe_keeps_published_events_under_the_old_filters(tenants):
    async def scenario():
        hub = StreamHub(batch_linger_s=0.005)
        hub.bind_loop()
        v = hub.attach("site_a", batch=True)
        first = [make_event("site_a", "page_view") for _ in range(3)]
        for ev in first:
            hub.publish("site_a", ev, {})
        hub.resubscribe(v, Filters.build(["click"], None), batch=False)  # before the batch flush
        later = make_event("site_a", "page_view")
        hub.publish("site_a", later, {})
        click = make_event("site_a", "click")
        hub.publish("site_a", click, {})
        await asyncio.sleep(0.03)
        got = [json.loads(frame)["event"]["event_id"] for frame in v.take(10)]
        assert got == [ev.event_id for ev in first] + [click.event_id]
        hub.detach(v)
        assert hub.sites == {}

    asyncio.run(scenario())


def test_batch_viewers_over_sockets_share_frames_and_keep_their_filters(live, tenants):
    key = tenants["site_a"].keys["read"]

    async def scenario():
        a, _ = await open_viewer(live, key, "&batch=1")
        b, _ = await open_viewer(live, key, "&batch=1")
        c, _ = await open_viewer(live, key, "&batch=1&types=click")
        loop = live.hub._loop
        events = [make_event("site_a", "click" if i % 3 == 0 else "scroll") for i in range(30)]
        built0 = live.hub.frames_built

        def burst():  # one window: published in one loop callback, as a collect request does
            for ev in events:
                live.hub.publish("site_a", ev, {"intent": 1.0})

        loop.call_soon_threadsafe(burst)
        raw_a, raw_b, raw_c = [await asyncio.wait_for(ws.recv(), 5) for ws in (a, b, c)]
        for ws in (a, b, c):
            await ws.close()
        return events, raw_a, raw_b, raw_c, live.hub.frames_built - built0

    events, raw_a, raw_b, raw_c, built = asyncio.run(scenario())
    assert raw_a == raw_b  # the same frame, byte for byte
    assert [e["event"]["event_id"] for e in json.loads(raw_a)["events"]] == [e.event_id for e in events]
    assert [e["event"]["event_id"] for e in json.loads(raw_c)["events"]] == [e.event_id for e in events[::3]]
    assert built == 2  # two filter groups → two frames for three viewers
    assert wait_until(lambda: live.hub.sites == {})


# -- stream tokens (what the dashboard's live-feed tile uses) -----------------------------------------
def test_stream_tokens_open_only_their_own_sites_stream(live, tenants, data_dir):
    from clickstream_lake.control.stream_tokens import StreamTokens

    tokens = live.ctx.components["stream"].tokens
    db = ControlDB(data_dir.control_db)
    _, rec_a = keys_mod.create_key(db, "site_a", name="dash a", permissions="read")
    token_a, _ = tokens.issue("site_a", rec_a.key_prefix)
    expired, _ = tokens.issue("site_a", rec_a.key_prefix, ttl_s=-1)
    foreign, _ = StreamTokens(b"not the server secret!").issue("site_a", rec_a.key_prefix)
    sse = f"{live.url}/v1/stream.sse"

    def refusal(url: str, token: str, **params: str) -> tuple[int, str]:
        r = httpx.get(url, params={"token": token, **params}, timeout=5)
        return r.status_code, r.json().get("reason", "")

    assert refusal(sse, token_a, site="site_b") == (403, "wrong_site")  # A's token, B's stream
    assert refusal(sse, expired) == (401, "expired_token")
    assert refusal(sse, foreign) == (401, "invalid_token")
    _, sig = token_a.split(".")
    retargeted = tokens.issue("site_b", rec_a.key_prefix)[0].split(".")[0] + "." + sig
    assert refusal(sse, retargeted) == (401, "invalid_token")

    async def scenario():
        ws, hello = await open_viewer(live, token_a)
        assert hello["site_id"] == "site_a"
        live.publish("site_b", "purchase")
        keep = live.publish("site_a", "click").event_id
        got = events_of(await recv_until(ws, lambda m: m.get("event", {}).get("event_id") == keep))
        await ws.close()
        return got

    got = asyncio.run(scenario())
    assert [m["site_id"] for m in got] == ["site_a"]
    # revoking the issuing key refuses its tokens from then on
    keys_mod.revoke_key(db, rec_a.key_prefix)
    assert refusal(sse, token_a) == (401, "invalid_token")
    assert wait_until(lambda: live.hub.sites == {})
