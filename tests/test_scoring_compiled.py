"""The compiled score kernel (ingest_worker/scoring/_formulas_c.pyx) gives exactly what the
Python formulas give.

* over arbitrary visitor states (the strategy of test_scoring_fast.py): the same 16 floats
  to the bit, in the same key order, and the same reasons as ``build(W, tabulate=False)``;
* at every table edge, and for inputs outside the kernel's exact domain (counts beyond 64
  bits, floats in int slots, negative table indices, math errors): the Python answer or
  the Python exception;
* in the test environment the kernel IS in use (``make test`` builds it), unless
  ``CLICKSTREAM_COMPILED=0`` turns it off.
"""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings

from ingest_worker.scoring import WEIGHTS, _compute
from ingest_worker.scoring import formulas as formulas_mod
from ingest_worker.scoring.formulas import COMPILED_ENV, TABLE_SIZE, build
from ingest_worker.sessions import VisitorState
from tests.test_scoring_fast import INT_SLOTS, REFERENCE, same_scores, states

TURNED_OFF = os.environ.get(COMPILED_ENV, "").strip() == "0"
KERNEL, WHY = formulas_mod.compiled_kernel()
COMPILED = build(WEIGHTS) if KERNEL is not None else None
PYTHON = build(WEIGHTS, compiled=False)
needs_kernel = pytest.mark.skipif(KERNEL is None, reason=f"compiled score kernel not in use: {WHY}")


def test_the_compiled_kernel_is_in_use():
    """CI proves the build: a fresh clone's make test must score with the compiled kernel."""
    if TURNED_OFF:
        pytest.skip(f"{COMPILED_ENV}=0 turns the compiled kernel off")
    assert KERNEL is not None, f"the compiled score kernel is not in use: {WHY}"
    assert COMPILED is not None and COMPILED.compiled is True and COMPILED.tabulated is True
    assert _compute.compiled is True  # what the scoring engine calls


def test_the_python_formulas_say_so():
    assert PYTHON.compiled is False and PYTHON.tabulated is True
    assert build(WEIGHTS, tabulate=False).compiled is False


def test_compiled_false_and_the_environment_switch_give_python(monkeypatch):
    monkeypatch.setenv(COMPILED_ENV, "0")
    assert build(WEIGHTS).compiled is False
    assert formulas_mod.compiled_kernel() == (None, f"turned off by {COMPILED_ENV}=0")
    with pytest.raises(RuntimeError, match="not available"):
        build(WEIGHTS, compiled=True)


@needs_kernel
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_compiled_formulas_equal_the_reference_to_the_bit(case):
    s, ua, now = case
    before = COMPILED.fallbacks
    got, got_reasons = COMPILED(s.copy(), ua, now)
    assert COMPILED.fallbacks == before, "the kernel itself must answer these states"
    ref, ref_reasons = REFERENCE(s.copy(), ua, now)
    same_scores(got, ref)
    assert got_reasons == ref_reasons


def _edge_state(name: str, n: int) -> VisitorState:
    s = VisitorState("v_x", "site_a")
    s.session_number = 1
    s.first_ms = s.session_start_ms = s.page_start_ms = 1_790_000_000_000
    setattr(s, name, n)
    s.sections = {"a": n + 1, "b": 1}
    return s


@needs_kernel
def test_compiled_formulas_cover_the_table_edges():
    for name in (*INT_SLOTS, "session_number", "gap_n", "flags", "channel_evidence"):
        for n in (*range(TABLE_SIZE + 3), 10**9, 2**53, 2**53 + 1):
            if name == "session_number" and n == 0:
                continue
            if name == "channel_evidence" and n > 3:
                continue
            s = _edge_state(name, n)
            for ua in (0, 1, 2, 4, 7):
                now = s.first_ms + 1000
                got = COMPILED(s.copy(), ua, now)
                ref = REFERENCE(s.copy(), ua, now)
                same_scores(got[0], ref[0])
                assert got[1] == ref[1]


def _python_answer(s: VisitorState, ua: int, now: int):
    """The compiled kernel's answer and the Python formulas' (both values or both errors)."""
    results = []
    for compute in (COMPILED, PYTHON):
        try:
            results.append(compute(s.copy(), ua, now))
        except Exception as e:  # noqa: BLE001 - the same exception is the point
            results.append(type(e))
    return results


@needs_kernel
@pytest.mark.parametrize("name", [*INT_SLOTS, "session_number", "first_ms", "session_start_ms", "page_start_ms",
                                  "engaged_ms", "top_sum", "page_top", "scroll_sum", "gap_mean", "gap_m2"])
def test_huge_counts_fall_back_to_python(name):
    """Beyond 64 bits (an OverflowError of the conversion) and beyond 2**53 the kernel
    answers with the Python formulas: the same scores, never a wrong one."""
    for n in (10**30, -(10**30), 2**63, 2**53 + 1, 3.5, True):
        s = _edge_state(name, 5)
        s.session_number = 2
        setattr(s, name, n)
        got, want = _python_answer(s, 0, s.first_ms + 1000)
        if isinstance(want, type):
            assert got is want, (name, n)
        else:
            same_scores(got[0], want[0])
            assert got[1] == want[1]
            if type(n) is int and n > 0:  # the tables are not in play: the untabulated reference too
                same_scores(got[0], REFERENCE(s.copy(), 0, s.first_ms + 1000)[0])


@needs_kernel
def test_a_count_of_10_to_the_30_gives_the_python_answer():
    s = _edge_state("pageviews", 3)
    s.pageviews = 10**30
    before = COMPILED.fallbacks
    got = COMPILED(s.copy(), 0, s.first_ms + 1000)
    assert COMPILED.fallbacks == before + 1
    same_scores(got[0], REFERENCE(s.copy(), 0, s.first_ms + 1000)[0])
    same_scores(got[0], PYTHON(s.copy(), 0, s.first_ms + 1000)[0])


@needs_kernel
@pytest.mark.parametrize("change", [
    {"session_number": 0},                       # log1p(-1): ValueError
    {"pageviews": -3},                           # a negative table index
    {"channel_evidence": -1},                    # Python wraps a negative list index
    {"channel_evidence": 4},                     # IndexError
    {"sections": {"a": 0}},                      # top / 0: ZeroDivisionError
    {"sections": {"a": 2.5}},                    # not an int count
    {"sections": {"a": 2**53, "b": 2**53}},      # a sum beyond 2**53
    {"gap_n": 5, "gap_mean": 1.0, "gap_m2": -4.0},  # sqrt of a negative: ValueError
    {"engaged_ms": -(10**6)},                    # log1p below -1: ValueError
    {"channel": ["unhashable"]},                 # TypeError
    {"page_scroll": float("nan"), "gap_mean": float("nan"), "top_sum": float("inf")},
    {"sections": None},
])
def test_inputs_outside_the_kernel_domain_get_the_python_answer(change):
    s = _edge_state("pageviews", 3)
    s.session_number = 2
    for k, v in change.items():
        setattr(s, k, v)
    got, want = _python_answer(s, 1, s.first_ms + 1000)
    if isinstance(want, type):
        assert got is want
    else:
        same_scores(got[0], want[0])
        assert got[1] == want[1]


@needs_kernel
def test_non_int_arguments_fall_back():
    s = _edge_state("pageviews", 3)
    now = s.first_ms + 1000
    for ua, t in ((0, float(now)), (1.0, now), (10**40, now)):
        got, want = _python_answer(s, ua, t)
        if isinstance(want, type):
            assert got is want
        else:
            same_scores(got[0], want[0])


def test_int_weights_keep_the_python_formulas(caplog):
    """A weights document the kernel cannot take exactly (an int weight: Python's arithmetic
    would be exact-integer there) is scored by the Python formulas, with a warning."""
    w = {**WEIGHTS, "intent": {**WEIGHTS["intent"], "pricing": 1}}
    with caplog.at_level(logging.WARNING, logger="ingest_worker.scoring.formulas"):
        compute = build(w)
    assert compute.compiled is False
    if KERNEL is not None:
        assert "do not fit the kernel" in caplog.text


def test_a_stale_kernel_is_not_used(monkeypatch, caplog):
    """A kernel built from other sources than the formulas.py on disk: a warning, Python."""
    try:
        from ingest_worker.scoring import _formulas_c
    except ImportError:
        pytest.skip("compiled score kernel not built")
    monkeypatch.setattr(_formulas_c, "SOURCE_HASH", "0" * 64)
    monkeypatch.setattr(formulas_mod, "_kernel_status", None)
    monkeypatch.delenv(COMPILED_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="ingest_worker.scoring.formulas"):
        compute = build(WEIGHTS)
    assert compute.compiled is False
    assert "built from other sources" in caplog.text
    assert formulas_mod.compiled_kernel()[0] is None


class _SubState(VisitorState):
    __slots__ = ()


@needs_kernel
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_slots_read_directly_or_by_getattr_give_the_same(case):
    """A VisitorState's slots are read at their offsets; any other object (a subclass here)
    by getattr: the same answers, the kernel answering itself either way."""
    assert COMPILED.state_type is VisitorState
    s, ua, now = case
    sub = _SubState.__new__(_SubState)
    for name in VisitorState.__slots__:
        if hasattr(s, name):
            setattr(sub, name, getattr(s, name))
    before = COMPILED.fallbacks
    a, b = COMPILED(s.copy(), ua, now), COMPILED(sub, ua, now)
    assert COMPILED.fallbacks == before
    same_scores(a[0], b[0])
    assert a[1] == b[1]


@needs_kernel
def test_an_unset_slot_raises_as_in_python():
    s = _edge_state("pageviews", 3)
    del s.sections
    for state in (s, _SubState.__new__(_SubState)):
        got, want = _python_answer(state, 0, 1_790_000_001_000)
        assert got is want is AttributeError
