-- Page views: `page_view` events.
SELECT bucket, count(*) FILTER (WHERE event_type = 'page_view') AS page_views
FROM scope
GROUP BY bucket
