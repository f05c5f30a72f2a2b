"""``clickstream compact``: merge the small flush files of closed partitions."""

from __future__ import annotations

import typer

from clickstream_lake.cli.common import DataOption, console, data_dir, fail


def compact(
    site: str | None = typer.Option(None, "--site", help="Only this site."),
    day: str | None = typer.Option(None, "--day", help="Only this day (YYYY-MM-DD); with --site, even if not closed."),
    quiet_s: float = typer.Option(600.0, "--quiet", help="Seconds without writes before a past day counts as closed."),
    data: str | None = DataOption,
) -> None:
    """Compact closed partitions (a past UTC day, quiet for --quiet seconds), atomically."""
    from rich.progress import Progress

    from clickstream_lake.compaction import (
        CompactionUnsupported,
        clean_staging,
        closed_partitions,
        compact_partition,
    )
    from clickstream_lake.lake import LakeError, LakeLayout

    lake = LakeLayout(data_dir(data).lake_url())
    try:
        if site and day:
            targets = [(site, day)]
        else:
            targets = [(s, d) for s, d in closed_partitions(lake, quiet_s=quiet_s)
                       if (site is None or s == site) and (day is None or d == day)]
        clean_staging(lake, older_than_s=3600.0)
        if not targets:
            console.print("nothing to compact")
            return
        before = after = rows = 0
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("compacting", total=len(targets))
            for s, d in targets:
                res = compact_partition(lake, s, d)
                before, after, rows = before + res.files_before, after + res.files_after, rows + res.rows
                progress.advance(task)
        console.print(f"compacted {len(targets)} partition(s): {before} files → {after} ({rows:,} rows)")
    except (CompactionUnsupported, LakeError, ValueError) as e:
        fail(str(e))


def register(app: typer.Typer) -> None:
    app.command("compact")(compact)
