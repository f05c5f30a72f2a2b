"""Export settings: where exports go and how often, from the environment (or the CLI).

=============================== ===================================================== =================
variable                        meaning                                               default
=============================== ===================================================== =================
``CLICKSTREAM_EXPORT_URL``      export root: ``file:///…``, ``s3://bucket/prefix``,    ``<data>/export``
                                ``memory://…``
``CLICKSTREAM_EXPORT_ENDPOINT`` S3 endpoint URL (R2, MinIO, a local S3 server)        AWS
``CLICKSTREAM_EXPORT_OPTIONS``  JSON object of extra fsspec storage options            ``{}``
``CLICKSTREAM_EXPORT_WINDOW``   window length in seconds (divides a day)               ``3600``
``CLICKSTREAM_EXPORT_INTERVAL`` seconds between scheduled runs in ``serve``; 0 = off   ``3600``
``CLICKSTREAM_EXPORT_GRACE``    a window is exported once ``end <= now - grace``       ``300``
``CLICKSTREAM_EXPORT_LATE``     how far back (s) exported windows are re-checked       ``172800``
                                for late rows
``CLICKSTREAM_EXPORT_RETRIES``  attempts per storage call on transient errors          ``6``
=============================== ===================================================== =================

Credentials for S3 come the usual boto way (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
a profile, instance roles) or as ``key``/``secret`` in the storage options.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from clickstream_lake.export.windows import check_window_s
from clickstream_lake.settings import DataDir


def storage_options_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """fsspec options of the export target: ``CLICKSTREAM_EXPORT_OPTIONS`` (a JSON object) plus
    ``CLICKSTREAM_EXPORT_ENDPOINT`` as the S3 endpoint; ValueError with a message for the user."""
    e = os.environ if env is None else env
    options: dict[str, Any] = {}
    raw = e.get("CLICKSTREAM_EXPORT_OPTIONS", "").strip()
    if raw:
        try:
            options = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"CLICKSTREAM_EXPORT_OPTIONS is not a JSON object: {exc}") from exc
        if not isinstance(options, dict):
            raise ValueError("CLICKSTREAM_EXPORT_OPTIONS must be a JSON object")
    endpoint = e.get("CLICKSTREAM_EXPORT_ENDPOINT", "").strip()
    if endpoint:
        options.setdefault("client_kwargs", {})["endpoint_url"] = endpoint
    return options


@dataclass(frozen=True)
class ExportSettings:
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    window_s: int = 3600
    interval_s: float = 3600.0
    grace_s: float = 300.0
    late_horizon_s: float = 172_800.0
    retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    @classmethod
    def from_env(cls, data: DataDir, env: dict[str, str] | None = None, **overrides: Any) -> ExportSettings:
        e = os.environ if env is None else env
        options = storage_options_from_env(e)
        s = cls(
            url=e.get("CLICKSTREAM_EXPORT_URL") or f"file://{data.export}",
            storage_options=options,
            window_s=int(e.get("CLICKSTREAM_EXPORT_WINDOW", 3600)),
            interval_s=float(e.get("CLICKSTREAM_EXPORT_INTERVAL", 3600)),
            grace_s=float(e.get("CLICKSTREAM_EXPORT_GRACE", 300)),
            late_horizon_s=float(e.get("CLICKSTREAM_EXPORT_LATE", 172_800)),
            retries=int(e.get("CLICKSTREAM_EXPORT_RETRIES", 6)),
        )
        s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
        check_window_s(s.window_s)
        return s
