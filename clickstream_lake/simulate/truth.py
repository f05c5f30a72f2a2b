"""Ground truth: what the simulator sent, counted per site and per UTC day, so tests and
benchmarks can check what the system computed against it.

Per site (and per day, ``by_day``):

* ``events`` — events sent; ``page_views``, ``purchases``; ``revenue`` (sum of purchase
  values, rounded to cents);
* ``visitors`` — distinct visitors (humans + bots), ``humans``, ``bots`` (bot visitors),
  ``bot_events``;
* ``sessions`` — distinct sessions (per day: sessions whose first event falls on that day);
* ``buyer_sessions`` and ``rage_sessions`` — sessions with a purchase / a rage-click burst.

Day = UTC date of the event's ``ts`` (= its ``send_ms``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clickstream_lake.simulate.model import DAY_MS, SimEvent, day_of

COUNTS = ("events", "page_views", "purchases", "revenue", "visitors", "humans", "bots", "bot_events", "sessions",
          "buyer_sessions", "rage_sessions")


class _Acc:
    __slots__ = ("events", "page_views", "purchases", "cents", "visitors", "bot_visitors", "bot_events", "sessions",
                 "buyer_sessions", "rage_sessions")

    def __init__(self) -> None:
        self.events = 0
        self.page_views = 0
        self.purchases = 0
        self.cents = 0
        self.visitors: set[str] = set()
        self.bot_visitors: set[str] = set()
        self.bot_events = 0
        self.sessions: set[str] = set()
        self.buyer_sessions: set[str] = set()
        self.rage_sessions: set[str] = set()

    def add(self, ev: SimEvent, count_session: bool) -> None:
        self.events += 1
        etype = ev.body.get("type")
        if etype == "page_view":
            self.page_views += 1
        elif etype == "purchase":
            self.purchases += 1
            self.cents += round(float(ev.body.get("value") or 0) * 100)
        self.visitors.add(ev.visitor_key)
        if ev.is_bot:
            self.bot_visitors.add(ev.visitor_key)
            self.bot_events += 1
        if count_session:
            self.sessions.add(ev.session_key)
            if ev.buyer:
                self.buyer_sessions.add(ev.session_key)
            if ev.rage:
                self.rage_sessions.add(ev.session_key)

    def result(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "page_views": self.page_views,
            "purchases": self.purchases,
            "revenue": self.cents / 100,
            "visitors": len(self.visitors),
            "humans": len(self.visitors) - len(self.bot_visitors),
            "bots": len(self.bot_visitors),
            "bot_events": self.bot_events,
            "sessions": len(self.sessions),
            "buyer_sessions": len(self.buyer_sessions),
            "rage_sessions": len(self.rage_sessions),
        }


class TruthCounter:
    """Incremental ground truth: ``add`` events as they stream by (in send order), then ``result``."""

    def __init__(self) -> None:
        self._sites: dict[str, _Acc] = {}
        self._days: dict[str, dict[str, _Acc]] = {}
        self._hostnames: dict[str, str] = {}
        self._total = _Acc()
        self._seen_sessions: set[str] = set()
        self._day_cache: dict[int, str] = {}

    def add(self, ev: SimEvent) -> None:
        sid = ev.site_id
        acc = self._sites.get(sid)
        if acc is None:
            acc = self._sites[sid] = _Acc()
            self._days[sid] = {}
            self._hostnames[sid] = ev.hostname
        day_no = ev.send_ms // DAY_MS
        dt = self._day_cache.get(day_no)
        if dt is None:
            dt = self._day_cache[day_no] = day_of(ev.send_ms)
        dacc = self._days[sid].get(dt)
        if dacc is None:
            dacc = self._days[sid][dt] = _Acc()
        first = ev.session_key not in self._seen_sessions
        if first:
            self._seen_sessions.add(ev.session_key)
        acc.add(ev, True)
        self._total.add(ev, True)
        dacc.add(ev, first)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sites": {}, "totals": self._total.result()}
        for sid in sorted(self._sites):
            res = self._sites[sid].result()
            res["hostname"] = self._hostnames[sid]
            res["by_day"] = {dt: self._days[sid][dt].result() for dt in sorted(self._days[sid])}
            out["sites"][sid] = res
        return out


def ground_truth(events: Iterable[SimEvent]) -> dict[str, Any]:
    """Count what was sent: ``{"sites": {site_id: {..., "hostname", "by_day": {dt: {...}}}}, "totals": {...}}``."""
    counter = TruthCounter()
    for ev in events:
        counter.add(ev)
    return counter.result()
