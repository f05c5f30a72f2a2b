-- Bounce: a session with at most one page view (the same rule as the `sessions` view's
-- `bounce` column).  Bounce rate = bounced sessions / sessions.
SELECT
    bucket,
    count(*) FILTER (WHERE page_views <= 1) AS bounces,
    count(*) FILTER (WHERE page_views <= 1) / count(*) AS bounce_rate
FROM session_facts
GROUP BY bucket
