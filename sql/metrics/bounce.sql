-- Bounce: a session with at most one page view and no interaction (click, form submit,
-- add to cart, purchase).  Bounce rate = bounced sessions / sessions.
SELECT
    bucket,
    count(*) FILTER (WHERE page_views <= 1 AND interactions = 0) AS bounces,
    count(*) FILTER (WHERE page_views <= 1 AND interactions = 0) / count(*) AS bounce_rate
FROM session_facts
GROUP BY bucket
