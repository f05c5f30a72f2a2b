"""Uploaded tables: a site owner's CSV or Parquet becomes ``tables/site_id=<id>/<name>.parquet``."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clickstream_lake.lake import LakeError, LakeLayout, check_table_name, publish_parquet
from clickstream_lake.query.lake import BUILTIN_RELATIONS


class TableUploadError(ValueError):
    pass


def read_upload(data: bytes, content_type: str = "") -> pa.Table:
    """Parse CSV or Parquet bytes (Parquet recognised by its magic number)."""
    if not data:
        raise TableUploadError("empty upload: send a CSV or Parquet file")
    try:
        if data[:4] == b"PAR1" or "parquet" in content_type:
            return pq.read_table(io.BytesIO(data))
        return pacsv.read_csv(io.BytesIO(data))
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise TableUploadError(f"cannot read the upload as CSV or Parquet: {str(e).splitlines()[0]}") from None


def upload_table(layout: LakeLayout, site_id: str, name: str, data: bytes, content_type: str = "") -> dict:
    try:
        check_table_name(name)
    except LakeError as e:
        raise TableUploadError(str(e)) from None
    if name.lower() in BUILTIN_RELATIONS:
        raise TableUploadError(f"{name!r} is a built-in view; choose another table name")
    table = read_upload(data, content_type)
    if table.num_columns == 0:
        raise TableUploadError("the upload has no columns")
    names = [n.lower() for n in table.column_names]  # SQL compares them case-insensitively
    if "" in names or len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise TableUploadError("every column needs a name of its own"
                               + (f" (repeated: {', '.join(dupes)})" if dupes else " (one is empty)"))
    path = layout.table_path(site_id, name)
    publish_parquet(table, layout.fs, path)
    return {"table": name.lower(), "rows": table.num_rows,
            "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema]}
