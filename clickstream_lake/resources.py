"""Where the project's non-Python files live (``sql/``, ``notebooks/``)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = PROJECT_ROOT / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
VIEWS_DIR = SQL_DIR / "views"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def read_sql(relative: str) -> str:
    """Text of a file under ``sql/`` (e.g. ``views/events.sql``)."""
    return (SQL_DIR / relative).read_text(encoding="utf-8")
