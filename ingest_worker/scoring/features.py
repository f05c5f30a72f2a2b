"""Incremental features: one event in, the visitor's state updated in place.

:func:`observe` is the only writer of :class:`~ingest_worker.sessions.VisitorState`.  It applies
the session rules, then updates the session's and the visitor's counters from the event, and
fills the event's session fields (session_id, session_number, channel, click_count).  Live
scoring and :meth:`VisitorState.replay` both call it, which is what makes a rebuilt state
equal to the live one.

Definitions (docs/scores.md has the full table):

* **page classes** come from the URL path (and a few query keys), see :data:`PAGE_PATTERNS`;
* **rage click**: a click that is the 3rd (or later) of clicks less than 1000 ms apart within
  30 px of each other (same ``target`` when the SDK sent no coordinates); ``rage_clicks``
  counts every click of a burst, ``rage_bursts`` the bursts;
* **dead click**: a ``click`` event the SDK flags as having had no effect — ``props.dead`` (or
  ``props.dead_click``) true, or a ``target`` ending in ``[dead]``;
* **back-and-forth**: a page view of the page seen two page views ago (A → B → A); a reload
  is a page view of the current page;
* **engaged time**: the larger of the summed inter-event gaps (each capped at 5 minutes) and
  the summed per-page maxima of the SDK's ``time_on_page_ms``;
* **timing regularity**: running mean / variance (Welford) of the gaps between the session's
  actions (every event but ``engagement`` — the SDK's heartbeat timer is regular by design),
  giving their coefficient of variation; ``fast_gaps`` counts gaps under 150 ms before
  actions that are not clicks.
"""

from __future__ import annotations

import functools
import math
import re
import zlib

from ingest_worker import channel as channel_mod
from ingest_worker.events import TrackedEvent
from ingest_worker.sessions import MAX_SECTIONS, VisitorState

ACTIVE_GAP_CAP_MS = 5 * 60_000
RAGE_WINDOW_MS = 1000
RAGE_RADIUS_PX = 30.0
FAST_GAP_MS = 150

# page-class bits
PRICING, PRODUCT, CART, CHECKOUT, SOCIAL, PRICE_SIGNAL = 1, 2, 4, 8, 16, 32
PAGE_PATTERNS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (PRICING, re.compile(r"/(pricing|plans?|prices?|tarifs?|subscribe|subscription|upgrade)(/|$|\.)")),
    (PRODUCT, re.compile(r"/(products?|p|items?|shop|store|collections?|catalog|catalogue|dp|sku)(/|$)")),
    (CART, re.compile(r"/(cart|basket|bag)(/|$|\.)")),
    (CHECKOUT, re.compile(r"/(checkout|payment|billing|order|purchase)(/|$|\.)")),
    (SOCIAL, re.compile(r"/(reviews?|testimonials?|customers|case-stud(y|ies)|success-stor(y|ies)|ratings?|wall-of-love)(/|$|\.)")),
    (PRICE_SIGNAL, re.compile(r"/(sales?|deals?|discounts?|coupons?|promo|promos|promotions?|offers?|compare|comparison|clearance|outlet)(/|$|\.|-)")),
)
_PRICE_QUERY = re.compile(r"[?&](sort=price|order=price|coupon|promo|discount|price_(min|max|lt|gt))")
_SOCIAL_TARGET = re.compile(r"review|rating|testimonial|stars|trustpilot", re.I)
_PRICE_TARGET = re.compile(r"coupon|promo|discount|price|compare|sale", re.I)

FLAG_WEBDRIVER = 1
FLAG_NO_SCREEN = 2

_TRUE = (True, 1, "1", "true", "yes")


@functools.lru_cache(maxsize=16384)
def classify_url(url: str) -> tuple[int, str, int]:
    """(page-class bits, content section, page key) of a URL path + query."""
    path, _, query = url.partition("?")
    path = path.lower() or "/"
    bits = 0
    for bit, pattern in PAGE_PATTERNS:
        if pattern.search(path):
            bits |= bit
    if query and _PRICE_QUERY.search("?" + query.lower()):
        bits |= PRICE_SIGNAL
    seg = path.strip("/").split("/", 1)[0]
    section = seg[:40] if seg else "(home)"
    key = zlib.crc32((path.rstrip("/") or "/").encode("utf-8", "surrogatepass")) + 1
    return bits, section, key


@functools.lru_cache(maxsize=4096)
def _target_bits(target: str) -> int:
    bits = 0
    if _SOCIAL_TARGET.search(target):
        bits |= SOCIAL
    if _PRICE_TARGET.search(target):
        bits |= PRICE_SIGNAL
    return bits


def _evidence(event: TrackedEvent, channel: str) -> int:
    """How well the session's source is known: 3 click id, 2 UTM, 1 referrer, 0 direct."""
    if event.gclid or event.msclkid or event.fbclid:
        return 3
    if event.utm_source or event.utm_medium or event.utm_campaign:
        return 2
    return 0 if channel in ("Direct", "") else 1


def _count_section(sections: dict[str, int], section: str) -> None:
    """Space-saving top-k counter: at most MAX_SECTIONS keys, deterministic."""
    n = sections.get(section)
    if n is not None:
        sections[section] = n + 1
    elif len(sections) < MAX_SECTIONS:
        sections[section] = 1
    else:
        victim = min(sections, key=sections.__getitem__)
        floor = sections.pop(victim)
        sections[section] = floor + 1


def is_dead_click(event: TrackedEvent) -> bool:
    props = event.props
    if props and (props.get("dead") in _TRUE or props.get("dead_click") in _TRUE):
        return True
    return event.target.endswith("[dead]")


def observe(state: VisitorState, event: TrackedEvent, own_hosts: frozenset[str] = frozenset()) -> None:
    """Apply ``event`` to ``state`` (session rules first, then the features)."""
    t = event.ts_ms
    if state.needs_new_session(event):
        state.start_session(event)
        ch = event.channel or channel_mod.classify(
            event.utm_source, event.utm_medium, event.utm_campaign,
            event.gclid, event.fbclid, event.msclkid, event.referrer, own_hosts,
        )
        state.channel = ch
        state.channel_evidence = _evidence(event, ch)
        state.page_start_ms = t
        state.last_action_ms = t
        gap = -1
    else:
        gap = t - state.last_ms
    etype = event.type

    # -- timing ---------------------------------------------------------------------------------
    if gap >= 0:
        state.engaged_ms += gap if gap < ACTIVE_GAP_CAP_MS else ACTIVE_GAP_CAP_MS
    if etype != "engagement" and gap >= 0:
        # regularity is measured on actions, not on the SDK's own 30 s engagement timer
        gap = t - state.last_action_ms
        if gap < 0:
            gap = 0
        state.last_action_ms = t if t > state.last_action_ms else state.last_action_ms
        n = state.gap_n + 1
        delta = gap - state.gap_mean
        mean = state.gap_mean + delta / n
        state.gap_m2 += delta * (gap - mean)
        state.gap_mean = mean
        state.gap_n = n
        if gap < FAST_GAP_MS and etype != "click":
            state.fast_gaps += 1
    if t > state.last_ms:
        state.last_ms = t
    state.events += 1

    # -- page views -----------------------------------------------------------------------------
    if etype == "page_view":
        bits, section, key = classify_url(event.url)
        if state.pageviews:
            state.scroll_sum += state.page_scroll
            state.top_sum += state.page_top
        state.pageviews += 1
        state.page_scroll = 0.0
        state.page_top = 0.0
        state.page_clicks = 0
        state.page_start_ms = t
        if key == state.page_key and state.pageviews > 1:
            state.reloads += 1
        else:
            if key == state.prev_page_key and state.pageviews > 2:
                state.back_forth += 1
            state.prev_page_key = state.page_key
            state.page_key = key
        if bits:
            if bits & PRICING:
                state.pricing += 1
            if bits & PRODUCT:
                state.product += 1
            if bits & CART:
                state.cart += 1
            if bits & CHECKOUT:
                state.checkout += 1
            if bits & SOCIAL:
                state.social_proof += 1
            if bits & PRICE_SIGNAL:
                state.price_signals += 1
            if bits & (PRICING | PRODUCT | CART | CHECKOUT):
                state.last_funnel_ms = t
        _count_section(state.sections, section)
        if not event.screen:
            state.flags |= FLAG_NO_SCREEN
    elif etype == "click":
        _click(state, event, t)
    elif etype == "add_to_cart":
        state.add_to_cart += 1
        state.last_funnel_ms = t
    elif etype == "purchase":
        state.purchases += 1
        v = event.value
        if v is not None and v > 0 and math.isfinite(v):
            state.value += v
        state.last_funnel_ms = t
    elif etype == "error":
        state.errors += 1
    elif etype == "form_submit":
        state.forms += 1

    sd = event.scroll_depth
    if sd is not None and sd > state.page_scroll:
        state.page_scroll = sd
    top = event.time_on_page_ms
    if top is not None and top > state.page_top:
        state.page_top = top
    props = event.props
    if props and props.get("webdriver") in _TRUE:
        state.flags |= FLAG_WEBDRIVER

    event.session_id = state.session_id
    event.session_number = state.session_number
    event.channel = state.channel


def _click(state: VisitorState, event: TrackedEvent, t: int) -> None:
    state.clicks += 1
    state.page_clicks += 1
    event.click_count = float(state.page_clicks)
    x = event.x if event.x is not None else math.nan
    y = event.y if event.y is not None else math.nan
    k = event.target
    if t - state.c1_t <= RAGE_WINDOW_MS and _near(x, y, k, state.c1_x, state.c1_y, state.c1_k) and _near(
        x, y, k, state.c2_x, state.c2_y, state.c2_k
    ):
        if state.in_burst:
            state.rage_clicks += 1
        else:
            state.in_burst = True
            state.rage_bursts += 1
            state.rage_clicks += 3
    elif not (state.in_burst and t - state.c2_t <= RAGE_WINDOW_MS and _near(x, y, k, state.c2_x, state.c2_y, state.c2_k)):
        state.in_burst = False
    elif state.in_burst:  # a burst goes on as long as each click follows the last closely
        state.rage_clicks += 1
    state.c1_t, state.c1_x, state.c1_y, state.c1_k = state.c2_t, state.c2_x, state.c2_y, state.c2_k
    state.c2_t, state.c2_x, state.c2_y, state.c2_k = t, x, y, k
    if is_dead_click(event):
        state.dead_clicks += 1
    if k:
        bits = _target_bits(k)
        if bits & SOCIAL:
            state.social_proof += 1
        if bits & PRICE_SIGNAL:
            state.price_signals += 1


def _near(x: float, y: float, k: str, x2: float, y2: float, k2: str) -> bool:
    if x == x and y == y and x2 == x2 and y2 == y2:  # all coordinates known (not NaN)
        return (x - x2) * (x - x2) + (y - y2) * (y - y2) <= RAGE_RADIUS_PX * RAGE_RADIUS_PX
    return bool(k) and k == k2
