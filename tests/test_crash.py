"""Durability over real processes: SIGKILL while a client streams events, and a disk that
refuses writes.  The lake must hold every acknowledged event exactly once."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.conftest import free_port

from .worker_helpers import event, lake_ids, post, wait_for

FAST_FLUSH = {"CLICKSTREAM_FLUSH_INTERVAL": "0.1"}


def _stream(url: str, host: str, acked: list[str], inflight: list[str], stop: threading.Event, batch: int) -> None:
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            evs = [event(event_id=uuid.uuid4().hex) for _ in range(batch)]
            ids = [e["event_id"] for e in evs]
            inflight.extend(ids)
            try:
                r = post(url, host, {"events": evs} if batch > 1 else evs[0], client=client)
            except httpx.HTTPError:
                return  # the server died under us: these ids stay "in flight"
            if r.status_code == 200:
                acked.extend(ids)
            for i in ids:
                inflight.remove(i)


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 2], ids=["in-process", "2-shards"])
def test_sigkill_while_streaming_loses_nothing_acknowledged_and_duplicates_nothing(server_factory, tenants, data_dir,
                                                                                  shards):
    sharding = ["--shards", str(shards)]
    s = server_factory(env=FAST_FLUSH, extra_args=sharding)
    acked: list[str] = []
    inflight: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_stream, args=(s.url, host, acked, inflight, stop, batch))
               for host, batch in (("t.alpha.test", 1), ("t.alpha.test", 20), ("t.alpha.test", 5))]
    for t in threads:
        t.start()
    started = time.monotonic()  # stream at least 2 s and until a few hundred events are acknowledged
    while (time.monotonic() - started < 2.0 or len(acked) < 300) and time.monotonic() - started < 30:
        time.sleep(0.05)
    s.kill(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 100, "the client should have streamed for a while"

    s2 = server_factory(env=FAST_FLUSH, extra_args=sharding)
    wait_for(lambda: set(acked) <= set(lake_ids(data_dir.path, "site_a")), timeout=15)
    ids = lake_ids(data_dir.path, "site_a")
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"{len(dupes)} duplicated rows"
    missing = set(acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged events lost"
    extra = set(ids) - set(acked)
    assert extra <= set(inflight), "only requests cut off by the kill may have landed unacknowledged"

    # the client retries what it never saw acknowledged (and, to be sure, some acked ones):
    retry = [event(event_id=i) for i in list(inflight) + acked[-50:]]
    for k in range(0, len(retry), 100):
        assert post(s2.url, "t.alpha.test", {"events": retry[k:k + 100]}).status_code == 200
    wait_for(lambda: set(inflight) <= set(lake_ids(data_dir.path, "site_a")), timeout=10)
    time.sleep(0.5)
    ids = lake_ids(data_dir.path, "site_a")
    assert len(ids) == len(set(ids)), "a retry after the restart was stored twice"
    assert set(ids) == set(acked) | set(inflight)


def _start_with_file_size_limit(data_dir, limit: int) -> tuple[subprocess.Popen, str]:
    port = free_port()

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "CLICKSTREAM_DATA": str(data_dir.path), "CLICKSTREAM_FLUSH_INTERVAL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clickstream_lake", "serve", "--port", str(port), "--data", str(data_dir.path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limit_file_size)
    url = f"http://127.0.0.1:{port}"
    if not wait_for(lambda: _healthy(url), timeout=60):
        proc.kill()
        raise RuntimeError("server did not start")
    return proc, url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_log_that_cannot_be_written_answers_503_and_acknowledges_nothing_unstored(tenants, data_dir):
    proc, url = _start_with_file_size_limit(data_dir, 256 * 1024)
    acked: list[str] = []
    refused: list[str] = []
    try:
        for _ in range(12):  # ~60 KB of log per request: the 256 KB segment limit is hit quickly
            evs = [event(title="t" * 200) for _ in range(100)]
            r = post(url, "t.alpha.test", {"events": evs})
            assert r.status_code in (200, 503), r.text
            (acked if r.status_code == 200 else refused).extend(e["event_id"] for e in evs)
            if r.status_code == 503:
                assert r.json()["reason"] == "log_unavailable" and r.headers["retry-after"]
        assert refused, "the file size limit should have made the log refuse writes"
        assert acked
        time.sleep(2.5)  # the flusher rotates to a fresh segment: writes succeed again
        later = event()
        assert post(url, "t.alpha.test", later).status_code == 200
        acked.append(later["event_id"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    ids = lake_ids(data_dir.path, "site_a")
    assert sorted(ids) == sorted(acked), "the lake must hold exactly the acknowledged events"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_graceful_stop_flushes_everything_acknowledged(server_factory, tenants, data_dir, sig):
    s = server_factory(env={"CLICKSTREAM_FLUSH_INTERVAL": "30"})  # only the stop can flush
    evs = [event() for _ in range(50)]
    assert post(s.url, "t.beta.test", {"events": evs}).status_code == 200
    s.proc.send_signal(sig)
    assert s.proc.wait(timeout=60) is not None
    assert sorted(lake_ids(data_dir.path, "site_b")) == sorted(e["event_id"] for e in evs)
