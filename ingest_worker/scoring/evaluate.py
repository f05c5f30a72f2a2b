"""Drive simulated traffic through the real pipeline stages in process, and measure how
well the scores separate the populations they claim to (used by the tests and the
benchmark).

Each simulated body goes through ``normalize.request_info`` + ``normalize.parse_event`` and
then :meth:`Scorer.process`, exactly as the worker does; a per-visitor cookie jar plays the
browser (the id of a response that sets the cookie is sent back on the visitor's next
events), as the simulator's HTTP sender does.

Where the scores are read (so the label does not leak into the score):

* **bot_probability** — per visitor, the score at the visitor's last event;
* **conversion_prob** — per human session, the score at the last event *before checkout
  begins* (the first checkout page, ``form_submit``, ``identify`` or ``purchase``, whichever
  comes first): the score sees the browsing and the cart, never the checkout or the
  purchase itself.  A stricter variant (``conversion_prob_auc_browsing``) cuts before the
  first commerce step of any kind (also ``add_to_cart`` and cart pages), so it sees browsing
  only.  The same cut applies to buyers and non-buyers; sessions that start at the cut have
  no score before it and are left out;
* **frustration** — per human session, the score at the session's last event (frustration
  describes the session; the rage burst is its evidence).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clickstream_lake.control.config import SiteConfig
from ingest_worker import normalize
from ingest_worker.events import TrackedEvent
from ingest_worker.scoring import Scorer
from ingest_worker.scoring.features import CART, CHECKOUT, classify_url

CHECKOUT_TYPES = frozenset(("purchase", "form_submit", "identify"))
COMMERCE_TYPES = CHECKOUT_TYPES | {"add_to_cart"}


def tracked_events(sim_events: Iterable[Any], scorer: Scorer, configs: dict[str, SiteConfig]) -> Iterator[tuple[Any, TrackedEvent, dict[str, float], float]]:
    """(sim event, tracked event, scores, seconds spent in ``Scorer.process``) per event;
    events the parser rejects are skipped."""
    jar: dict[str, str] = {}
    perf = time.perf_counter
    for se in sim_events:
        cfg = configs.get(se.site_id)
        if cfg is None:
            cfg = configs[se.site_id] = SiteConfig(site_id=se.site_id, hostnames=(se.hostname,),
                                                   domain=se.hostname.removeprefix("t."))
        info = normalize.request_info(se.site_id, se.headers, "10.0.0.1", se.send_ms)
        info.cookie_visitor_id = jar.get(se.visitor_key, "")
        ev = normalize.parse_event(se.body, info)
        if isinstance(ev, normalize.Rejection):
            continue
        t = perf()
        scores = scorer.process(ev, cfg)
        dt = perf() - t
        ident = scorer.last_identity
        if ident is not None and ident.set_cookie:
            jar[se.visitor_key] = ev.visitor_id
        yield se, ev, scores, dt


def auc(positives: list[float], negatives: list[float]) -> float:
    """Area under the ROC curve (Mann–Whitney U with ties counted half)."""
    if not positives or not negatives:
        return float("nan")
    pairs = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum = 0.0
    i = 0
    n = len(pairs)
    while i < n:
        j = i
        while j < n and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2.0
        rank_sum += avg_rank * sum(1 for k in range(i, j) if pairs[k][1] == 1)
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def is_commerce(ev: TrackedEvent) -> bool:
    """Any commerce step: cart or checkout page, add_to_cart, checkout form, purchase."""
    if ev.type in COMMERCE_TYPES:
        return True
    return ev.type == "page_view" and bool(classify_url(ev.url)[0] & (CART | CHECKOUT))


def is_checkout(ev: TrackedEvent) -> bool:
    """The checkout begins: checkout page, checkout form / identify, purchase."""
    if ev.type in CHECKOUT_TYPES:
        return True
    return ev.type == "page_view" and bool(classify_url(ev.url)[0] & CHECKOUT)


@dataclass
class Separation:
    bot_auc: float = float("nan")
    conversion_auc: float = float("nan")
    frustration_auc: float = float("nan")
    conversion_auc_browsing: float = float("nan")
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"bot_probability_auc": self.bot_auc, "conversion_prob_auc": self.conversion_auc,
                "conversion_prob_auc_browsing": self.conversion_auc_browsing,
                "frustration_auc": self.frustration_auc, **self.counts}


def separation(sim_events: Iterable[Any], scorer: Scorer | None = None) -> Separation:
    """Score the events and compute the three AUCs (see module doc)."""
    scorer = scorer or Scorer(secret=b"evaluation")
    configs: dict[str, SiteConfig] = {}
    bot_last: dict[str, tuple[bool, float]] = {}
    sessions: dict[str, dict[str, Any]] = {}
    for se, ev, scores, _ in tracked_events(sim_events, scorer, configs):
        bot_last[se.visitor_key] = (se.is_bot, scores["bot_probability"])
        if se.is_bot:
            continue
        s = sessions.get(se.session_key)
        if s is None:
            s = sessions[se.session_key] = {"buyer": se.buyer, "rage": se.rage, "pre": None, "cut": False,
                                             "browse": None, "browse_cut": False}
        if not s["cut"]:
            if is_checkout(ev):
                s["cut"] = True
            else:
                s["pre"] = scores["conversion_prob"]
        if not s["browse_cut"]:
            if is_commerce(ev):
                s["browse_cut"] = True
            else:
                s["browse"] = scores["conversion_prob"]
        s["last_frustration"] = scores["frustration"]
    bots = [v for is_bot, v in bot_last.values() if is_bot]
    humans = [v for is_bot, v in bot_last.values() if not is_bot]
    buyers = [s["pre"] for s in sessions.values() if s["buyer"] and s["pre"] is not None]
    others = [s["pre"] for s in sessions.values() if not s["buyer"] and s["pre"] is not None]
    b_buyers = [s["browse"] for s in sessions.values() if s["buyer"] and s["browse"] is not None]
    b_others = [s["browse"] for s in sessions.values() if not s["buyer"] and s["browse"] is not None]
    rage = [s["last_frustration"] for s in sessions.values() if s["rage"]]
    calm = [s["last_frustration"] for s in sessions.values() if not s["rage"]]
    return Separation(
        bot_auc=auc(bots, humans), conversion_auc=auc(buyers, others), frustration_auc=auc(rage, calm),
        conversion_auc_browsing=auc(b_buyers, b_others),
        counts={"bot_visitors": len(bots), "human_visitors": len(humans), "buyer_sessions": len(buyers),
                "other_sessions": len(others), "rage_sessions": len(rage), "calm_sessions": len(calm)},
    )
