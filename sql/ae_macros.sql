-- AE (ClickHouse-style) helpers as DuckDB macros, created in every tenant connection.
-- The rest of the AE dialect is rewritten into DuckDB by clickstream_lake/query/dialect.py
-- (toStartOfInterval, countIf/sumIf/..., topK(n)(x), quantileExactWeighted(q)(x, w), ...).
-- Names are case-insensitive in DuckDB.
CREATE OR REPLACE MACRO intDiv(a, b) AS CAST(floor(a / b) AS BIGINT);
CREATE OR REPLACE MACRO intDivOrZero(a, b) AS CASE WHEN b = 0 THEN 0 ELSE CAST(floor(a / b) AS BIGINT) END;
CREATE OR REPLACE MACRO modulo(a, b) AS a % b;
CREATE OR REPLACE MACRO empty(s) AS (length(s) = 0);
CREATE OR REPLACE MACRO notEmpty(s) AS (length(s) > 0);
CREATE OR REPLACE MACRO toUnixTimestamp(ts) AS CAST(epoch(CAST(ts AS TIMESTAMPTZ)) AS BIGINT);
CREATE OR REPLACE MACRO toFloat64(x) AS CAST(x AS DOUBLE);
CREATE OR REPLACE MACRO toFloat64OrZero(x) AS coalesce(TRY_CAST(x AS DOUBLE), 0);
CREATE OR REPLACE MACRO toFloat64OrNull(x) AS TRY_CAST(x AS DOUBLE);
CREATE OR REPLACE MACRO toInt64(x) AS CAST(x AS BIGINT);
CREATE OR REPLACE MACRO toInt32(x) AS CAST(x AS INTEGER);
CREATE OR REPLACE MACRO toUInt64(x) AS CAST(x AS UBIGINT);
CREATE OR REPLACE MACRO toUInt32(x) AS CAST(x AS UINTEGER);
CREATE OR REPLACE MACRO toString(x) AS CAST(x AS VARCHAR);
CREATE OR REPLACE MACRO lowerUTF8(s) AS lower(s);
CREATE OR REPLACE MACRO upperUTF8(s) AS upper(s);
CREATE OR REPLACE MACRO replaceAll(s, a, b) AS replace(s, a, b);
CREATE OR REPLACE MACRO replaceRegexpAll(s, p, r) AS regexp_replace(s, p, r, 'g');
CREATE OR REPLACE MACRO today() AS current_date;
CREATE OR REPLACE MACRO yesterday() AS CAST(current_date - INTERVAL 1 DAY AS DATE);
-- ClickHouse quantileExactWeighted: sort values, accumulate weights, first value whose
-- running weight reaches ceil(level * total weight).  Integer weights (AE's
-- _sample_interval) are expanded, which keeps it exact.
CREATE OR REPLACE MACRO ae_quantile_exact_weighted(q, x, w) AS
    list_sort(flatten(list(list_resize([x], CAST(w AS BIGINT), x)) FILTER (WHERE x IS NOT NULL)))
        [greatest(CAST(ceil(q * sum(CAST(w AS BIGINT)) FILTER (WHERE x IS NOT NULL)) AS BIGINT), 1)];
-- ClickHouse quantileExact: element at floor(level * n) (0-based) of the sorted values.
CREATE OR REPLACE MACRO ae_quantile_exact(q, x) AS
    list_sort(list(x) FILTER (WHERE x IS NOT NULL))
        [least(CAST(floor(q * count(x)) AS BIGINT), count(x) - 1) + 1];
-- ClickHouse topK(n)(x): the n most frequent values, most frequent first (exact here).
CREATE OR REPLACE MACRO ae_top_k(n, x) AS
    list_transform(
        list_slice(list_sort(list_transform(map_entries(histogram(x)), lambda e: {'c': e.value, 'k': e.key}), 'DESC'), 1, n),
        lambda e: e.k);
