"""The scheduled export inside ``clickstream serve`` (hourly by default).

A server component (see ``ingest_worker/app.py``): on startup it starts a background task
that runs :meth:`Exporter.export_all` every ``CLICKSTREAM_EXPORT_INTERVAL`` seconds (0 turns
it off) in a worker thread, so the event loop keeps serving.  The first run happens shortly
after startup.  ``/healthz`` shows the last run; ``/metrics`` counts rows, files and errors.
Because every run is exactly-once, a run that overlaps a manual ``clickstream export`` or a
run of another server process is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from prometheus_client import Counter, Gauge

from clickstream_lake.context import AppContext
from clickstream_lake.export.exporter import Exporter
from clickstream_lake.export.settings import ExportSettings

log = logging.getLogger("clickstream.export")


class ExportSchedule:
    routes: list = []

    def __init__(self, ctx: AppContext, settings: ExportSettings | None = None, first_delay_s: float = 5.0):
        self.ctx = ctx
        self.settings = settings or ExportSettings.from_env(ctx.data)
        self.first_delay_s = min(first_delay_s, self.settings.interval_s)
        self._task: asyncio.Task | None = None
        self.last_run: dict[str, Any] = {}
        self.runs = 0
        self.rows = Counter(
            "clickstream_export_rows", "Rows exported to the customer lake", ["site"], registry=ctx.registry
        )
        self.files = Counter(
            "clickstream_export_files", "Objects written to the customer lake", ["site"], registry=ctx.registry
        )
        self.errors = Counter("clickstream_export_errors", "Failed site exports", ["site"], registry=ctx.registry)
        self.last_success = Gauge(
            "clickstream_export_last_run_timestamp_seconds", "End of the last export run", registry=ctx.registry
        )

    def run_once(self) -> list[dict]:
        exporter = Exporter(self.ctx.db, self.ctx.lake, self.settings)
        started = time.time()
        reports = exporter.export_all()
        out = []
        for r in reports:
            if r.error:
                self.errors.labels(r.site_id).inc()
            self.rows.labels(r.site_id).inc(r.rows)
            self.files.labels(r.site_id).inc(len(r.files))
            out.append(r.as_dict())
        self.runs += 1
        self.last_run = {"at": time.time(), "seconds": round(time.time() - started, 3), "sites": out}
        self.last_success.set(time.time())
        return out

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay_s)
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # noqa: BLE001 - keep the schedule alive, report in health and logs
                log.exception("scheduled export failed")
                self.last_run = {"at": time.time(), "error": "see server log"}
            await asyncio.sleep(self.settings.interval_s)

    async def startup(self) -> None:
        if self.settings.interval_s > 0:
            self._task = asyncio.create_task(self._loop(), name="export-schedule")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def health(self) -> dict[str, Any]:
        return {
            "export": {
                # a failing export never makes the ingest server unhealthy: it is reported, not fatal
                "ok": True,
                "failing_sites": [s["site_id"] for s in self.last_run.get("sites", []) if s.get("error")],
                "last_error": self.last_run.get("error"),
                "enabled": self.settings.interval_s > 0,
                "interval_s": self.settings.interval_s,
                "target": self.settings.url,
                "runs": self.runs,
                "last_run_at": self.last_run.get("at"),
            }
        }


def component(ctx: AppContext) -> ExportSchedule:
    ctx.components["export"] = sched = ExportSchedule(ctx)
    return sched
