-- One row per (bucket, session) of `scope`: the per-session facts the session metrics
-- (bounce, engaged session, duration, conversion) are defined over.
SELECT
    bucket,
    session_id,
    any_value(visitor_id) AS visitor_id,
    min(timestamp) AS started_at,
    max(timestamp) AS ended_at,
    date_diff('millisecond', min(timestamp), max(timestamp)) / 1000.0 AS duration_s,
    count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
    count(*) FILTER (WHERE event_type IN ('click', 'form_submit', 'add_to_cart', 'purchase')) AS interactions,
    count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
    coalesce(sum(value) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
    arg_min(path, timestamp) FILTER (WHERE event_type = 'page_view') AS entry_page,
    arg_max(path, timestamp) FILTER (WHERE event_type = 'page_view') AS exit_page,
    arg_min(channel, timestamp) AS channel
FROM scope
GROUP BY bucket, session_id
