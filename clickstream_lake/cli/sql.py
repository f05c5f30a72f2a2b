"""``clickstream sql`` and ``clickstream tables …``: the query layer from the shell.

``clickstream sql --site S "SELECT …"`` runs through the same guard, sandbox and limits as
``POST /v1/sql``; in a terminal it prints a table, in a pipe (or with ``--format``) it
writes JSON, JSONEachRow, TabSeparated, csv, parquet or arrow to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from clickstream_lake.cli.common import DataOption, console, data_dir, fail, is_tty
from clickstream_lake.query import formats
from clickstream_lake.query.lake import Lake
from clickstream_lake.query.runner import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, QueryError, QueryService
from clickstream_lake.query.tables import TableUploadError, upload_table

tables_app = typer.Typer(help="Upload and list a site's own tables (for JOINs).", no_args_is_help=True)


def sql(
    query: str = typer.Argument(..., help="SQL (DuckDB or AE dialect); '-' reads it from stdin."),
    site: str = typer.Option(..., "--site", help="Site whose data the query sees."),
    fmt: str | None = typer.Option(None, "--format", "-f",
                                   help="JSON, JSONEachRow, TabSeparated, csv, parquet or arrow "
                                        "(default: a table in a terminal, csv in a pipe)."),
    max_rows: int = typer.Option(DEFAULT_MAX_ROWS, "--max-rows", help="Cap on returned rows."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", help="Wall-clock limit in seconds."),
    data: str | None = DataOption,
) -> None:
    """Run one read-only query over a site's views (events, clickstream_events, sessions, …)."""
    text = sys.stdin.read() if query == "-" else query
    try:
        text, inline_fmt = formats.split_format(text)
        fmt = formats.normalise_format(fmt) if fmt else inline_fmt
    except formats.FormatError as e:
        fail(str(e), 2)
    svc = QueryService(Lake(data_dir(data)), ttl_for=lambda s: 0, timeout_s=timeout, max_rows=max_rows)
    try:
        result = svc.run_query(site, text)
    except QueryError as e:
        where = f" (line {e.line}, column {e.col})" if e.line else ""
        fail(escape(f"[{e.rule}] {e.message}{where}"), 2)
    if fmt is None and is_tty():
        t = Table(*result.columns, show_lines=False)
        for row in formats.records(result.table):
            t.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(t)
        note = " (truncated)" if result.truncated else ""
        console.print(f"[dim]{result.rows} rows{note} in {result.elapsed_s * 1000:.1f} ms[/]")
        return
    sys.stdout.buffer.write(formats.render(result.table, fmt or "csv"))
    sys.stdout.buffer.flush()


@tables_app.command("upload")
def tables_upload(
    site: str = typer.Argument(..., help="Site id."),
    name: str = typer.Argument(..., help="Table name (letters, digits, '_')."),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or Parquet file."),
    data: str | None = DataOption,
) -> None:
    """Upload a CSV or Parquet file as one of the site's tables (replaces a table of that name)."""
    lake = Lake(data_dir(data))
    try:
        info = upload_table(lake.layout, site, name, file.read_bytes(), "parquet" if file.suffix == ".parquet" else "")
    except (TableUploadError, ValueError) as e:
        fail(escape(str(e)), 2)
    cols = ", ".join(f"{c['name']} {c['type']}" for c in info["columns"])
    console.print(f"table [bold]{info['table']}[/] for {site}: {info['rows']} rows ({cols})")


@tables_app.command("list")
def tables_list(site: str = typer.Argument(...), data: str | None = DataOption) -> None:
    """List the relations a site's queries can use."""
    lake = Lake(data_dir(data))
    try:
        for rel in lake.relations(site):
            console.print(rel)
    except ValueError as e:
        fail(str(e), 2)


def register(app: typer.Typer) -> None:
    app.command("sql")(sql)
    app.add_typer(tables_app, name="tables")
