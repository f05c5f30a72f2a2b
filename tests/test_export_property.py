"""Property: whatever the interleaving of lake writes, export runs, crashes between the object
and the watermark, and clock advances, the export ends up holding every closed-window row of
the site exactly once."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.export.store import ExportStore
from clickstream_lake.settings import DataDir
from tests.export_helpers import HOUR, T0, enable, event_ids, exporter, make_rows, publish, read_objects

step = st.one_of(
    st.tuples(st.just("publish"), st.integers(0, 7), st.integers(1, 6)),  # hour offset, rows
    st.tuples(st.just("export"), st.integers(0, 3), st.just(0)),  # crash at the n-th commit (0 = none)
    st.tuples(st.just("tick"), st.integers(1, 2), st.just(0)),  # the clock moves n hours
)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=12))
def test_every_closed_row_exported_exactly_once(steps):
    with tempfile.TemporaryDirectory() as tmp:
        data = DataDir.resolve(Path(tmp) / "data").ensure()
        db = ControlDB(data.control_db)
        db.migrate()
        sites_mod.add_site(db, "site_p", domain="p.test", hostnames=["t.p.test"])
        enable(data, "site_p", "p")
        url = f"file://{tmp}/export"
        now = T0 / 1000 + 3 * 3600 + 600  # 03:10Z
        published: list[str] = []
        n_batch = 0
        for kind, a, b in steps:
            if kind == "publish":
                n_batch += 1
                rows = make_rows("site_p", T0 + a * HOUR + 17 * n_batch, b, 60_000, f"b{n_batch}")
                publish(data, "site_p", rows)
                published += [(r.timestamp, r.blobs[17]) for r in rows]
            elif kind == "tick":
                now += a * 3600
            else:
                _export(data, url, now, crash_at=a)
        final_now = T0 / 1000 + 12 * 3600 + 600  # 12:10Z: every window up to 12:00 is closed
        _export(data, url, final_now, crash_at=0)
        ex = exporter(data, url, now=final_now)
        ids = event_ids(read_objects(ex.target, "p").values())
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(eid for ts, eid in published)
        store = ExportStore(db, "site_p", f"{ex.target.identity}/p")
        if published:
            assert store.watermark()[0] == T0 + 12 * HOUR  # all windows up to 12:00 recorded
        assert sum(f.event_count for f in store.files()) == len(published)


def _export(data, url, now, crash_at):
    real = ExportStore.commit_file
    calls = {"n": 0}

    def maybe_crash(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise RuntimeError("crash")
        return real(self, *a, **kw)

    ExportStore.commit_file = maybe_crash
    try:
        exporter(data, url, now=now).export_site("site_p")
    except RuntimeError as e:
        assert str(e) == "crash"
    finally:
        ExportStore.commit_file = real
