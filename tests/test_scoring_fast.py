"""The fast paths of the scoring engine give exactly what the reference paths give.

* ``formulas.build`` (small-count terms from tables, a constant bot score when there is no
  bot evidence) against ``build(..., tabulate=False)`` -- every term from its formula --
  over arbitrary visitor states: the same 16 floats to the bit and the same reasons;
* ``Scorer.process`` (the device and the UA's bot flags worked out once per request, the
  store's lock taken once around get -> score -> put) against ``Scorer._process_general``
  (``resolve_visitor`` + ``score``) over arbitrary event streams: the same visitor ids,
  sessions, scores, identities and session stores.
"""

from __future__ import annotations

import dataclasses
import math
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream_lake.codec import SCORE_NAMES
from clickstream_lake.control.config import SiteConfig
from ingest_worker.events import RequestInfo, TrackedEvent
from ingest_worker.identity import DAY_MS
from ingest_worker.scoring import WEIGHTS, Scorer
from ingest_worker.scoring.formulas import TABLE_SIZE, build
from ingest_worker.sessions import SessionStore, VisitorState

FAST = build(WEIGHTS)
REFERENCE = build(WEIGHTS, tabulate=False)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def same_scores(a: dict[str, float], b: dict[str, float]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert type(a[k]) is type(b[k]) is float, k
        assert bits(a[k]) == bits(b[k]), (k, a[k], b[k])


counts = st.integers(0, 3) | st.integers(0, TABLE_SIZE + 5) | st.integers(0, 10**6)
small = st.integers(0, 3) | st.integers(0, 40)
times = st.integers(0, 3 * DAY_MS)
floats = st.floats(0, 1e7) | st.integers(0, 10**6)
channels = st.sampled_from([*WEIGHTS["channel_prior"], "", "Unknown channel"])

INT_SLOTS = ("pageviews", "clicks", "rage_clicks", "dead_clicks", "errors", "forms", "pricing", "product", "cart",
             "checkout", "add_to_cart", "purchases", "social_proof", "price_signals", "back_forth", "reloads",
             "prev_pageviews", "prev_intent_visits", "prev_purchases", "page_clicks", "events", "fast_gaps")


@st.composite
def states(draw: st.DrawFn) -> tuple[VisitorState, int, int]:
    s = VisitorState("v_" + "1" * 32, "site_a")
    for name in INT_SLOTS:
        setattr(s, name, draw(small if draw(st.booleans()) else counts))
    s.session_number = draw(st.integers(1, 3) | st.integers(1, TABLE_SIZE + 5))
    base = 1_790_000_000_000
    s.first_ms = base + draw(times)
    s.session_start_ms = s.first_ms + draw(times)
    s.prev_session_end_ms = draw(st.just(0) | st.integers(s.first_ms - DAY_MS, s.session_start_ms))
    s.page_start_ms = s.session_start_ms + draw(times)
    s.last_funnel_ms = draw(st.just(0) | st.integers(s.session_start_ms, s.session_start_ms + DAY_MS))
    s.engaged_ms = draw(st.integers(0, 10**7))
    s.top_sum, s.page_top, s.scroll_sum = draw(floats), draw(floats), draw(floats)
    s.page_scroll = draw(st.floats(0, 100))
    s.gap_n = draw(small)
    s.gap_mean = draw(st.floats(0, 1e6))
    s.gap_m2 = draw(st.floats(0, 1e12))
    s.flags = draw(st.integers(0, 3))
    s.channel = draw(channels)
    s.channel_evidence = draw(st.integers(0, 3))
    s.sections = draw(st.dictionaries(st.text(max_size=3), st.integers(1, 80) | st.integers(1, 10**5), max_size=8))
    ua = draw(st.integers(0, 7))
    now = s.page_start_ms + draw(st.integers(-60_000, DAY_MS))
    return s, ua, now


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_tabulated_formulas_equal_the_reference_to_the_bit(case):
    s, ua, now = case
    fast, fast_reasons = FAST(s.copy(), ua, now)
    ref, ref_reasons = REFERENCE(s.copy(), ua, now)
    same_scores(fast, ref)
    assert fast_reasons == ref_reasons


def test_tabulated_formulas_cover_the_table_edges():
    """Every count in the tables and past their end, one slot at a time (the other slots
    small, so that a term's last bit shows in the scores)."""
    for name in (*INT_SLOTS, "session_number"):
        for n in (*range(TABLE_SIZE + 3), 10**9):
            if name == "session_number" and n == 0:
                continue
            s = VisitorState("v_x", "site_a")
            s.session_number = 1
            s.first_ms = s.session_start_ms = s.page_start_ms = 1_790_000_000_000
            setattr(s, name, n)
            s.sections = {"a": n + 1, "b": 1}
            for ua in (0, 1, 4):
                same_scores(FAST(s.copy(), ua, s.first_ms + 1000)[0], REFERENCE(s.copy(), ua, s.first_ms + 1000)[0])


def test_a_state_without_a_session_fails_as_before():
    s = VisitorState("v_x", "site_a")  # session_number 0: log1p(-1)
    for compute in (FAST, REFERENCE):
        try:
            compute(s, 0, 0)
        except ValueError:
            continue
        raise AssertionError("a session number of 0 must not score")


# --- Scorer.process: the keyed-hash fast path against the general path -------------------------------
T0 = 20_600 * DAY_MS - 3_600_000  # an hour before a UTC midnight
UAS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
       "Googlebot/2.1 (+http://www.google.com/bot.html)", "", "HeadlessChrome/120")
CONFIGS = (
    SiteConfig(site_id="site_a", domain="shop.test", hostnames=("t.shop.test",)),
    SiteConfig(site_id="site_a", domain="shop.test", consent_required=True),
    SiteConfig(site_id="site_a", models_enabled=("intent", "bot_probability")),
    SiteConfig(site_id="site_b", models_enabled=SCORE_NAMES),
)

event_specs = st.fixed_dictionaries({
    "dt": st.integers(0, 120_000) | st.integers(0, 3 * 3_600_000),
    "lag": st.integers(-300_000, 0) | st.integers(-2 * DAY_MS, 0) | st.just(0)
    | st.sampled_from([-3_600_001, -3_599_999, -DAY_MS - 1, -DAY_MS + 1]),
    "type": st.sampled_from(["page_view", "click", "scroll", "engagement", "add_to_cart", "purchase", "error"]),
    "url": st.sampled_from(["/", "/pricing", "/product/1", "/cart", "/checkout", "/blog/x?utm_source=n&utm_campaign=c",
                            "/p?gclid=z", "/reviews"]),
    "ua": st.sampled_from(range(len(UAS))),
    "ip": st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    "cookie": st.sampled_from(["", "", "v_" + "ab" * 16, "bad cookie"]),
    "sdk": st.sampled_from(["", "", "", "user-42", "v_" + "cd" * 16]),
    "consent": st.sampled_from([None, True, False]),
    "site": st.sampled_from(["site_a", "site_a", "site_b", ""]),
    "cfg": st.sampled_from(range(len(CONFIGS))),
    "screen": st.sampled_from(["", "1920x1080"]),
    "x": st.none() | st.floats(0, 50),
    "scroll": st.none() | st.floats(0, 100),
    "referrer": st.sampled_from(["", "https://www.google.com/", "https://shop.test/a"]),
})


def make(spec: dict, t: int, n: int) -> TrackedEvent:
    req = RequestInfo(site_id=spec["site"], received_ms=t, user_agent=UAS[spec["ua"]], ip=spec["ip"],
                      cookie_visitor_id=spec["cookie"])
    url = spec["url"]
    utm = {"utm_source": "n", "utm_campaign": "c"} if "utm_source" in url else {}
    return TrackedEvent(type=spec["type"], ts_ms=t + spec["lag"], event_id=f"e{n}", url=url, referrer=spec["referrer"],
                        sdk_visitor_id=spec["sdk"], consent=spec["consent"], screen=spec["screen"], x=spec["x"],
                        y=spec["x"], scroll_depth=spec["scroll"], value=10.0 if spec["type"] == "purchase" else None,
                        gclid="z" if "gclid" in url else "", request=req, **utm)


def store_snapshot(store: SessionStore) -> list:
    return [(k, v.as_dict()) for k, v in store._states.items()] + [store.evictions, store.expirations]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_specs, min_size=1, max_size=40), st.sampled_from([3, 200_000]), st.sampled_from([DAY_MS, 3_600_000]))
def test_scorer_fast_path_equals_the_general_path(specs, max_visitors, idle_ms):
    fast = Scorer(secret=b"s", store=SessionStore(max_visitors=max_visitors, idle_ms=idle_ms))
    ref = Scorer(secret=b"s", store=SessionStore(max_visitors=max_visitors, idle_ms=idle_ms))
    t = T0
    for n, spec in enumerate(specs):
        t += spec["dt"]
        a, b = make(spec, t, n), make(spec, t, n)
        cfg = CONFIGS[spec["cfg"]]
        sa = fast.process(a, cfg)
        sb = ref._process_general(b, cfg)
        same_scores(sa, sb)
        assert fast.last_identity == ref.last_identity
        assert dataclasses.asdict(a) == dataclasses.asdict(b) or _same_with_nan(a, b)
        assert store_snapshot(fast.store) == store_snapshot(ref.store) or _same_snapshot_with_nan(fast.store, ref.store)


def _same_with_nan(a: TrackedEvent, b: TrackedEvent) -> bool:
    return repr(dataclasses.asdict(a)) == repr(dataclasses.asdict(b))


def _same_snapshot_with_nan(a: SessionStore, b: SessionStore) -> bool:
    return repr(store_snapshot(a)) == repr(store_snapshot(b))


def test_scorer_fast_path_is_taken_for_request_events():
    scorer = Scorer(secret=b"s")
    calls = []
    scorer._process_general = lambda *a: calls.append(a)  # type: ignore[method-assign]
    spec = {"site": "site_a", "ua": 0, "ip": "10.0.0.1", "cookie": "", "sdk": "", "consent": None, "type": "scroll",
            "url": "/", "referrer": "", "screen": "", "x": None, "scroll": 10.0, "lag": 0}
    for extra, method in (({}, "hash"), ({"cookie": "v_" + "ab" * 16}, "cookie"), ({"sdk": "user-1"}, "sdk")):
        e = make({**spec, **extra}, T0, 0)
        assert set(scorer.process(e, CONFIGS[0])) == set(SCORE_NAMES)
        assert not calls and e.visitor_id.startswith("v_") and not math.isnan(e.scores["intent"])
        assert scorer.last_identity is not None and scorer.last_identity.method == method
    e = make({**spec, "site": ""}, T0, 1)  # no site id on the request: the general path
    scorer.process(e, CONFIGS[0])
    assert len(calls) == 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_specs, min_size=1, max_size=30))
def test_observe_opens_a_session_exactly_when_needs_new_session_says(specs):
    """observe() inlines the session rules of VisitorState.needs_new_session."""
    from ingest_worker.scoring.features import observe

    state = VisitorState("v_x", "site_a")
    t = T0
    for n, spec in enumerate(specs):
        t += spec["dt"]
        e = make(spec, t, n)
        expected = state.needs_new_session(e)
        before = state.session_number
        observe(state, e)
        assert (state.session_number == before + 1) is expected


def test_a_failing_event_releases_both_locks(monkeypatch):
    import ingest_worker.scoring as scoring_mod

    scorer = Scorer(secret=b"s")

    def boom(*a):
        raise RuntimeError("boom")

    monkeypatch.setattr(scoring_mod, "_compute", boom)
    e = make({"site": "site_a", "ua": 0, "ip": "10.0.0.1", "cookie": "", "sdk": "", "consent": None, "type": "scroll",
              "url": "/", "referrer": "", "screen": "", "x": None, "scroll": 10.0, "lag": 0}, T0, 0)
    try:
        scorer.process(e, CONFIGS[0])
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure must reach the caller")
    assert not scorer._lock.locked() and not scorer.store.lock.locked()


def test_request_memo_follows_the_receive_time_across_midnight():
    """Two requests of the same site, UA and IP (the very same strings) either side of a UTC
    midnight, the first visitor state expired in between: the second gets today's keyed hash,
    as resolve_visitor gives it, not the memo of the first request's day."""
    spec = {"site": "site_a", "ua": 0, "ip": "10.0.0.1", "cookie": "", "sdk": "", "consent": None, "type": "page_view",
            "url": "/", "referrer": "", "screen": "", "x": None, "scroll": None, "lag": 0}
    fast = Scorer(secret=b"s", store=SessionStore(idle_ms=3_600_000))
    ref = Scorer(secret=b"s", store=SessionStore(idle_ms=3_600_000))
    ids = []
    for n, t in enumerate((T0, T0, T0 + 2 * 3_600_000, T0 + 2 * 3_600_000)):  # T0 is an hour before midnight
        a, b = make(spec, t, n), make(spec, t, n)
        same_scores(fast.process(a, CONFIGS[0]), ref._process_general(b, CONFIGS[0]))
        assert a.visitor_id == b.visitor_id and a.session_id == b.session_id
        ids.append(a.visitor_id)
    assert ids[0] == ids[1] != ids[2] == ids[3]  # a new visitor id on the new day
