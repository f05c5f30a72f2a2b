"""The 16 score formulas (docs/scores.md documents each: meaning, inputs, formula, direction).

Every score is 100 × a number in [0, 1] built from two shapes:

* ``sat(z) = 1 − e^(−z)`` for z ≥ 0 — rises with its evidence and never reaches 1;
* ``sigmoid(z) = 1 / (1 + e^(−z))`` — for scores with evidence in both directions.

Weights are non-negative where the docs promise a direction, so monotonic behaviour follows
from the shape.  :func:`build` binds a weights document (loaded once per process) into a
``compute(state, ua_flags, now_ms)`` closure: the weights become closure constants, which
keeps the per-event cost to a few microseconds.

When the typed Cython kernel ``_formulas_c`` is built and current (compiled from these very
sources), ``build()`` returns it instead of the closure: the same scores to the bit at a
fraction of the cost, falling back to the closure for any input outside its exact domain.
``CLICKSTREAM_COMPILED=0`` in the environment keeps the pure-Python closure; the returned
function's ``compiled`` attribute says which one it is (docs/scores.md, "Compiled kernel").
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Callable
from typing import Any

from ingest_worker.scoring import bot as bot_mod
from ingest_worker.scoring.features import FLAG_NO_SCREEN, FLAG_WEBDRIVER
from ingest_worker.sessions import VisitorState

log = logging.getLogger(__name__)
COMPILED_ENV = "CLICKSTREAM_COMPILED"  # "0": never use the compiled kernel
DAY_MS = 86_400_000.0
TABLE_SIZE = 64  # counts below this take their terms from tables built with the weights
Compute = Callable[[VisitorState, int, int], tuple[dict[str, float], tuple[str, ...]]]


def sat(z: float) -> float:
    return 1.0 - math.exp(-z) if z > 0 else 0.0


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


_kernel_status: tuple[Any, str] | None = None  # (Kernel class or None, why), once per process


def compiled_kernel() -> tuple[Any, str]:
    """``(Kernel, "compiled")`` when the compiled kernel can be used, else ``(None, why not)``:
    turned off by ``CLICKSTREAM_COMPILED=0``, not built (no compiler when the package was
    installed), or stale (built from other sources than the formulas.py / _formulas_c.pyx
    on disk -- logged as a warning)."""
    global _kernel_status
    if os.environ.get(COMPILED_ENV, "").strip() == "0":
        return None, f"turned off by {COMPILED_ENV}=0"
    if _kernel_status is None:
        _kernel_status = _load_kernel()
    return _kernel_status


def _load_kernel() -> tuple[Any, str]:
    try:
        _formulas_c = importlib.import_module("ingest_worker.scoring._formulas_c")
    except ImportError as e:
        log.info("score formulas: compiled kernel not built (%s); using the Python formulas", e)
        return None, f"not built ({e})"
    from ingest_worker.scoring._source_hash import source_hash

    try:
        current = source_hash()
    except OSError as e:
        current = f"unreadable sources ({e})"
    if _formulas_c.SOURCE_HASH != current:
        log.warning("score formulas: the compiled kernel %s was built from other sources than formulas.py / "
                    "_formulas_c.pyx (rebuild: make venv, or pip install -e .); using the Python formulas",
                    _formulas_c.__file__)
        return None, "stale (built from other sources; rebuild with make venv)"
    return _formulas_c.Kernel, "compiled"


def build(W: dict[str, Any], *, tabulate: bool = True, compiled: bool | None = None) -> Compute:
    """Bind the weights ``W`` into the per-event score function.

    ``tabulate=False`` evaluates every term from its formula (no small-count tables, no
    constant bot score): the reference the tabulated function is checked against, bit for
    bit, in tests/test_scoring_fast.py.  The tabulated function is the compiled kernel when
    :func:`compiled_kernel` offers one (``compiled=None``, the default), never with
    ``compiled=False``; ``compiled=True`` raises RuntimeError when there is none.  Either way
    the result has the attributes ``tabulated`` and ``compiled``."""
    exp = math.exp
    log1p = math.log1p
    sqrt = math.sqrt

    w = W["intent"]
    i_pricing, i_product, i_cart, i_checkout = w["pricing"], w["product"], w["cart"], w["checkout"]
    i_atc, i_forms, i_purch, i_hist = w["add_to_cart"], w["forms"], w["purchases"], w["history"]

    w = W["engagement"]
    e_time, e_time_scale, e_scroll = w["time"], float(w["time_scale_ms"]), w["scroll"]
    e_pv, e_pv_scale, e_clicks, e_clicks_scale = w["pageviews"], float(w["pageviews_scale"]), w["clicks"], float(w["clicks_scale"])

    w = W["frustration"]
    f_rage, f_dead, f_err, f_bf, f_reload = w["rage_clicks"], w["dead_clicks"], w["errors"], w["back_forth"], w["reloads"]

    w = W["purchase_timing"]
    t_pricing, t_product, t_cart, t_checkout = w["pricing"], w["product"], w["cart"], w["checkout"]
    t_atc, t_hist, t_floor, t_recency = w["add_to_cart"], w["history"], w["floor"], float(w["recency_ms"])

    w = W["churn_risk"]
    c_bias, c_days, c_sessions, c_eng = w["bias"], w["days_away"], w["sessions"], w["engagement"]
    c_frus, c_buyer, c_intent = w["frustration"], w["buyer"], w["intent"]

    a_depth = float(W["content_affinity"]["depth_scale"])

    w = W["velocity"]
    v_other, v_scale = w["other_events"], float(w["rate_scale_per_min"])

    w = W["loyalty"]
    l_sessions, l_purch, l_age, l_pv = w["sessions"], w["purchases"], w["age_days"], w["pageviews"]

    w = W["conversion_prob"]
    p_bias, p_pricing, p_product, p_cart, p_checkout = w["bias"], w["pricing"], w["product"], w["cart"], w["checkout"]
    p_atc, p_eng, p_pv, p_ret, p_buyer = w["add_to_cart"], w["engagement"], w["pageviews"], w["returning"], w["buyer"]
    p_minutes, p_hist = w["engaged_minutes"], w["history"]
    p_frus, p_bot, p_channel = w["frustration"], w["bot"], w["channel"]
    prior = dict(W["channel_prior"])

    w = W["session_quality"]
    q_eng, q_depth, q_depth_scale, q_intent = w["engagement"], w["depth"], float(w["depth_scale"]), w["intent"]
    q_nb, q_pen = w["not_bounce"], w["frustration_penalty"]

    w = W["attention"]
    at_dwell, at_scale, at_scroll, at_clicks, at_cscale = (
        w["dwell"], float(w["dwell_scale_ms"]), w["scroll"], w["clicks"], float(w["clicks_scale"]))

    w = W["nav_efficiency"]
    n_bf, n_reload, n_dead, n_err = w["back_forth"], w["reloads"], w["dead_clicks"], w["errors"]
    n_scale, n_direct, n_progress, n_pscale = w["waste_scale"], w["direct"], w["progress"], w["progress_scale"]

    w = W["price_sensitivity"]
    ps_pricing, ps_signals = w["pricing"], w["price_signals"]
    w = W["social_proof"]
    sp_social, sp_channel = w["social_proof"], w["social_channel"]

    w = W["bot_probability"]
    b_bias, b_crawler, b_auto, b_webdriver = w["bias"], w["crawler_ua"], w["automation_ua"], w["webdriver"]
    b_noscreen, b_empty, b_regular, b_cv = w["no_screen"], w["empty_ua"], w["regular_timing"], w["regular_cv"]
    b_min_gaps, b_fast, b_floor, b_reason = w["regular_min_gaps"], w["fast_timing"], w["crawler_floor"], w["reason_threshold"]

    w = W["channel_attribution"]
    ca_evidence, ca_progress = tuple(w["evidence"]), w["progress"]

    # Terms of a small non-negative integer count, tabulated once: each entry is the very
    # expression compute() evaluates for a count beyond the table, so the scores are the same
    # floats to the last bit (tests/test_scoring_fast.py checks against the untabulated code).
    table_size = TABLE_SIZE if tabulate else 0
    r = range(table_size)
    t_e_pv = tuple(e_pv * (1.0 - exp(-i / e_pv_scale)) for i in r)
    t_e_clicks = tuple(e_clicks * (1.0 - exp(-i / e_clicks_scale)) for i in r)
    t_c_sessions = tuple(c_sessions * log1p(i) for i in r)
    c_days_0 = c_days * log1p(0.0)
    t_a_depth = tuple(1.0 - exp(-i / a_depth) for i in r)
    t_p_pricing = tuple(p_pricing * log1p(i) for i in r)
    t_p_product = tuple(p_product * log1p(i) for i in r)
    t_p_pv = tuple(p_pv * log1p(i) for i in r)
    t_p_hist = tuple(p_hist * log1p(i) for i in r)
    t_q_depth = tuple(q_depth * (1.0 - exp(-i / q_depth_scale)) for i in r)
    t_at_clicks = tuple(at_clicks * (1.0 - exp(-i / at_cscale)) for i in r)
    bot_bias = 1.0 / (1.0 + exp(-b_bias)) if b_bias >= 0 else 1.0 - 1.0 / (1.0 + exp(b_bias))

    CRAWLER, AUTOMATION, EMPTY = bot_mod.CRAWLER, bot_mod.AUTOMATION, bot_mod.EMPTY
    SOCIAL_CHANNELS = frozenset(("Organic Social", "Paid Social"))
    UA_SOLID = ("crawler_ua", "automation_ua", "webdriver")
    solid_reasons: dict[tuple[str, ...], tuple[str, ...]] = {}  # reasons -> its UA_SOLID ones

    def compute(s: VisitorState, ua: int, now_ms: int) -> tuple[dict[str, float], tuple[str, ...]]:
        pv = s.pageviews
        pricing, product, cart, checkout, atc = s.pricing, s.product, s.cart, s.checkout, s.add_to_cart
        purchases = s.purchases
        # intent
        z = (i_pricing * pricing + i_product * product + i_cart * cart + i_checkout * checkout
             + i_atc * atc + i_forms * s.forms + i_purch * purchases + i_hist * s.prev_intent_visits)
        intent = 1.0 - exp(-z) if z > 0.0 else 0.0
        # engagement
        engaged_ms = s.top_sum + s.page_top
        if s.engaged_ms > engaged_ms:
            engaged_ms = s.engaged_ms
        avg_scroll = (s.scroll_sum + s.page_scroll) / (pv * 100.0) if pv else s.page_scroll / 100.0
        calm = s.clicks - s.rage_clicks
        if calm < 0:
            calm = 0
        engagement = (e_time * (1.0 - exp(-engaged_ms / e_time_scale)) + e_scroll * (avg_scroll if avg_scroll < 1.0 else 1.0)
                      + (t_e_pv[pv] if pv < table_size else e_pv * (1.0 - exp(-pv / e_pv_scale)))
                      + (t_e_clicks[calm] if calm < table_size else e_clicks * (1.0 - exp(-calm / e_clicks_scale))))
        # frustration
        z = f_rage * s.rage_clicks + f_dead * s.dead_clicks + f_err * s.errors + f_bf * s.back_forth + f_reload * s.reloads
        frustration = 1.0 - exp(-z) if z > 0.0 else 0.0
        # purchase timing
        z = (t_pricing * pricing + t_product * product + t_cart * cart + t_checkout * checkout
             + t_atc * atc + t_hist * s.prev_intent_visits)
        stage = 1.0 - exp(-z) if z > 0.0 else 0.0
        if not stage:
            urgency = 0.0
        elif s.last_funnel_ms:
            since = now_ms - s.last_funnel_ms
            urgency = t_floor + (1.0 - t_floor) * exp(-(since if since > 0 else 0) / t_recency)
        else:
            urgency = t_floor
        purchase_timing = stage * urgency
        # bot probability
        z = b_bias
        reasons: tuple[str, ...] = ()  # grown only when there is evidence (rare)
        if ua:
            if ua & CRAWLER:
                z += b_crawler
                reasons += ("crawler_ua",)
            if ua & AUTOMATION:
                z += b_auto
                reasons += ("automation_ua",)
            if ua & EMPTY:
                z += b_empty
                reasons += ("empty_ua",)
        flags = s.flags
        if flags:
            if flags & FLAG_WEBDRIVER:
                z += b_webdriver
                reasons += ("webdriver",)
            if flags & FLAG_NO_SCREEN:
                z += b_noscreen
                reasons += ("no_screen",)
        n = s.gap_n
        if n >= b_min_gaps and s.gap_mean > 0:
            cv = sqrt(s.gap_m2 / (n - 1)) / s.gap_mean
            if cv < b_cv:
                z += b_regular * (1.0 - cv / b_cv)
                reasons += ("regular_timing",)
        if n >= 3 and s.fast_gaps:
            share = s.fast_gaps / n
            z += b_fast * share
            if share >= 0.5:
                reasons += ("fast_timing",)
        if tabulate and z == b_bias:  # no bot evidence (the usual event)
            bot = bot_bias
        else:
            bot = 1.0 / (1.0 + exp(-z)) if z >= 0 else 1.0 - 1.0 / (1.0 + exp(z))
        if ua & CRAWLER and bot < b_floor:
            bot = b_floor
        # churn risk
        days_away = (s.session_start_ms - s.prev_session_end_ms) / DAY_MS if s.prev_session_end_ms else 0.0
        buyer = 1.0 if (s.prev_purchases or purchases) else 0.0
        k = s.session_number - 1
        z = (c_bias + (c_days * log1p(days_away) if days_away > 0 else c_days_0)
             + (t_c_sessions[k] if 0 <= k < table_size else c_sessions * log1p(k))
             + c_eng * engagement + c_frus * frustration + c_buyer * buyer + c_intent * intent)
        churn = 1.0 / (1.0 + exp(-z)) if z >= 0 else 1.0 - 1.0 / (1.0 + exp(z))
        # content affinity
        sections = s.sections
        if sections:
            values = sections.values()
            top = max(values)
            affinity = top / sum(values) * (t_a_depth[top] if 0 <= top < table_size else 1.0 - exp(-top / a_depth))
        else:
            affinity = 0.0
        # velocity
        minutes = (now_ms - s.session_start_ms) / 60_000.0
        if minutes < 1.0:
            minutes = 1.0
        velocity = 1.0 - exp(-(pv + v_other * (s.events - pv)) / minutes / v_scale)
        # loyalty
        age = now_ms - s.first_ms
        all_purchases = s.prev_purchases + purchases
        loyalty = 1.0 - exp(-(l_sessions * (s.session_number - 1) + l_purch * all_purchases
                              + l_age * log1p(age / DAY_MS if age > 0 else 0.0) + l_pv * s.prev_pageviews))
        # conversion probability
        hist = s.prev_intent_visits
        z = (p_bias + (t_p_pricing[pricing] if pricing < table_size else p_pricing * log1p(pricing))
             + (t_p_product[product] if product < table_size else p_product * log1p(product))
             + p_cart * (cart if cart < 3 else 3) + p_checkout * (checkout if checkout < 3 else 3)
             + p_atc * (atc if atc < 3 else 3) + p_eng * engagement + (t_p_pv[pv] if pv < table_size else p_pv * log1p(pv))
             + p_minutes * log1p(engaged_ms / 60_000.0)
             + (t_p_hist[hist] if hist < table_size else p_hist * log1p(hist))
             + (p_ret if s.session_number > 1 else 0.0) + p_buyer * buyer + p_frus * frustration + p_bot * bot
             + p_channel * prior.get(s.channel, 0.0))
        conversion = 1.0 / (1.0 + exp(-z)) if z >= 0 else 1.0 - 1.0 / (1.0 + exp(z))
        # session quality
        quality = ((q_eng * engagement + (t_q_depth[pv] if pv < table_size else q_depth * (1.0 - exp(-pv / q_depth_scale)))
                    + q_intent * intent
                    + (q_nb if s.events > 1 else 0.0)) * (1.0 - q_pen * frustration) * (1.0 - bot))
        # attention (the current page)
        dwell = now_ms - s.page_start_ms
        if s.page_top > dwell:
            dwell = s.page_top
        scroll = s.page_scroll / 100.0
        page_clicks = s.page_clicks
        attention = (at_dwell * (1.0 - exp(-(dwell if dwell > 0 else 0) / at_scale))
                     + at_scroll * (scroll if scroll < 1.0 else 1.0)
                     + (t_at_clicks[page_clicks] if page_clicks < table_size
                        else at_clicks * (1.0 - exp(-page_clicks / at_cscale))))
        # navigation efficiency
        steps = pv if pv > 1 else 1
        waste = (n_bf * s.back_forth + n_reload * s.reloads + n_dead * s.dead_clicks + n_err * s.errors) / steps
        progress = (product > 0) + (pricing > 0) + (cart > 0 or atc > 0) + (checkout > 0) + (purchases > 0)
        nav = (n_direct * exp(-n_scale * waste) if waste else n_direct) + (
            n_progress * (1.0 - exp(-n_pscale * progress / steps)) if progress else 0.0)
        # price sensitivity, social proof
        z = ps_pricing * pricing + ps_signals * s.price_signals
        price = 1.0 - exp(-z) if z > 0.0 else 0.0
        z = sp_social * s.social_proof + (sp_channel if s.channel in SOCIAL_CHANNELS else 0.0)
        social = 1.0 - exp(-z) if z > 0.0 else 0.0
        # channel attribution
        attribution = ca_evidence[s.channel_evidence] * ((1.0 - ca_progress) + ca_progress * intent)

        if bot < b_reason and reasons:
            solid = solid_reasons.get(reasons)
            if solid is None:  # at most 2^7 keys: reasons is a subsequence of 7 names in a fixed order
                solid = solid_reasons[reasons] = tuple([r for r in reasons if r in UA_SOLID])
            reasons = solid
        return {
            "intent": 100.0 * intent,
            "engagement": 100.0 * engagement,
            "frustration": 100.0 * frustration,
            "purchase_timing": 100.0 * purchase_timing,
            "churn_risk": 100.0 * churn,
            "content_affinity": 100.0 * affinity,
            "velocity": 100.0 * velocity,
            "loyalty": 100.0 * loyalty,
            "conversion_prob": 100.0 * conversion,
            "session_quality": 100.0 * quality,
            "attention": 100.0 * attention,
            "nav_efficiency": 100.0 * nav,
            "price_sensitivity": 100.0 * price,
            "social_proof": 100.0 * social,
            "bot_probability": 100.0 * bot,
            "channel_attribution": 100.0 * attribution,
        }, reasons

    compute.tabulated = tabulate  # type: ignore[attr-defined]  # which one a test runs
    compute.compiled = False  # type: ignore[attr-defined]
    if not tabulate or compiled is False:
        return compute
    kernel, why = compiled_kernel()
    if kernel is not None:
        try:  # the kernel binds this function's constants and tables by name
            return kernel({**locals(), "FLAG_WEBDRIVER": FLAG_WEBDRIVER, "FLAG_NO_SCREEN": FLAG_NO_SCREEN,
                           "VisitorState": VisitorState}, compute)
        except (KeyError, TypeError, ValueError) as e:  # e.g. a weights document with int weights
            why = f"the weights do not fit the kernel ({e})"
            log.warning("score formulas: %s; using the Python formulas", why)
    if compiled:
        raise RuntimeError(f"the compiled score formulas are not available: {why}")
    return compute
