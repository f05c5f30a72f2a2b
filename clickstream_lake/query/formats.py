"""Output formats of a query result (an Arrow table).

``JSON`` (AE's shape: ``{"meta": [{"name", "type"}], "data": [{…}], "rows": n}``),
``JSONEachRow`` (one object per line), ``TabSeparated`` (ClickHouse escaping, no header),
and for bulk results ``csv`` (with header), ``parquet`` and ``arrow`` (IPC stream).
Timestamps are written as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (UTC for instants), like AE.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import math
import re
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = {
    "json": ("JSON", "application/json"),
    "jsoneachrow": ("JSONEachRow", "application/x-ndjson"),
    "tabseparated": ("TabSeparated", "text/tab-separated-values; charset=utf-8"),
    "tsv": ("TabSeparated", "text/tab-separated-values; charset=utf-8"),
    "csv": ("csv", "text/csv; charset=utf-8"),
    "parquet": ("parquet", "application/vnd.apache.parquet"),
    "arrow": ("arrow", "application/vnd.apache.arrow.stream"),
}

_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+([A-Za-z]+)\s*;?\s*$", re.IGNORECASE)


class FormatError(ValueError):
    pass


def normalise_format(name: str) -> str:
    key = name.strip().lower()
    if key not in FORMATS:
        raise FormatError(f"unknown format {name!r}: use JSON, JSONEachRow, TabSeparated, csv, parquet or arrow")
    return FORMATS[key][0]


def split_format(sql: str) -> tuple[str, str | None]:
    """Strip an AE-style trailing ``FORMAT X`` clause: (sql, format or None)."""
    m = _TRAILING_FORMAT.search(sql)
    if not m:
        return sql, None
    return sql[: m.start()], normalise_format(m.group(1))


def content_type(fmt: str) -> str:
    return FORMATS[fmt.lower()][1]


def ae_type(t: pa.DataType) -> str:
    """A ClickHouse-style type name for ``meta`` (what AE reports)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "String"
    if pa.types.is_boolean(t):
        return "Bool"
    if pa.types.is_integer(t):
        return ("UInt" if pa.types.is_unsigned_integer(t) else "Int") + str(t.bit_width)
    if pa.types.is_floating(t):
        return f"Float{t.bit_width}"
    if pa.types.is_decimal(t):
        return f"Decimal({t.precision}, {t.scale})"
    if pa.types.is_timestamp(t):
        return "DateTime" if t.tz is None else f"DateTime('{t.tz}')"
    if pa.types.is_date(t):
        return "Date"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"Array({ae_type(t.value_type)})"
    return str(t)


def _jsonable(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return v.isoformat(sep=" ", timespec="microseconds" if v.microsecond else "seconds")
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def records(table: pa.Table) -> list[dict[str, Any]]:
    names = table.column_names
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [{n: _jsonable(c[r]) for n, c in zip(names, cols, strict=True)} for r in range(table.num_rows)]


def to_json(table: pa.Table, **extra: Any) -> bytes:
    doc = {
        "meta": [{"name": f.name, "type": ae_type(f.type)} for f in table.schema],
        "data": records(table),
        "rows": table.num_rows,
        **extra,
    }
    return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode()


def to_json_each_row(table: pa.Table) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records(table)).encode()


def _tsv_escape(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, (dict, list)):
        v = json.dumps(v, ensure_ascii=False)
    s = str(v)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def to_tsv(table: pa.Table) -> bytes:
    return "".join("\t".join(_tsv_escape(v) for v in r.values()) + "\n" for r in records(table)).encode()


def to_csv(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(_flatten_for_csv(table), buf)
    return buf.getvalue()


def _flatten_for_csv(table: pa.Table) -> pa.Table:
    cols = []
    for col in table.columns:
        t = col.type
        if pa.types.is_nested(t):
            col = pa.array([None if v is None else json.dumps(_jsonable(v)) for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def to_parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def to_arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def render(table: pa.Table, fmt: str, **extra: Any) -> bytes:
    fmt = normalise_format(fmt)
    if fmt == "JSON":
        return to_json(table, **extra)
    if fmt == "JSONEachRow":
        return to_json_each_row(table)
    if fmt == "TabSeparated":
        return to_tsv(table)
    if fmt == "csv":
        return to_csv(table)
    if fmt == "parquet":
        return to_parquet(table)
    return to_arrow(table)
