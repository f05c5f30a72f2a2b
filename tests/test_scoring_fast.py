"""The fast paths of the scoring engine give exactly what the reference paths give.

* ``formulas.build`` (small-count terms from tables, a constant bot score when there is no
  bot evidence) against ``tests/formulas_reference.py`` -- the formulas as they were, kept
  verbatim -- over arbitrary visitor states: the same 16 floats to the bit and the same
  reasons;
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.identity import DAY_MS
from ingest_worker.scoring import WEIGHTS
from ingest_worker.scoring.formulas import TABLE_SIZE, build
from ingest_worker.sessions import VisitorState
from tests import formulas_reference

FAST = build(WEIGHTS)
REFERENCE = formulas_reference.build(WEIGHTS)


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
