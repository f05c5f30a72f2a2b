"""Scoring benchmark: per-event latency of identity → session → 16 scores, in process.

    python benchmarks/scoring.py [--events 200000] [--memory-visitors 100000] [--json]

Traffic is the simulator's (``clickstream_lake.simulate``, fixed seed and timeline), each
body parsed by ``normalize.request_info`` + ``normalize.parse_event`` as in the worker, then
scored by ``Scorer.process`` (a per-visitor cookie jar plays the browser).  Only
``Scorer.process`` is inside the timer; its latency percentiles, the events/s it sustains on
one core, and — side by side, as the baseline — the cost of ``parse_event`` (the stage in
front of it) on the same events are reported, with the ratio.

Two clocks: wall time (``perf_counter``: what a request waits, including the time the OS
gives the core to other processes — on a shared, loaded machine this dominates the tail)
and the thread's CPU time (``thread_time``: what the scoring code itself costs).  Both are
reported; the load average is printed beside them.

Memory: a fresh ``SessionStore`` is filled with ``--memory-visitors`` live visitors (each a
short session: landing page, scroll, click, pricing page, engagement ping) under
``tracemalloc``; the traced growth is scaled to 100k live sessions.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from clickstream_lake.control.config import SiteConfig
from clickstream_lake.simulate import SimConfig, generate
from ingest_worker import normalize
from ingest_worker.events import RequestInfo, TrackedEvent
from ingest_worker.scoring import MODEL_VERSION, Scorer
from ingest_worker.sessions import SessionStore

DAY_MS = 86_400_000
END_MS = 1772323200000  # 2026-03-01: every run measures the same traffic
TARGET_P99_MS = 0.3
TARGET_EPS = 20_000
BUDGET_MS = 3.0  # the source article's hard requirement for the whole event


def simulated(n: int) -> list:
    """At least ``n`` simulated events (3 sites; the visitor count is scaled to reach n)."""
    visitors = max(50, n // 60)
    events = []
    days = 3
    while len(events) < n:
        events = []
        for se in generate(SimConfig(sites=3, days=days, seed=7, end_ms=END_MS, visitors_per_site=visitors)):
            events.append(se)
        visitors = int(visitors * 1.3 * n / max(len(events), 1)) + 1
    return events[: max(n, 0)]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def run_latency(events: list, progress: Progress | None) -> dict:
    scorer = Scorer(secret=b"benchmark")
    configs: dict[str, SiteConfig] = {}
    jar: dict[str, str] = {}
    perf = time.perf_counter
    cpu = time.thread_time
    score_times: list[float] = []
    cpu_times: list[float] = []
    parse_times: list[float] = []
    task = progress.add_task("scoring", total=len(events)) if progress else None
    gc.collect()
    for i, se in enumerate(events):
        cfg = configs.get(se.site_id)
        if cfg is None:
            cfg = configs[se.site_id] = SiteConfig(site_id=se.site_id, hostnames=(se.hostname,))
        info = normalize.request_info(se.site_id, se.headers, "10.0.0.1", se.send_ms)
        info.cookie_visitor_id = jar.get(se.visitor_key, "")
        t0 = perf()
        ev = normalize.parse_event(se.body, info)
        t1 = perf()
        if isinstance(ev, normalize.Rejection):
            continue
        c1 = cpu()
        t1 = perf()
        scorer.process(ev, cfg)
        t2 = perf()
        c2 = cpu()
        parse_times.append(t1 - t0)
        score_times.append(t2 - t1)
        cpu_times.append(c2 - c1)
        ident = scorer.last_identity
        if ident is not None and ident.set_cookie:
            jar[se.visitor_key] = ev.visitor_id
        if progress and i % 5000 == 0:
            progress.update(task, completed=i)
    if progress:
        progress.update(task, completed=len(events))
    s = sorted(score_times)
    c = sorted(cpu_times)
    p = sorted(parse_times)
    total = sum(score_times)
    return {
        "cpu_p50_ms": percentile(c, 0.50) * 1e3,
        "cpu_p99_ms": percentile(c, 0.99) * 1e3,
        "cpu_p999_ms": percentile(c, 0.999) * 1e3,
        "cpu_events_per_s": len(c) / sum(c) if sum(c) else float("nan"),
        "events": len(score_times),
        "live_visitors": len(scorer.store),
        "p50_ms": percentile(s, 0.50) * 1e3,
        "p99_ms": percentile(s, 0.99) * 1e3,
        "p999_ms": percentile(s, 0.999) * 1e3,
        "max_ms": s[-1] * 1e3 if s else float("nan"),
        "mean_ms": statistics.fmean(s) * 1e3 if s else float("nan"),
        "events_per_s": len(s) / total if total else float("nan"),
        "parse_p50_ms": percentile(p, 0.50) * 1e3,
        "parse_p99_ms": percentile(p, 0.99) * 1e3,
        "parse_events_per_s": len(p) / sum(p) if p else float("nan"),
    }


def run_memory(n_visitors: int, progress: Progress | None) -> dict:
    """Traced memory of a store holding ``n_visitors`` live sessions, scaled to 100k."""
    scorer = Scorer(secret=b"benchmark", store=SessionStore(max_visitors=n_visitors + 1))
    cfg = SiteConfig(site_id="site_m")
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
    t0 = END_MS - DAY_MS
    task = progress.add_task("memory", total=n_visitors) if progress else None
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n_visitors):
        cookie = f"v_{i:032x}"
        t = t0 + i * 7
        steps = (
            ("page_view", f"/c/cat-{i % 5}?utm_source=news&utm_medium=email", {"referrer": "https://mail.example/"}),
            ("scroll", "", {"scroll_depth": float(25 + i % 75)}),
            ("click", "", {"x": float(i % 1200), "y": float(i % 700), "target": "a.product"}),
            ("page_view", "/pricing", {}),
            ("engagement", "", {"time_on_page_ms": float(1000 + i % 30_000)}),
        )
        for k, (typ, url, extra) in enumerate(steps):
            req = RequestInfo(site_id="site_m", received_ms=t + k * 9000, user_agent=ua, ip="10.1.0.1",
                              cookie_visitor_id=cookie)
            ev = TrackedEvent(type=typ, ts_ms=t + k * 9000, event_id=f"m{i}.{k}", url=url, screen="1920x1080",
                              request=req, utm_source="news" if k == 0 else "", utm_medium="email" if k == 0 else "",
                              **extra)
            scorer.process(ev, cfg)
        if progress and i % 5000 == 0:
            progress.update(task, completed=i)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if progress:
        progress.update(task, completed=n_visitors)
    per = (current - before) / n_visitors
    return {
        "memory_visitors": len(scorer.store),
        "bytes_per_session": per,
        "mb_per_100k_sessions": per * 100_000 / 1e6,
        "peak_mb_per_100k_sessions": (peak - before) / n_visitors * 100_000 / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="simulated events to score (default 200000)")
    ap.add_argument("--memory-visitors", type=int, default=100_000, help="live sessions for the memory figure")
    ap.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = ap.parse_args(argv)
    console = Console(stderr=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    t = time.perf_counter()
    events = simulated(args.events)
    gen_s = time.perf_counter() - t
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console, disable=args.json, transient=True) as progress:
        lat = run_latency(events, progress)
        del events
        gc.collect()
        mem = run_memory(args.memory_visitors, progress) if args.memory_visitors > 0 else {}

    figures = {
        "benchmark": "scoring",
        "model_version": MODEL_VERSION,
        **lat,
        "scoring_vs_parse_ratio": lat["mean_ms"] / (1e3 / lat["parse_events_per_s"]),
        "p99_share_of_3ms_budget": lat["p99_ms"] / BUDGET_MS,
        "target_p99_ms": TARGET_P99_MS,
        "target_events_per_s": TARGET_EPS,
        "meets_p99_wall": lat["p99_ms"] <= TARGET_P99_MS,
        "meets_p99_cpu": lat["cpu_p99_ms"] <= TARGET_P99_MS,
        "meets_events_per_s_wall": lat["events_per_s"] >= TARGET_EPS,
        "meets_events_per_s_cpu": lat["cpu_events_per_s"] >= TARGET_EPS,
        **mem,
        "generate_s": gen_s,
        "load_avg_1m": load,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    table = Table(title=f"scoring {MODEL_VERSION}: Scorer.process per event (load {load:.1f} on {os.cpu_count()} cpus)")
    table.add_column("figure")
    table.add_column("wall clock", justify="right")
    table.add_column("CPU time", justify="right")
    table.add_column("target / baseline", justify="right")
    table.add_row("events scored", f"{lat['events']:,}", "", f"{lat['live_visitors']:,} visitors")
    table.add_row("p50 latency", f"{lat['p50_ms'] * 1000:.1f} µs", f"{lat['cpu_p50_ms'] * 1000:.1f} µs",
                  f"parse_event p50 {lat['parse_p50_ms'] * 1000:.1f} µs")
    table.add_row("p99 latency", f"{lat['p99_ms'] * 1000:.1f} µs", f"{lat['cpu_p99_ms'] * 1000:.1f} µs",
                  f"≤ {TARGET_P99_MS * 1000:.0f} µs")
    table.add_row("p99.9 latency", f"{lat['p999_ms'] * 1000:.1f} µs", f"{lat['cpu_p999_ms'] * 1000:.1f} µs",
                  f"3 ms budget: {BUDGET_MS * 1000:.0f} µs")
    table.add_row("max latency", f"{lat['max_ms'] * 1000:.1f} µs", "", "")
    table.add_row("events/s (one core)", f"{lat['events_per_s']:,.0f}", f"{lat['cpu_events_per_s']:,.0f}",
                  f"≥ {TARGET_EPS:,}")
    table.add_row("parse_event events/s", f"{lat['parse_events_per_s']:,.0f}", "",
                  f"scoring costs {figures['scoring_vs_parse_ratio']:.2f}× parsing")
    if mem:
        table.add_row("memory per 100k live sessions", f"{mem['mb_per_100k_sessions']:.1f} MB", "",
                      f"{mem['bytes_per_session']:.0f} B/session")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
