"""``clickstream report``: one self-contained HTML file with the dashboard's charts."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

import pytest

from clickstream_lake.dashboards.metrics import Filters
from clickstream_lake.dashboards.source import SiteData
from clickstream_lake.report import build_report
from tests.lakefill import fill_lake, sim_config

END = dt.date(2026, 1, 10)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    from clickstream_lake.settings import DataDir

    data = DataDir.resolve(tmp_path_factory.mktemp("report") / "data").ensure()
    return fill_lake(data, sim_config(["site_a", "site_b"], days=3, seed=13, end=END))


def _cli(*args: str, data) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream_lake", "report", "--data", str(data.path), *args],
                          capture_output=True, text=True, timeout=300)


def test_report_cli_writes_a_self_contained_html(filled, tmp_path):
    out = tmp_path / "out" / "report.html"
    r = _cli("--site", "site_a", "--out", str(out), "--since", "2026-01-08", "--until", "2026-01-10", data=filled.data)
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text()
    assert text.startswith("<!doctype html>")
    svgs = re.findall(r"<svg\b", text)
    assert len(svgs) >= 8  # traffic, channels, campaigns, pages, entry/exit, hotspots, funnel, scores...
    for tile in ("traffic", "channels", "top pages", "funnel", "frustration hotspots"):
        assert f'data-tile="{tile}"' in text
    # self-contained: no scripts, no external resources
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)=["']https?://""", text)
    # the headline numbers are the ground truth's
    truth = filled.truth_between("site_a", dt.date(2026, 1, 8), END)
    assert f">{truth['visitors']:,}<" in text
    assert f">{truth['page_views']:,}<" in text
    assert f">{truth['revenue']:,.2f}<" in text
    assert "site_b" not in text


def test_report_with_a_key_and_default_range(filled, tmp_path):
    from clickstream_lake.control import keys as keys_mod
    from clickstream_lake.control.db import ControlDB

    db = ControlDB(filled.data.control_db)
    secret, _ = keys_mod.create_key(db, "site_b", name="report", permissions="read")
    db.close()
    out = tmp_path / "b.html"
    r = _cli("--key", secret, "--out", str(out), data=filled.data)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "site_b · behavioural analytics" in text and "2026-01-04 → 2026-01-10" in text


@pytest.mark.parametrize("args,message", [
    (["--site", "nope"], "no site"),
    (["--key", "csk_bad"], "unknown or revoked"),
    (["--site", "site_a", "--since", "yesterday"], "--since must be a date"),
    (["--site", "site_a", "--since", "2026-01-10", "--until", "2026-01-01"], "ends"),
    (["--site", "site_a", "--funnel", "page_view"], "2 to 8 steps"),
    ([], "give --site"),
])
def test_report_cli_errors_are_clear(filled, tmp_path, args, message):
    from typer.testing import CliRunner

    from clickstream_lake.cli import app

    r = CliRunner().invoke(app, ["report", "--data", str(filled.data.path), *args, "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 1
    assert message in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not (tmp_path / "x.html").exists()


def test_report_filters_follow_the_dashboard(filled):
    site = SiteData.open(site="site_a", data=filled.data)
    f = Filters(since=dt.date(2026, 1, 9), until=END, devices=("mobile",))
    rep = build_report(site, f)
    assert rep.kpis["current"]["page_views"] < filled.truth_between("site_a", f.since, END)["page_views"]
    assert "device: mobile" in rep.html()
