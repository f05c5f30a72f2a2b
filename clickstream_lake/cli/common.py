"""Shared pieces of the CLI: the Typer app, the ``--data`` option, error reporting."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir

app = typer.Typer(
    name="clickstream",
    help="clickstream-lake: behavioural analytics on an AE-shaped Parquet lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DataOption = typer.Option(
    None, "--data", envvar="CLICKSTREAM_DATA", help="Data directory (default ./data).", show_default=False
)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def data_dir(data: str | None) -> DataDir:
    return DataDir.resolve(data)


def open_db(data: str | None, *, must_exist: bool = True) -> tuple[DataDir, ControlDB]:
    d = data_dir(data)
    if must_exist and not d.control_db.exists():
        fail(f"no control database at {d.control_db}: run `clickstream init --data {d.path}` first")
    return d, ControlDB(d.control_db)


def is_tty() -> bool:
    return sys.stdout.isatty()
