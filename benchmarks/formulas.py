"""Cost of the 16 score formulas per call: the compiled kernel against the Python closure.

Both are ``formulas.build(WEIGHTS)`` of this tree (``compiled=False`` for the closure), timed
in the same process in alternating rounds on the same visitor states: a mid-session
visitor, a returning buyer with counts beyond the tables, and a bot-like session.  Reports
µs per call (min / median over rounds) and the ratio::

    python benchmarks/formulas.py [--calls 200000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _states() -> list[tuple[object, int, int]]:
    from ingest_worker.sessions import VisitorState

    t0 = 1_790_000_000_000
    out = []
    s = VisitorState("v_" + "1" * 32, "site_a")  # mid-session visitor, small counts
    s.session_number, s.first_ms, s.session_start_ms, s.page_start_ms = 1, t0, t0, t0 + 60_000
    s.events, s.pageviews, s.clicks, s.pricing, s.product = 12, 4, 5, 1, 2
    s.scroll_sum, s.page_scroll, s.top_sum, s.page_top, s.engaged_ms = 180.0, 40.0, 50_000.0, 8_000.0, 58_000
    s.gap_n, s.gap_mean, s.gap_m2, s.channel, s.channel_evidence = 11, 9_000.0, 4e8, "Organic Search", 2
    s.sections = {"pricing": 2, "product": 3}
    out.append((s, 0, t0 + 120_000))
    r = s.copy()  # returning buyer, counts past the tables
    r.session_number, r.prev_session_end_ms, r.session_start_ms = 7, t0 - 86_400_000 * 3, t0
    r.prev_pageviews, r.prev_purchases, r.prev_intent_visits, r.pageviews, r.events = 400, 3, 90, 70, 160
    r.cart, r.checkout, r.add_to_cart, r.purchases, r.last_funnel_ms = 2, 1, 2, 1, t0 + 100_000
    r.sections = {"shop": 120, "blog": 4, "cart": 9}
    out.append((r, 0, t0 + 200_000))
    b = s.copy()  # bot-like: crawler UA, regular fast gaps
    b.gap_n, b.gap_mean, b.gap_m2, b.fast_gaps, b.flags = 30, 200.0, 10.0, 25, 1
    out.append((b, 1, t0 + 90_000))
    return out


def measure(calls: int, rounds: int) -> dict:
    from ingest_worker.scoring import WEIGHTS
    from ingest_worker.scoring.formulas import build, compiled_kernel

    kernel, why = compiled_kernel()
    impls = {"python": build(WEIGHTS, compiled=False)}
    if kernel is not None:
        impls["compiled"] = build(WEIGHTS)
    cases = _states()
    per = max(1, calls // len(cases))
    us: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(rounds):
        for name, f in impls.items():
            t = time.process_time()
            for s, ua, now in cases:
                for _ in range(per):
                    f(s, ua, now)
            us[name].append((time.process_time() - t) / (per * len(cases)) * 1e6)
    out: dict = {"calls": per * len(cases), "rounds": rounds, "kernel": why, "impls": {}}
    for name, xs in us.items():
        out["impls"][name] = {"us_min": min(xs), "us_median": statistics.median(xs), "us": xs}
    if "compiled" in us:
        p, c = out["impls"]["python"], out["impls"]["compiled"]
        out["speedup_min"] = p["us_min"] / c["us_min"]
        out["speedup_median"] = p["us_median"] / c["us_median"]
        out["fallbacks"] = impls["compiled"].fallbacks
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200_000, help="calls per round and implementation")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = ap.parse_args()
    out = measure(args.calls, args.rounds)
    if args.json:
        print(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"score formulas: CPU µs per call ({out['calls']} calls × {out['rounds']} rounds, "
                    f"kernel: {out['kernel']})")
    t.add_column("implementation")
    t.add_column("µs min / median", justify="right")
    for name, r in out["impls"].items():
        t.add_row(name, f"{r['us_min']:.2f} / {r['us_median']:.2f}")
    if "speedup_min" in out:
        t.add_row("speed-up", f"{out['speedup_min']:.2f}× / {out['speedup_median']:.2f}×")
    Console().print(t)


if __name__ == "__main__":
    main()
