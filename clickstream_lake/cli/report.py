"""``clickstream report``: the dashboard as one static HTML file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from clickstream_lake.cli.common import DataOption, console, fail


def _date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{name} must be a date like 2026-01-31 (got {value!r})")


def report(
    site: str | None = typer.Option(None, "--site", help="Site id (or give --key)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    since: str | None = typer.Option(None, "--since", help="First day (UTC, inclusive); default: 7 days back."),
    until: str | None = typer.Option(None, "--until", help="Last day (UTC, inclusive); default: the last event's day."),
    channel: list[str] = typer.Option([], "--channel", help="Only these channels (repeatable)."),
    device: list[str] = typer.Option([], "--device", help="Only these device types (repeatable)."),
    country: list[str] = typer.Option([], "--country", help="Only these countries (repeatable)."),
    funnel: str = typer.Option("page_view > add_to_cart > purchase", "--funnel", help="Funnel steps."),
    key: str | None = typer.Option(None, "--key", envvar="CLICKSTREAM_KEY", help="A site API key instead of --site."),
    data: str | None = DataOption,
) -> None:
    """Render the dashboard's charts for one site into a self-contained HTML file."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from clickstream_lake.dashboards.metrics import Filters
    from clickstream_lake.dashboards.source import AccessError, SiteData
    from clickstream_lake.dashboards.tiles import parse_funnel
    from clickstream_lake.query.runner import QueryError
    from clickstream_lake.report import default_range, write_report

    if not site and not key:
        fail("give --site SITE or --key KEY")
    try:
        parse_funnel(funnel)
    except ValueError as e:
        fail(str(e))
    try:
        sd = SiteData.open(site=site, key=key, data=data)
    except AccessError as e:
        fail(str(e))
    d_since, d_until = _date(since, "--since"), _date(until, "--until")
    if d_since is None or d_until is None:
        auto_since, auto_until = default_range(sd)
        d_until = d_until or auto_until
        d_since = d_since or min(auto_since, d_until)
    try:
        filters = Filters(since=d_since, until=d_until, channels=tuple(channel), devices=tuple(device),
                          countries=tuple(country))
    except ValueError as e:
        fail(str(e))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("querying", total=None)
        try:
            path = write_report(sd, out, filters, funnel=funnel,
                                progress=lambda name: bar.update(task, description=f"tile: {name}"))
        except QueryError as e:
            fail(f"query failed: {e.message}")
    console.print(f"wrote {path} ({path.stat().st_size / 1024:,.0f} KiB) for {sd.site_id}, "
                  f"{filters.since} → {filters.until}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
