"""In-process checks of the worker's smaller parts: the live-stream hook, the token bucket,
the dedupe window."""

from __future__ import annotations

from starlette.testclient import TestClient

from clickstream_lake.context import AppContext
from ingest_worker.app import build_app
from ingest_worker.pipeline import DedupeWindow
from ingest_worker.ratelimit import RateLimiter, retry_after_header


def test_subscribers_are_called_after_acknowledgement(data_dir, tenants, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_COMPACT_INTERVAL", "0")
    ctx = AppContext.open(str(data_dir.path))
    app = build_app(ctx, components=["ingest_worker.collect:component"])
    seen = []
    with TestClient(app, base_url="http://t.alpha.test") as client:
        collect = ctx.components["collect"]
        collect.subscribers.append(lambda site, ev, scores: seen.append((site, ev.event_id, dict(scores))))
        first = client.post("/v1/collect", json={"events": [{"type": "page_view", "event_id": "h1"},
                                                        {"type": "teleport"},
                                                        {"type": "click", "event_id": "h2"}]})
        assert first.status_code == 200, first.text
        assert first.json()["accepted"] == 2
        # a subscriber that raises never fails the request
        collect.subscribers.append(lambda *a: 1 / 0)
        assert client.post("/v1/collect", json={"type": "page_view", "event_id": "h3"}).status_code == 200
    assert [(s, e) for s, e, _ in seen] == [("site_a", "h1"), ("site_a", "h2"), ("site_a", "h3")]
    assert seen[1][2] == first.json()["scores"]  # the answer carries the last accepted event's scores


def test_token_bucket_refills_at_the_plan_rate():
    now = [0.0]
    rl = RateLimiter(clock=lambda: now[0])
    assert rl.take("s", 10, rate=5.0, burst=10) == 0.0
    wait = rl.take("s", 1, rate=5.0, burst=10)
    assert abs(wait - 0.2) < 1e-9
    assert retry_after_header(wait) == "1"
    now[0] = 0.2
    assert rl.take("s", 1, rate=5.0, burst=10) == 0.0
    assert rl.take("other", 10, rate=5.0, burst=10) == 0.0  # buckets are per site
    now[0] = 100.0
    assert rl.take("s", 10, rate=5.0, burst=10) == 0.0  # refilled, capped at the burst
    assert rl.take("s", 1, rate=5.0, burst=10) > 0


def test_dedupe_window_forgets_oldest_first():
    w = DedupeWindow(max_entries=3)
    for k in "abcd":
        w.add(("s", k))
    assert ("s", "a") not in w and ("s", "d") in w and len(w) == 3
    w.discard(("s", "d"))
    assert ("s", "d") not in w


def test_dedupe_reserve_is_contains_then_add():
    a, b = DedupeWindow(max_entries=3), DedupeWindow(max_entries=3)
    for k in "abcbdaeb":
        key = ("s", k)
        fresh = key not in a
        if fresh:
            a.add(key)
        assert b.reserve(key) is fresh
        assert list(a._seen) == list(b._seen)


def test_startup_moves_the_heap_out_of_the_collectors_reach(data_dir, tenants, monkeypatch):
    """After start-up every object alive is frozen, so a full collection does not walk them
    while requests wait (``CLICKSTREAM_GC_FREEZE=0`` keeps the default collector)."""
    import gc

    monkeypatch.setenv("CLICKSTREAM_COMPACT_INTERVAL", "0")
    for setting, frozen in (("0", False), ("1", True)):
        gc.unfreeze()
        monkeypatch.setenv("CLICKSTREAM_GC_FREEZE", setting)
        app = build_app(AppContext.open(str(data_dir.path)), components=["ingest_worker.collect:component"])
        try:
            with TestClient(app, base_url="http://t.alpha.test") as client:
                assert (gc.get_freeze_count() > 10_000) is frozen, gc.get_freeze_count()
                assert client.post("/v1/collect", json={"type": "page_view"}).status_code == 200
        finally:
            gc.unfreeze()
