"""TEMPORARY: plain DuckDB over the site's partitions until the query layer lands."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from clickstream_lake.resources import read_sql
from clickstream_lake.settings import DataDir


def run(data: DataDir, site_id: str, sql: str) -> pa.Table:
    con = duckdb.connect()
    try:
        glob = f"{data.lake}/events/site_id={site_id}/*/*.parquet"
        import glob as g

        if g.glob(glob):
            con.execute(
                f"CREATE VIEW clickstream_events AS SELECT * EXCLUDE (dt) FROM read_parquet('{glob}', hive_partitioning=true, hive_types={{'site_id': VARCHAR}})"
            )
        else:
            from clickstream_lake.codec import ROW_SCHEMA

            con.register("empty_rows", ROW_SCHEMA.empty_table())
            con.execute("CREATE VIEW clickstream_events AS SELECT * FROM empty_rows")
        con.execute(read_sql("views/events.sql"))
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
