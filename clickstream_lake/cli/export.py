"""``clickstream export``: export a site's closed windows to its namespace on the export target.

The same exporter runs hourly inside ``clickstream serve``; this command is for backfills
(``--since``/``--until``) and for running an export by hand.  Re-running it is always safe:
windows already exported are skipped (or only get a ``_late<N>`` file for rows that
arrived since).
"""

from __future__ import annotations

import json

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from clickstream_lake.cli.common import DataOption, console, err_console, fail, open_db
from clickstream_lake.export import Exporter, ExportError, ExportSettings, WindowResult
from clickstream_lake.export.exporter import iso_ms
from clickstream_lake.export.windows import parse_time
from clickstream_lake.lake import LakeLayout


def export(
    site: str = typer.Option(..., "--site", help="Site id to export."),
    since: str | None = typer.Option(None, "--since", help="Start (ISO 8601, e.g. 2026-03-10 or 2026-03-10T14:00Z)."),
    until: str | None = typer.Option(None, "--until", help="End, exclusive (default: the last closed window)."),
    target: str | None = typer.Option(
        None, "--target", envvar="CLICKSTREAM_EXPORT_URL", help="Export root URL: file://…, s3://bucket/prefix, memory://…"
    ),
    endpoint: str | None = typer.Option(
        None, "--endpoint", envvar="CLICKSTREAM_EXPORT_ENDPOINT", help="S3 endpoint URL (R2, MinIO, …)."
    ),
    window: int | None = typer.Option(None, "--window", help="Window length in seconds (default 3600)."),
    force: bool = typer.Option(False, "--force", help="Export even if parquet_export_enabled is off for the site."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON report."),
    data: str | None = DataOption,
) -> None:
    """Export a site's events as Parquet, one file per window, exactly once."""
    d, db = open_db(data)
    overrides = {"url": target, "window_s": window}
    try:
        settings = ExportSettings.from_env(d, **overrides)
        if endpoint:
            opts = dict(settings.storage_options)
            opts["client_kwargs"] = {**opts.get("client_kwargs", {}), "endpoint_url": endpoint}
            settings = ExportSettings.from_env(d, **overrides, storage_options=opts)
        since_ms, until_ms = parse_time(since), parse_time(until)
    except ValueError as e:
        fail(str(e))
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        fail("--until must be after --since")
    try:
        exporter = Exporter(db, LakeLayout(d.lake_url()), settings)
    except ExportError as e:
        fail(str(e))
    show_bar = not as_json
    try:
        if show_bar:
            with Progress(
                TextColumn("[bold]export[/] {task.fields[site]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("windows · {task.fields[rows]:,} rows"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=False,
            ) as bar:
                task = bar.add_task("export", total=None, site=site, rows=0)
                rows = 0

                def progress(done: int, total: int, result: WindowResult | None) -> None:
                    nonlocal rows
                    rows += result.rows if result else 0
                    bar.update(task, total=total, completed=done, rows=rows)

                report = exporter.export_site(site, since_ms, until_ms, force=force, progress=progress)
        else:
            report = exporter.export_site(site, since_ms, until_ms, force=force)
    except ExportError as e:
        fail(str(e))
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    if report.skipped:
        console.print(f"[yellow]nothing exported:[/] {report.skipped}")
        return
    written = [r for r in report.windows if r.status in ("exported", "late", "adopted")]
    if written:
        shown = 20
        t = Table("window (UTC)", "status", "rows", "bytes", "object")
        for r in written[:shown]:
            t.add_row(r.window.stamp, r.status, f"{r.rows:,}", f"{r.bytes:,}", ", ".join(r.keys))
        if len(written) > shown:
            t.add_row(f"… {len(written) - shown} more", "", "", "", "")
        console.print(t)
    console.print(
        f"exported [bold]{report.rows:,}[/] rows in {len(report.files)} file(s) to {report.target}/{report.namespace};"
        f" watermark {iso_ms(report.watermark_ms) if report.watermark_ms is not None else '-'}"
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
