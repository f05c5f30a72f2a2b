-- Engaged session: lasted at least 10 seconds, or had two or more page views, or converted
-- (the GA4 definition).  Engagement rate = engaged sessions / sessions.
SELECT
    bucket,
    count(*) FILTER (WHERE duration_s >= 10 OR page_views >= 2 OR purchases > 0) AS engaged_sessions,
    count(*) FILTER (WHERE duration_s >= 10 OR page_views >= 2 OR purchases > 0) / count(*) AS engagement_rate
FROM session_facts
GROUP BY bucket
