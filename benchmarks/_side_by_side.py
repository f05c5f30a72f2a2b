"""What the side-by-side benchmarks (``pipeline.py``, ``flush.py``) share: a git revision
exported as a tree to measure beside this one, CPU figures per tree and the ratio, and the
rich table that prints them."""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export_revision(rev: str, dest: Path) -> Path:
    """The files of git revision ``rev`` of this repository, extracted into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def cpu_figures(cpu_us: list[float]) -> dict[str, object]:
    return {"cpu_us_min": min(cpu_us), "cpu_us_median": statistics.median(cpu_us), "cpu_us": cpu_us}


def add_speedup(res: dict, trees: list[str]) -> None:
    """With two trees (baseline first), the baseline's CPU over the current one's."""
    if len(trees) == 2:
        base, cur = (res[n] for n in trees)
        res["speedup_cpu_min"] = base["cpu_us_min"] / cur["cpu_us_min"]
        res["speedup_cpu_median"] = base["cpu_us_median"] / cur["cpu_us_median"]


def print_cpu_table(title: str, trees: list[str], workloads: dict[str, dict],
                    extra: tuple[str, Callable[[dict], str]] | None = None) -> None:
    """One row per workload: each tree's CPU min / median, the speed-up, and ``extra``
    (a column header and how to fill it from the workload's results) when comparing."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("workload")
    for name in trees:
        t.add_column(f"{name}\nCPU min / median", justify="right")
    comparing = len(trees) == 2
    if comparing:
        t.add_column("speed-up\n(CPU min / median)", justify="right")
        if extra is not None:
            t.add_column(extra[0], justify="center")
    for w, res in workloads.items():
        cells = [f"{res[n]['cpu_us_min']:.1f} / {res[n]['cpu_us_median']:.1f}" for n in trees]
        if comparing:
            cells.append(f"{res['speedup_cpu_min']:.2f}× / {res['speedup_cpu_median']:.2f}×")
            if extra is not None:
                cells.append(extra[1](res))
        t.add_row(w, *cells)
    Console().print(t)


def run_in_tree(script: str, src: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``script`` (a benchmark's own file) with ``--worker src *args`` in a fresh
    interpreter that imports the code of tree ``src`` (with ``env`` added to its
    environment); returns the JSON object it prints last."""
    import json
    import os
    import sys

    env = {**os.environ, **(env or {}), "PYTHONPATH": str(src)}
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", str(src), *args]
    out = subprocess.run(cmd, env=env, cwd=src, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])
