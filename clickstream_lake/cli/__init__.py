"""The ``clickstream`` command line.

Commands live in small modules of this package, each with a ``register(app)`` function.
Commands that belong to the ingest worker (``serve``) are registered through the
``clickstream.commands`` entry-point group, so ``clickstream_lake`` never imports
``ingest_worker``.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from clickstream_lake.cli.common import app

_MODULES = [
    "clickstream_lake.cli.control",
    "clickstream_lake.cli.report",
    "clickstream_lake.cli.simulate",
    "clickstream_lake.cli.compact",
    "clickstream_lake.cli.sql",
    "clickstream_lake.cli.export",
]


def _register_all() -> None:
    for name in _MODULES:
        import_module(name).register(app)
    for ep in entry_points(group="clickstream.commands"):
        ep.load()(app)


_register_all()


def main() -> None:
    app()
