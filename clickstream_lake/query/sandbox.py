"""A locked-down DuckDB connection for one query of one tenant (the second wall).

The sqlglot guard (:mod:`clickstream_lake.query.guard`) is the first wall: it only lets a
single read-only statement over the tenant's own relations through.  This module is the
second: the connection the checked SQL runs on can read only the directories it is given
(the tenant's partitions), cannot reach anything else on disk or on the network, cannot
install or load extensions, cannot see Python variables, spills into its own temporary
directory, has memory and thread limits, and its configuration is locked before any user
SQL runs.  The order matters (DuckDB refuses to widen access once external access is off):
``allowed_directories``/``allowed_paths`` first, then ``enable_external_access = false``,
then ``lock_configuration = true``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class SandboxLimits:
    memory_limit: str = "1GB"
    threads: int = 2
    max_temp_directory_size: str = "2GB"


def _sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_sql_str(v) for v in values) + "]"


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def open_sandbox(
    *,
    allowed_directories: Iterable[str] = (),
    allowed_paths: Iterable[str] = (),
    temp_dir: str | None = None,
    limits: SandboxLimits = SandboxLimits(),
    setup_sql: Iterable[str] = (),
    filesystems: Iterable[object] = (),
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can read only ``allowed_*``.

    ``setup_sql`` (views, macros) runs after the sandbox is locked, so even our own view
    definitions are held to the same limits as the user's query.  ``filesystems`` are
    fsspec filesystems registered for object-storage lakes.
    """
    dirs = [d.rstrip("/") + "/" for d in allowed_directories]
    paths = list(allowed_paths)
    if temp_dir is None:
        temp_dir = tempfile.mkdtemp(prefix="clickstream-q-")
    os.makedirs(temp_dir, exist_ok=True)
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": limits.threads,
            "memory_limit": limits.memory_limit,
            "temp_directory": temp_dir,
            "max_temp_directory_size": limits.max_temp_directory_size,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    try:
        for fs in filesystems:
            con.register_filesystem(fs)
        con.execute("SET python_enable_replacements = false")
        con.execute("SET allow_community_extensions = false")
        con.execute("SET TimeZone = 'UTC'")
        if dirs:
            con.execute(f"SET allowed_directories = {_sql_list(dirs)}")
        if paths:
            con.execute(f"SET allowed_paths = {_sql_list(paths)}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        for stmt in setup_sql:
            con.execute(stmt)
    except Exception:
        con.close()
        raise
    return con
