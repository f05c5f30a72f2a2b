"""The live stream through the real ingest path: ``clickstream serve`` (a subprocess), events
posted to ``POST /v1/collect``, viewers on ``/v1/stream`` over real sockets.  An event is
pushed once it is acknowledged (durably logged), with the scores the response carried."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.test_stream import events_of, recv_json, recv_until, stalled_socket

pytest.importorskip("ingest_worker.collect")
pytest.importorskip("ingest_worker.scoring")

UA = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"


def ev(event_type: str = "click", **fields) -> dict:
    return {"type": event_type, "url": "/pricing?utm_source=news", "event_id": uuid.uuid4().hex,
            "ts": int(time.time() * 1000), **fields}


def post(client: httpx.Client, url: str, host: str, body) -> httpx.Response:
    r = client.post(url + "/v1/collect", json=body, headers={"Host": host, "User-Agent": UA}, timeout=15)
    assert r.status_code == 200, r.text
    return r


def stream_health(url: str) -> dict:
    return httpx.get(url + "/healthz", timeout=5).json()["checks"]["stream"]


@pytest.mark.parametrize("shards", [1, 2], ids=["in-process", "2-shards"])
def test_collected_events_reach_only_their_sites_viewers(server_factory, tenants, shards):
    server = server_factory(extra_args=["--shards", str(shards)])
    a, b = tenants["site_a"], tenants["site_b"]
    ws_url = server.url.replace("http://", "ws://") + "/v1/stream"
    assert stream_health(server.url)["ingest_attached"] is True

    async def scenario():
        wa = await connect(f"{ws_url}?token={a.keys['read']}", compression=None)
        wb = await connect(f"{ws_url}?token={b.keys['read']}", compression=None)
        await wb.send(json.dumps({"subscribe": {"types": ["purchase"]}}))
        assert (await recv_json(wa))["type"] == "hello"
        assert (await recv_json(wb))["type"] == "hello"
        assert (await recv_json(wb))["type"] == "subscribed"
        with httpx.Client() as client:
            ra = await asyncio.to_thread(post, client, server.url, a.hostname,
                                         {"events": [ev("page_view"), ev("click", x=10, y=20)]})
            rb = await asyncio.to_thread(post, client, server.url, b.hostname,
                                         {"events": [ev("click"), ev("purchase", value=42.5, currency="EUR")]})
        got_a = events_of(await recv_until(wa, lambda m: m.get("event", {}).get("event_type") == "click"))
        got_b = events_of(await recv_until(wb, lambda m: m.get("type") == "event"))
        # nothing else arrives for site_b (the click was filtered out)
        with pytest.raises(TimeoutError):
            await recv_json(wb, 0.5)
        await wa.close()
        await wb.close()
        return ra.json(), rb.json(), got_a, got_b

    ra, rb, got_a, got_b = asyncio.run(scenario())
    assert [m["event"]["event_type"] for m in got_a] == ["page_view", "click"]
    assert {m["site_id"] for m in got_a} == {"site_a"}
    assert got_a[-1]["event"]["visitor_id"] == ra["visitor_id"]
    assert got_a[-1]["scores"] == ra["scores"]  # the same scores the page got back
    assert [m["event"]["event_type"] for m in got_b] == ["purchase"]
    assert got_b[0]["site_id"] == "site_b" and got_b[0]["event"]["value"] == 42.5
    assert got_b[0]["scores"] == rb["scores"]
    deadline = time.monotonic() + 5
    while stream_health(server.url)["sites"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream_health(server.url)["sites"] == 0


@pytest.mark.slow
def test_a_stalled_viewer_does_not_slow_collect(server, tenants, capsys):
    a = tenants["site_a"]
    ws_url = server.url.replace("http://", "ws://") + "/v1/stream"
    props = {"note": "y" * 3000}  # ~4 KB messages, so the stalled socket fills quickly
    batches, per_batch = 20, 100

    def ingest(n: int) -> list[float]:
        lat = []
        with httpx.Client() as client:
            for _ in range(n):
                body = {"events": [ev("click", props=props) for _ in range(per_batch)]}
                t0 = time.perf_counter()
                post(client, server.url, a.hostname, body)
                lat.append((time.perf_counter() - t0) * 1000)
        return lat

    async def scenario():
        healthy = await connect(f"{ws_url}?token={a.keys['read']}", compression=None, max_size=2**22)
        assert (await recv_json(healthy))["type"] == "hello"
        healthy_got: list[dict] = []

        async def drain_healthy(until_seq: int):
            healthy_got.extend(events_of(await recv_until(healthy, lambda m: m.get("seq") == until_seq, 60)))

        reader = asyncio.create_task(drain_healthy(batches * per_batch))
        without = await asyncio.to_thread(ingest, batches)
        await reader
        stalled = await connect(f"{ws_url}?token={a.keys['read']}&queue=50", compression=None,
                                sock=stalled_socket(server.port), max_queue=1, max_size=2**22)
        assert (await recv_json(stalled))["queue_size"] == 50
        reader = asyncio.create_task(drain_healthy(2 * batches * per_batch))
        with_stall = await asyncio.to_thread(ingest, batches)
        await reader
        dropped = stream_health(server.url)["dropped"]
        got = []
        while True:  # it reads again
            msg = await recv_json(stalled, 15)
            got.append(msg)
            if msg.get("seq") == 2 * batches * per_batch:
                break
        await healthy.close()
        await stalled.close()
        return without, with_stall, healthy_got, got, dropped

    without, with_stall, healthy_got, stalled_got, dropped = asyncio.run(scenario())
    med_without, med_with = statistics.median(without), statistics.median(with_stall)
    with capsys.disabled():
        print(f"\n[stream] POST /v1/collect ({per_batch} events/request) latency without a stalled viewer: "
              f"median {med_without:.1f} ms, max {max(without):.1f} ms; with a stalled viewer: median "
              f"{med_with:.1f} ms, max {max(with_stall):.1f} ms; the stalled viewer missed {dropped} events")
    total = batches * per_batch
    assert [m["seq"] for m in healthy_got] == list(range(1, 2 * total + 1))
    missed = [m["count"] for m in stalled_got if m["type"] == "missed"]
    events = [m for m in stalled_got if m["type"] == "event"]
    assert dropped > 0 and sum(missed) == dropped
    assert len(events) + sum(missed) == total
    assert med_with < 2 * med_without + 20  # ms; the stalled viewer is not waited for


def test_server_stops_promptly_with_open_streams(server_factory, tenants):
    """SIGTERM with a WebSocket and an SSE viewer attached: the server still exits (an SSE
    response never ends by itself; --graceful-timeout bounds the wait)."""
    import threading

    srv = server_factory(extra_args=["--graceful-timeout", "1"])
    key = tenants["site_a"].keys["read"]
    ended = threading.Event()

    def hold_sse():
        try:
            with httpx.stream("GET", f"{srv.url}/v1/stream.sse?token={key}", timeout=None) as r:
                for _ in r.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    threading.Thread(target=hold_sse, daemon=True).start()

    async def scenario():
        ws = await connect(srv.url.replace("http://", "ws://") + f"/v1/stream?token={key}", compression=None)
        assert (await recv_json(ws))["type"] == "hello"
        deadline = time.monotonic() + 5
        while stream_health(srv.url)["viewers"] < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert stream_health(srv.url)["viewers"] == 2
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(srv.proc.wait, 20)
        with pytest.raises(Exception):  # noqa: B017 - the socket is closed one way or another
            await recv_json(ws, 5)
        return code, time.monotonic() - t0

    code, took = asyncio.run(scenario())
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
    assert code in (0, -signal.SIGTERM) and took < 10, (code, took, srv.log())
    assert "Traceback" not in srv.log()
    assert ended.wait(5)
