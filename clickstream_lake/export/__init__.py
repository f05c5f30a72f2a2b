"""Customer lake export: each site's events as Parquet in its namespace on object storage, exactly once.

See ``docs/export.md``.  Entry points: :class:`Exporter` (``export_site``, ``export_all``),
:class:`ExportSettings` (env ``CLICKSTREAM_EXPORT_*``), :class:`ExportTarget` (fsspec URL).
"""

from clickstream_lake.export.errors import (
    ExportError,
    NamespaceCollision,
    TargetAccessDenied,
    TargetMissing,
    TargetUnavailable,
)
from clickstream_lake.export.exporter import Exporter, ExportReport, WindowResult
from clickstream_lake.export.settings import ExportSettings
from clickstream_lake.export.target import ExportTarget

__all__ = [
    "ExportError",
    "ExportReport",
    "ExportSettings",
    "ExportTarget",
    "Exporter",
    "NamespaceCollision",
    "TargetAccessDenied",
    "TargetMissing",
    "TargetUnavailable",
    "WindowResult",
]
