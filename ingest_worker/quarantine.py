"""Quarantine: every rejected payload is kept, with its reason and raw body.

Snowplow's "bad rows" model: nothing a client sent is lost, and a site can query why its
events were refused.  Rejections travel through the same durable log as accepted events (a
``"q"`` record) and the flusher publishes them under
``lake/quarantine/site_id=<id>/dt=<day>/*.parquet`` with :data:`QUARANTINE_SCHEMA`.

Requests for an unknown Host belong to no tenant: they are only counted
(``clickstream_unknown_host_requests``), never stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from clickstream_lake.lake import LakeLayout

RAW_MAX_BYTES = 1_048_576  # a body is at most 1 MB: the raw payload is kept whole

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("received_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("site_id", pa.string()),
        pa.field("record_id", pa.string()),
        pa.field("reason", pa.string()),  # machine-readable class: invalid_json, invalid_field, ...
        pa.field("error", pa.string()),  # the message sent to the client
        pa.field("status", pa.int32()),  # the HTTP status answered for it
        pa.field("batch_index", pa.int32()),  # position in the batch; null for a whole-body rejection
        pa.field("content_type", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("payload", pa.string()),  # the raw payload as received (invalid UTF-8 replaced)
    ],
    metadata={"clickstream.schema": "quarantine/1"},
)


@dataclass
class QuarantineEntry:
    site_id: str
    received_ms: int
    reason: str
    error: str
    status: int
    raw: str
    batch_index: int | None = None
    content_type: str = ""
    user_agent: str = ""
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def raw_text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        text = raw
    else:
        text = raw[:RAW_MAX_BYTES].decode("utf-8", errors="replace")
    return text.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates


def quarantine_record(q: QuarantineEntry) -> bytes:
    """The durable-log payload of one rejected payload."""
    return orjson.dumps(["q", q.received_ms, q.site_id, q.record_id, q.reason, raw_text(q.error), q.status,
                         q.batch_index, raw_text(q.content_type), raw_text(q.user_agent), raw_text(q.raw)])


def read_quarantine(lake: LakeLayout, site_id: str) -> pa.Table:
    """All quarantined payloads of a site (empty table when there are none)."""
    import pyarrow.parquet as pq

    fs = lake.fs
    d = lake.quarantine_dir(site_id)
    files = [p for p in fs.glob(f"{d}/dt=*/*.parquet") if not p.rsplit("/", 1)[-1].startswith(".")]
    if not files:
        return QUARANTINE_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, filesystem=fs) for f in sorted(files)])
