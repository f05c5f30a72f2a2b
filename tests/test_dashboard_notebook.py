"""The marimo notebooks: `marimo check` is clean and each runs headless on a simulated lake."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clickstream_lake.resources import NOTEBOOKS_DIR
from tests.lakefill import fill_lake, sim_config

MARIMO_NOTEBOOKS = sorted(p for p in NOTEBOOKS_DIR.glob("*.py"))
MARIMO = str(Path(sys.executable).with_name("marimo"))


def test_there_are_marimo_notebooks():
    names = {p.name for p in MARIMO_NOTEBOOKS}
    assert {"dashboard.py", "ae_migration.py"} <= names


@pytest.mark.parametrize("notebook", MARIMO_NOTEBOOKS, ids=lambda p: p.name)
def test_marimo_check_passes(notebook):
    r = subprocess.run([MARIMO, "check", "--strict", str(notebook)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


@pytest.fixture(scope="module")
def sim_lake(tmp_path_factory):
    from clickstream_lake.settings import DataDir

    data = DataDir.resolve(tmp_path_factory.mktemp("nb") / "data").ensure()
    # ends yesterday: the AE queries' "NOW() - INTERVAL '7' DAY" windows see the data
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return fill_lake(data, sim_config(["site_a", "site_b"], days=3, seed=5, end=yesterday))


RUNNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import importlib
nb = importlib.import_module(sys.argv[2])
outputs, defs = nb.app.run()
out = {"cells": len(outputs), "site": getattr(defs.get("site"), "site_id", None)}
for name in ("kpi_rows", "ae_rows", "rich_rows"):
    if name in defs:
        out[name] = defs[name]
print("RESULT " + json.dumps(out, default=str))
"""


def run_headless(notebook: Path, env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-c", RUNNER, str(notebook.parent), notebook.stem],
                       capture_output=True, text=True, timeout=240, env={**os.environ, **env})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_dashboard_runs_headless(sim_lake):
    res = run_headless(NOTEBOOKS_DIR / "dashboard.py",
                       {"CLICKSTREAM_DATA": str(sim_lake.data.path), "CLICKSTREAM_SITE": "site_b"})
    assert res["site"] == "site_b"
    assert res["cells"] >= 20


def test_site_resolution_refuses_unknown_keys_and_sites(sim_lake):
    from clickstream_lake.dashboards.source import AccessError, SiteData

    with pytest.raises(AccessError, match="unknown or revoked"):
        SiteData.open(key="csk_nope", data=sim_lake.data)
    with pytest.raises(AccessError, match="no site"):
        SiteData.open(site="site_zz", data=sim_lake.data)
    assert SiteData.open(site="site_a", data=sim_lake.data).cache_ttl_s == 30.0


def test_ae_migration_runs_headless(sim_lake):
    res = run_headless(NOTEBOOKS_DIR / "ae_migration.py",
                       {"CLICKSTREAM_DATA": str(sim_lake.data.path), "CLICKSTREAM_SITE": "site_a"})
    assert res["site"] == "site_a"
    assert len(res["ae_rows"]) == len(res["rich_rows"]) >= 5
    assert all(n > 0 for n in res["ae_rows"] + res["rich_rows"]), res
