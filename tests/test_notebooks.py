"""notebooks/explore.ipynb (Jupyter + jupysql) runs end to end on a simulated lake."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from clickstream_lake.resources import NOTEBOOKS_DIR
from tests.lakefill import fill_lake, sim_config

NOTEBOOK = NOTEBOOKS_DIR / "explore.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from clickstream_lake.settings import DataDir

    data = DataDir.resolve(tmp_path_factory.mktemp("nbx") / "data").ensure()
    fill_lake(data, sim_config(["site_a", "site_b"], days=3, seed=17))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"CLICKSTREAM_DATA": str(data.path), "CLICKSTREAM_SITE": "site_a"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits them
    try:
        # "python3" is ipykernel's native kernel: this interpreter (the venv's)
        NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=True).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, data


def _outputs(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            yield cell, out


def test_notebook_runs_without_error_outputs(executed):
    nb, _ = executed
    errors = [(c.source[:80], o.get("ename"), o.get("evalue")) for c, o in _outputs(nb) if o.output_type == "error"]
    assert errors == []
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_notebook_shows_sql_join_cohorts_and_plots(executed):
    nb, data = executed
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for _, o in _outputs(nb))
    assert "site site_a" in text and "campaign_costs" in text
    join_cell = next(c for c in nb.cells if "JOIN sessions s" in c.source)
    join_text = "".join(str(o.get("data", {}).get("text/plain", "")) for o in join_cell.outputs)
    assert "roas" in join_text and "cost_per_session" in join_text
    # the upload landed in this site's tables, not another's
    assert (data.lake / "tables" / "site_id=site_a" / "campaign_costs.parquet").exists()
    assert not (data.lake / "tables" / "site_id=site_b").exists()
    retention_cell = next(c for c in nb.cells if c.source.strip() == "retention")
    assert "days_later" in str(retention_cell.outputs)
    mimes = {m for _, o in _outputs(nb) for m in o.get("data", {})}
    assert "image/png" in mimes  # %sqlplot
    chart = nb.cells[-1].outputs  # Altair: a Vega-Lite spec (mimetype) or its HTML embedding
    assert any(m.startswith("application/vnd.vegalite") for m in mimes) or "vega" in str(chart).lower()
    assert "Retention by cohort" in str(chart)
    assert "site_b" not in text
