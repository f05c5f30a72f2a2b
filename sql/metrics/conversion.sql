-- Conversion: a session with at least one `purchase` event.
-- Conversion rate = converting sessions / sessions.
SELECT
    bucket,
    count(*) FILTER (WHERE purchases > 0) AS conversions,
    count(*) FILTER (WHERE purchases > 0) / count(*) AS conversion_rate
FROM session_facts
GROUP BY bucket
