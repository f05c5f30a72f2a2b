"""The collect pipeline's fast paths change no output: compact "r1" log records, the keyed
hash and identity caches, the models-enabled memo -- and the whole pipeline against its
reference path (checked parsing, dict records), row for row."""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry

from clickstream_lake import codec
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.config import ConfigCache, SiteConfig, set_config
from clickstream_lake.control.db import ControlDB
from clickstream_lake.lake import LakeLayout
from clickstream_lake.settings import DataDir
from ingest_worker import identity, normalize
from ingest_worker import pipeline as pl
from ingest_worker import scoring as scoring_mod
from ingest_worker.collect import _acknowledged_ids
from ingest_worker.durable_log import DurableLog, frame, list_segments
from ingest_worker.events import ROW_FIELDS_V1, row_value_list, to_row_values
from ingest_worker.flusher import event_record, flush_segments, record_values, row_record
from ingest_worker.metrics import WorkerMetrics
from ingest_worker.scoring import Scorer
from ingest_worker.scoring.formulas import build

NOW = 1_764_000_000_000
UAS = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
       "curl/8.5.0", "")


def _raw_events(rng: random.Random, n: int) -> list[dict]:
    urls = ["/", "/pricing", "/cart?utm_source=a&utm_campaign=b", "https://shop.test/p/1?gclid=zz", "/blog/x?q=%20",
            "/reviews", "/checkout"]
    out = []
    for i in range(n):
        kind = rng.choice(("page_view", "click", "scroll", "engagement", "purchase", "error", "custom"))
        ev: dict = {"type": kind, "url": rng.choice(urls), "event_id": f"e{i}-{rng.random()}", "ts": NOW - rng.randint(0, 9000)}
        if kind == "click":
            ev.update(x=rng.randint(0, 50), y=rng.randint(0, 50), target=rng.choice(["b", "a.price", "x [dead]"]))
        if kind == "purchase":
            ev.update(value=rng.uniform(0, 99), currency="EUR", order_id=rng.choice([7, "o-1"]))
        if rng.random() < 0.3:
            ev["props"] = {"k": rng.choice([1, "é", None, True]), "webdriver": rng.random() < 0.1}
        if rng.random() < 0.3:
            ev["title"] = rng.choice(["Pricing", "café", "x" * 300])
        if rng.random() < 0.2:
            ev["consent"] = rng.random() < 0.5
        if rng.random() < 0.2:
            ev["referrer"] = rng.choice(["https://www.google.com/", "https://t.co/x"])
        out.append(ev)
    return out


def _scored_events(seed: int, n: int = 200, config: SiteConfig | None = None):
    rng = random.Random(seed)
    scorer = Scorer(secret=b"k" * 32)
    config = config or SiteConfig(site_id="site_a", domain="shop.test")
    events = []
    for i, raw in enumerate(_raw_events(rng, n)):
        info = normalize.request_info("site_a", {"user-agent": UAS[i % 4], "cf-ipcountry": "FR"}, f"10.0.0.{i % 3}", NOW)
        ev = normalize.parse_event(raw, info)
        assert not isinstance(ev, normalize.Rejection), ev
        scorer.process(ev, config)
        events.append(ev)
    return events


# --- "r1" records ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_row_value_list_is_to_row_values_in_order(seed):
    for ev in _scored_events(seed):
        values = row_value_list(ev)
        assert values is not None
        row = to_row_values(ev)
        assert list(row) == list(ROW_FIELDS_V1)
        assert dict(zip(ROW_FIELDS_V1, values, strict=True)) == row
        assert [type(v) for v in values] == [type(v) for v in row.values()]


def test_odd_scores_keep_the_dict_record():
    ev = _scored_events(1, 3)[-1]
    ev.scores = {**ev.scores, "intent": math.nan}
    assert row_value_list(ev) is None
    assert row_record(ev) == event_record(to_row_values(ev))
    ev.scores = {k: v for k, v in ev.scores.items() if k != "loyalty"}  # a disabled model
    assert row_value_list(ev) is None
    ev.scores = dict(reversed(list(_scored_events(1, 3)[-1].scores.items())))
    assert row_value_list(ev) is None
    ev.scores = {**_scored_events(1, 3)[-1].scores, "intent": None}
    assert row_value_list(ev) is None and row_record(ev) == event_record(to_row_values(ev))


def test_disabled_models_are_nan_on_the_row_either_way():
    cfg = SiteConfig(site_id="site_a", models_enabled=("intent", "bot_probability"))
    for ev in _scored_events(2, 20, cfg):
        rec = orjson.loads(row_record(ev))
        assert rec[0] == "v"
        row = codec.encode(record_values(rec))
        assert math.isnan(row.doubles[1]) and not math.isnan(row.doubles[0])


def test_r1_record_gives_the_same_ae_row_as_the_dict_record(tmp_path):
    events = _scored_events(3)
    events[5].title = "\ud800lone"  # orjson refuses it: the "e" record of the codec
    events[6].props = {"x": "\udfff"}
    r1 = [row_record(ev) for ev in events]
    assert sum(p.startswith(b'["r1"') for p in r1) == len(events) - 2
    assert r1[5].startswith(b'["e"') and r1[6].startswith(b'["e"')
    for ev, payload in zip(events, r1, strict=True):
        want = event_record(to_row_values(ev))
        rec, ref = orjson.loads(payload), orjson.loads(want)
        if rec[0] == "r1":
            assert codec.encode(record_values(rec)) == codec.encode(ref[1])
            assert len(payload) < len(want) - 400  # no key names
        else:
            assert payload == want
    # the flusher publishes the same rows from either log
    rows = {}
    for name, payloads in (("r1", r1), ("v", [event_record(to_row_values(ev)) for ev in events])):
        lake = LakeLayout.local(tmp_path / name / "lake")
        seg = tmp_path / name / "seg-000000000001.log"
        seg.parent.mkdir(parents=True, exist_ok=True)
        seg.write_bytes(b"".join(frame(p) for p in payloads))
        res = flush_segments([seg], lake, dedupe_against_lake=False)
        assert res.events == len(events) and res.corrupt_records == 0
        files = sorted(Path(lake.events_dir("site_a")).glob("dt=*/*.parquet"))
        rows[name] = sorted((r for f in files for r in codec.table_to_rows(pq.read_table(f))), key=lambda r: r.blobs[17])
        assert sorted(_acknowledged_ids([seg])) == sorted(("site_a", ev.event_id) for ev in events)
    assert [(r.timestamp, r.index1, r.blobs) for r in rows["r1"]] == [(r.timestamp, r.index1, r.blobs) for r in rows["v"]]
    assert all(a.doubles == b.doubles or all(x == y or (x != x and y != y) for x, y in zip(a.doubles, b.doubles, strict=True))
               for a, b in zip(rows["r1"], rows["v"], strict=True))


def test_a_short_r1_record_is_corrupt_not_misread(tmp_path):
    ev = _scored_events(4, 1)[0]
    good = row_record(ev)
    short = orjson.dumps(["r1", orjson.loads(good)[1][:-1]])
    seg = tmp_path / "seg-000000000001.log"
    seg.write_bytes(frame(short) + frame(good))
    res = flush_segments([seg], LakeLayout.local(tmp_path / "lake"), dedupe_against_lake=False)
    assert res.events == 1 and res.corrupt_records == 1


# --- caches ---------------------------------------------------------------------------------------------
def test_keyed_hash_cache_equals_the_hash_and_is_bounded():
    identity._keyed_hash_cached.cache_clear()
    secret = b"s" * 32
    for i in range(50):
        args = ("site_a", UAS[i % 4], f"10.0.{i}.1", secret, 20_000 + i % 2)
        assert identity.keyed_hash(*args) == identity._keyed_hash(*args) == identity.keyed_hash(*args)
    assert identity._keyed_hash_cached.cache_info().hits == 50
    assert identity._keyed_hash_cached.cache_info().maxsize == identity.HASH_CACHE_SIZE
    for i in range(identity.HASH_CACHE_SIZE + 10):
        identity.keyed_hash("s", "ua", str(i), secret, 1)
    assert identity._keyed_hash_cached.cache_info().currsize == identity.HASH_CACHE_SIZE
    identity._keyed_hash_cached.cache_clear()
    long_ua = "M" * (identity.HASH_CACHE_MAX_UA + 1)
    assert identity.keyed_hash("s", long_ua, "ip", secret, 1) == identity._keyed_hash("s", long_ua, "ip", secret, 1)
    assert identity._keyed_hash_cached.cache_info().currsize == 0
    # another secret, another id
    assert identity.keyed_hash("s", "ua", "ip", b"t" * 32, 1) != identity.keyed_hash("s", "ua", "ip", secret, 1)


def test_hash_identities_are_shared_but_equal_to_fresh_ones():
    a = identity._hash_identity("v_" + "0" * 32, True)
    assert a == identity.Identity("v_" + "0" * 32, True, "hash")
    assert identity._hash_identity("v_" + "0" * 32, False) == identity.Identity("v_" + "0" * 32, False, "hash")
    assert identity._hash_identity.cache_info().maxsize == identity.HASH_CACHE_SIZE
    with pytest.raises(AttributeError):
        a.visitor_id = "v_x"  # frozen: sharing it is safe


def test_models_enabled_memo_matches_the_set_and_is_bounded():
    scoring_mod._ENABLED_CACHE.clear()
    assert scoring_mod._enabled(tuple(codec.SCORE_NAMES)) is None
    assert scoring_mod._enabled(("intent",)) == frozenset({"intent"})
    assert scoring_mod._enabled(["intent", "loyalty"]) == frozenset({"intent", "loyalty"})  # a list: not memoised
    assert scoring_mod._enabled({"intent"}) == {"intent"}
    for i in range(300):
        scoring_mod._enabled(("intent",) * (i + 1))
    assert len(scoring_mod._ENABLED_CACHE) <= 256


# --- the whole pipeline against its reference path ---------------------------------------------------
def _reference_collect(monkeypatch) -> None:
    """Checked parsing, no URL / hash / identity caches, dict records: the code before the fast paths."""
    monkeypatch.setattr(normalize, "parse_event", normalize.parse_event_checked)
    monkeypatch.setattr(pl, "row_record", lambda ev: event_record(to_row_values(ev)))
    monkeypatch.setattr(identity, "keyed_hash", identity._keyed_hash)
    monkeypatch.setattr(identity, "_hash_identity", lambda vid, ok: identity.Identity(vid, ok, "hash"))
    monkeypatch.setattr(identity, "sdk_visitor_id", identity._sdk_visitor_id)
    monkeypatch.setattr(normalize, "parse_well_formed", lambda *a: None)  # parse_event never takes the fast path
    monkeypatch.setattr(Scorer, "process", Scorer._process_general)  # resolve_visitor + score()
    monkeypatch.setattr(scoring_mod, "_compute", build(scoring_mod.WEIGHTS, tabulate=False))  # no tables


def _run_pipeline(tmp: Path, bodies: list[tuple[bytes, str, str]]) -> tuple[list, list]:
    d = DataDir.resolve(tmp).ensure()
    db = ControlDB(d.control_db)
    db.migrate()
    sites_mod.add_site(db, "site_a", domain="shop.test", hostnames=["t.shop.test"], plan="enterprise")
    set_config(db, "site_a", {"rate_limit_eps": 1e9, "rate_limit_burst": 1_000_000_000})
    answers = []

    async def main() -> None:
        log = DurableLog(d.log, fsync=False)
        log.open()
        await log.start()
        p = pl.Pipeline(ConfigCache(db), log, WorkerMetrics(CollectorRegistry()), scoring=pl.ScoringStage(secret=b"k" * 32))
        for body, ip, ua in bodies:
            a = await p.collect(pl.IncomingRequest(host="t.shop.test", headers={"user-agent": ua}, client_ip=ip,
                                                   received_ms=NOW, body=body, content_type="application/json"))
            answers.append((a.status, a.body, a.visitor_cookie))
        await log.close()

    asyncio.run(main())
    lake = LakeLayout.local(tmp / "lake-out")
    res = flush_segments(list_segments(d.log), lake, dedupe_against_lake=False)
    db.close()
    rows = []
    for f in sorted(Path(lake.root).rglob("*.parquet")):
        rows += [(r.timestamp, r.index1, r.blobs, [None if x != x else x for x in r.doubles])
                 for r in codec.table_to_rows(pq.read_table(f))] if "events" in str(f) else []
    return answers, sorted(rows, key=lambda r: r[2][17]) + [res.quarantined]


def test_pipeline_outputs_equal_the_reference_path(tmp_path, monkeypatch):
    rng = random.Random(11)
    bodies = []
    for r in range(12):
        evs = _raw_events(rng, 40)
        for i in range(0, 40, 7):
            evs[i] = rng.choice([{"type": "nope"}, {"type": "click", "x": "1"}, {"type": "page_view", "ts": 1},
                                 {"type": "click", "screen": "big"}, {"type": "purchase"}, evs[i]])
        if r % 4 == 3:
            evs = evs[:5] + evs[:3]  # retries: duplicates answered, not stored again
        bodies.append((json.dumps({"events": evs}).encode(), f"10.0.0.{r % 3}", UAS[r % 4]))
    bodies.append((b'{"type": "page_view", "url": "/x", "event_id": "single"}', "10.0.0.9", UAS[0]))
    bodies.append((b'{"events": [{"type": "bad"}]}', "10.0.0.9", UAS[0]))
    bodies.append((b"not json", "10.0.0.9", UAS[0]))
    fast = _run_pipeline(tmp_path / "fast", bodies)
    _reference_collect(monkeypatch)
    ref = _run_pipeline(tmp_path / "ref", bodies)

    def strip_random_ids(answers):  # events without event_id get a random one
        return [(s, {k: v for k, v in b.items() if k not in ("visitor_id", "session_id")} if s == 200 else b, c)
                for s, b, c in answers]

    assert strip_random_ids(fast[0]) == strip_random_ids(ref[0])
    assert [a[1].get("visitor_id") for a in fast[0]] == [a[1].get("visitor_id") for a in ref[0]]
    assert len(fast[1]) == len(ref[1]) > 300
    by_id = {r[2][17]: r for r in ref[1][:-1]}
    for row in fast[1][:-1]:
        assert row == by_id[row[2][17]]
    assert fast[1][-1] == ref[1][-1] > 0  # as many quarantined


def test_reference_monkeypatch_really_uses_the_slow_paths(monkeypatch):
    _reference_collect(monkeypatch)
    assert normalize.parse_event is normalize.parse_event_checked
    assert normalize.parse_well_formed({"type": "click"}, normalize.request_info("s", {}, "", NOW)) is None
    assert Scorer.process is Scorer._process_general
    stage = pl.ScoringStage(secret=b"k")
    calls = []
    event = _scored_events(1, 1)[0]
    monkeypatch.setattr(Scorer, "process", lambda self, ev, cfg: calls.append(ev) or {})
    stage(event, SiteConfig(site_id="site_a"))
    assert len(calls) == 1  # the stage goes through Scorer.process, which the reference run replaces
    assert scoring_mod._compute.tabulated is False
    assert pl.row_record(_scored_events(5, 1)[0]).startswith(b'["v"')
    assert uuid.UUID(normalize.parse_event({"type": "click"}, normalize.request_info("s", {}, "", NOW)).event_id)
