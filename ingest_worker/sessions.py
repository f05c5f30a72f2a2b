"""Per-visitor state, the session rules and the bounded in-memory session store.

Session rules (the ones GA4, PostHog and Plausible use):

* a visitor's first event opens session 1;
* a new session starts after **30 minutes** without events, when the current session is
  **24 hours** old, or when the event carries a **new campaign** — a UTM source/campaign or
  a click id (gclid, fbclid, msclkid) different from the ones the current session started
  with.  An event without campaign parameters never splits a session.

:class:`VisitorState` holds the visitor's features (totals over earlier sessions) and the
current session's features, updated incrementally by
:func:`ingest_worker.scoring.features.observe`.  It has ``__slots__`` and only scalars plus
one small dict, so 100k live visitors fit in a few hundred MB at most (see
``benchmarks/scoring.py`` for the measured figure).

:class:`SessionStore` keeps states in an LRU with idle expiry (O(1) get/put).  After a
restart, :meth:`SessionStore.rebuild` / :meth:`VisitorState.replay` rebuild a visitor's state
from the visitor's recent rows in the lake (decoded AE rows, see :func:`event_from_row`), by
running the very same update the live path runs — so a restart does not reset scores.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ingest_worker.events import RequestInfo, TrackedEvent

MINUTE_MS = 60_000
SESSION_IDLE_MS = 30 * MINUTE_MS
SESSION_MAX_MS = 24 * 60 * MINUTE_MS
STORE_IDLE_MS = 24 * 60 * MINUTE_MS
STORE_MAX_VISITORS = 200_000
MAX_SECTIONS = 8  # content sections remembered per visitor (space-saving counter)


def campaign_key(event: TrackedEvent) -> str:
    """The event's campaign marker ('' when it carries none)."""
    if not (event.utm_source or event.utm_campaign or event.gclid or event.fbclid or event.msclkid):
        return ""
    return f"{event.utm_source}|{event.utm_campaign}|{event.gclid}|{event.fbclid}|{event.msclkid}"


def session_id_for(visitor_id: str, number: int, start_ms: int) -> str:
    """Deterministic session id, so a replay gives back the ids the rows carry."""
    digest = hashlib.blake2b(f"{visitor_id}|{number}|{start_ms}".encode(), digest_size=10).digest()
    return "s_" + digest.hex()


class VisitorState:
    """One visitor: totals over earlier sessions + the current session's features."""

    __slots__ = (
        # -- visitor ---------------------------------------------------------------------
        "visitor_id", "site_id", "first_ms", "last_ms", "session_number", "prev_session_end_ms",
        "prev_pageviews", "prev_intent_visits", "prev_purchases", "prev_value", "prev_engaged_ms",
        "sections", "flags",
        # -- current session -----------------------------------------------------------------
        "session_id", "session_start_ms", "campaign", "channel", "channel_evidence",
        "events", "pageviews", "clicks", "rage_clicks", "rage_bursts", "dead_clicks", "errors", "forms",
        "pricing", "product", "cart", "checkout", "add_to_cart", "purchases", "value",
        "social_proof", "price_signals", "back_forth", "reloads", "last_funnel_ms",
        "scroll_sum", "page_scroll", "engaged_ms", "top_sum", "page_top",
        "page_start_ms", "page_clicks", "page_key", "prev_page_key",
        "last_action_ms", "gap_n", "gap_mean", "gap_m2", "fast_gaps",
        "c1_t", "c1_x", "c1_y", "c1_k", "c2_t", "c2_x", "c2_y", "c2_k", "in_burst",
    )

    def __init__(self, visitor_id: str, site_id: str = "") -> None:
        self.visitor_id = visitor_id
        self.site_id = site_id
        self.first_ms = 0
        self.last_ms = 0
        self.session_number = 0
        self.prev_session_end_ms = 0
        self.prev_pageviews = 0
        self.prev_intent_visits = 0
        self.prev_purchases = 0
        self.prev_value = 0.0
        self.prev_engaged_ms = 0
        self.sections: dict[str, int] = {}
        self.flags = 0
        self.session_id = ""
        self.session_start_ms = 0
        self.campaign = ""
        self.channel = ""
        self.channel_evidence = 0
        self._reset_session()

    def _reset_session(self) -> None:
        self.events = 0
        self.pageviews = 0
        self.clicks = 0
        self.rage_clicks = 0
        self.rage_bursts = 0
        self.dead_clicks = 0
        self.errors = 0
        self.forms = 0
        self.pricing = 0
        self.product = 0
        self.cart = 0
        self.checkout = 0
        self.add_to_cart = 0
        self.purchases = 0
        self.value = 0.0
        self.social_proof = 0
        self.price_signals = 0
        self.back_forth = 0
        self.reloads = 0
        self.last_funnel_ms = 0
        self.scroll_sum = 0.0
        self.page_scroll = 0.0
        self.engaged_ms = 0
        self.top_sum = 0.0
        self.page_top = 0.0
        self.page_start_ms = 0
        self.page_clicks = 0
        self.page_key = 0
        self.prev_page_key = 0
        self.last_action_ms = 0
        self.gap_n = 0
        self.gap_mean = 0.0
        self.gap_m2 = 0.0
        self.fast_gaps = 0
        self.c1_t = self.c2_t = -(10**15)
        self.c1_x = self.c1_y = self.c2_x = self.c2_y = math.nan
        self.c1_k = self.c2_k = ""
        self.in_burst = False

    # -- session rules -------------------------------------------------------------------------
    def needs_new_session(self, event: TrackedEvent) -> bool:
        if self.session_number == 0:
            return True
        t = event.ts_ms
        if t - self.last_ms > SESSION_IDLE_MS or t - self.session_start_ms >= SESSION_MAX_MS:
            return True
        key = campaign_key(event)
        return bool(key) and key != self.campaign

    def start_session(self, event: TrackedEvent) -> None:
        """Fold the finished session into the visitor totals and open a new one at ``event``."""
        if self.session_number:
            self.prev_session_end_ms = self.last_ms
            self.prev_pageviews += self.pageviews
            self.prev_intent_visits += self.pricing + self.product + self.cart + self.checkout
            self.prev_purchases += self.purchases
            self.prev_value += self.value
            self.prev_engaged_ms += self.engaged_ms
        else:
            self.first_ms = event.ts_ms
        self.session_number += 1
        self.session_start_ms = event.ts_ms
        self.session_id = session_id_for(self.visitor_id, self.session_number, event.ts_ms)
        self.campaign = campaign_key(event)
        self._reset_session()

    # -- derived ---------------------------------------------------------------------------------
    @property
    def gap_cv(self) -> float:
        """Coefficient of variation of the session's inter-event gaps (NaN under 3 gaps)."""
        if self.gap_n < 3 or self.gap_mean <= 0:
            return math.nan
        return math.sqrt(self.gap_m2 / (self.gap_n - 1)) / self.gap_mean

    def as_dict(self) -> dict[str, Any]:
        """Every slot's value (for tests, debugging and equality checks)."""
        return {name: (dict(v) if isinstance(v := getattr(self, name), dict) else v) for name in self.__slots__}

    def copy(self) -> VisitorState:
        new = VisitorState.__new__(VisitorState)
        for name in self.__slots__:
            setattr(new, name, getattr(self, name))
        new.sections = dict(self.sections)
        return new

    def __repr__(self) -> str:
        return (f"VisitorState({self.visitor_id!r}, session {self.session_number} {self.session_id}, "
                f"{self.events} events, {self.pageviews} page views)")

    # -- rebuild ---------------------------------------------------------------------------------
    @classmethod
    def replay(cls, events: Iterable[TrackedEvent | Mapping[str, Any]]) -> VisitorState | None:
        """The state after the visitor's ``events`` (TrackedEvents or decoded rows, oldest
        first, in the order they were written), computed by the live update itself."""
        from ingest_worker.scoring.features import observe

        state: VisitorState | None = None
        for item in events:
            event = item if isinstance(item, TrackedEvent) else event_from_row(item)
            if state is None:
                state = cls(event.visitor_id, event.site_id)
            observe(state, event)
        return state


# --- decoded lake rows → events -----------------------------------------------------------------------
def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def event_from_row(row: Mapping[str, Any]) -> TrackedEvent:
    """A decoded AE row (``clickstream_lake.codec.decode``) back as the event the scoring
    update needs.  What the row does not hold (User-Agent, IP) stays empty; the row's
    channel is kept so the session's channel is the one it had live."""
    props_raw = row.get("props") or ""
    try:
        props = json.loads(props_raw) if props_raw else {}
        if not isinstance(props, dict):
            props = {}
    except ValueError:  # a props blob cut at 256 bytes
        props = {}
    ts = int(row.get("timestamp") or 0)
    return TrackedEvent(
        type=str(row.get("event_type") or ""),
        ts_ms=ts,
        event_id=str(row.get("event_id") or ""),
        url=str(row.get("url") or ""),
        referrer=str(row.get("referrer") or ""),
        title=str(row.get("title") or ""),
        name=str(row.get("event_name") or ""),
        hem=str(row.get("hem") or ""),
        screen=str(row.get("screen") or ""),
        scroll_depth=_num(row.get("scroll_depth")),
        time_on_page_ms=_num(row.get("time_on_page_ms")),
        x=_num(row.get("x")),
        y=_num(row.get("y")),
        target=str(row.get("target") or ""),
        value=_num(row.get("value")),
        currency=str(row.get("currency") or ""),
        order_id=str(row.get("order_id") or ""),
        props=props,
        utm_source=str(row.get("utm_source") or ""),
        utm_medium=str(row.get("utm_medium") or ""),
        utm_campaign=str(row.get("utm_campaign") or ""),
        utm_term=str(row.get("utm_term") or ""),
        utm_content=str(row.get("utm_content") or ""),
        gclid=str(row.get("gclid") or ""),
        fbclid=str(row.get("fbclid") or ""),
        msclkid=str(row.get("msclkid") or ""),
        request=RequestInfo(site_id=str(row.get("site_id") or ""), received_ms=ts),
        visitor_id=str(row.get("visitor_id") or ""),
        channel=str(row.get("channel") or ""),
    )


# --- the store -------------------------------------------------------------------------------------------
class SessionStore:
    """Bounded LRU of visitor states with idle expiry; O(1) get and put.

    Keys are (site_id, visitor_id).  A state idle for more than ``idle_ms`` (24 h by
    default: no session survives that) is dropped on access and swept from the cold end
    on every put; past ``max_visitors`` the least recently used state is evicted.
    Thread-safe (one lock around the dict operations).
    """

    def __init__(self, max_visitors: int = STORE_MAX_VISITORS, idle_ms: int = STORE_IDLE_MS) -> None:
        self.max_visitors = max_visitors
        self.idle_ms = idle_ms
        self._states: OrderedDict[tuple[str, str], VisitorState] = OrderedDict()
        self.lock = threading.Lock()  # held by get/put; *_locked callers hold it themselves
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._states

    def get(self, site_id: str, visitor_id: str, now_ms: int) -> VisitorState | None:
        with self.lock:
            return self.get_locked((site_id, visitor_id), now_ms)

    def get_locked(self, key: tuple[str, str], now_ms: int) -> VisitorState | None:
        """:meth:`get` of ``key`` = (site_id, visitor_id) for a caller holding :attr:`lock`."""
        states = self._states
        state = states.get(key)
        if state is None:
            return None
        if now_ms - state.last_ms > self.idle_ms:
            del states[key]
            self.expirations += 1
            return None
        states.move_to_end(key)
        return state

    def has(self, site_id: str, visitor_id: str, now_ms: int) -> bool:
        """A live state exists (no LRU touch)."""
        state = self._states.get((site_id, visitor_id))
        return state is not None and now_ms - state.last_ms <= self.idle_ms

    def put(self, state: VisitorState, now_ms: int | None = None) -> None:
        with self.lock:
            self.put_locked(state, state.last_ms if now_ms is None else now_ms)

    def put_locked(self, state: VisitorState, now: int) -> None:
        """:meth:`put` for a caller holding :attr:`lock` (``now`` given)."""
        key = (state.site_id, state.visitor_id)
        states = self._states
        states[key] = state
        states.move_to_end(key)
        while len(states) > self.max_visitors:
            states.popitem(last=False)
            self.evictions += 1
        # sweep up to two expired states from the cold end (amortised O(1))
        for _ in range(2):
            if not states:  # max_visitors 0
                break
            cold_key = next(iter(states))
            if now - states[cold_key].last_ms <= self.idle_ms:
                break
            del states[cold_key]
            self.expirations += 1

    def discard(self, site_id: str, visitor_id: str) -> None:
        with self.lock:
            self._states.pop((site_id, visitor_id), None)

    def clear(self) -> None:
        with self.lock:
            self._states.clear()

    def rebuild(self, rows: Iterable[Mapping[str, Any] | TrackedEvent]) -> int:
        """Rebuild states from recent rows of any number of visitors (decoded AE rows or
        events, oldest first).  Returns how many visitors were rebuilt."""
        groups: dict[tuple[str, str], list[Mapping[str, Any] | TrackedEvent]] = {}
        for row in rows:
            if isinstance(row, TrackedEvent):
                key = (row.site_id, row.visitor_id)
            else:
                key = (str(row.get("site_id") or ""), str(row.get("visitor_id") or ""))
            if key[1]:
                groups.setdefault(key, []).append(row)
        for items in groups.values():
            state = VisitorState.replay(items)
            if state is not None:
                self.put(state)
        return len(groups)
