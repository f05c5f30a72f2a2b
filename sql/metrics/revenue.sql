-- Revenue: the sum of `value` over `purchase` events (purchases = their count).
SELECT
    bucket,
    count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
    coalesce(sum(value) FILTER (WHERE event_type = 'purchase'), 0) AS revenue
FROM scope
GROUP BY bucket
