-- Visitors: distinct visitor ids seen in the scope.
SELECT bucket, count(DISTINCT visitor_id) AS visitors
FROM scope
GROUP BY bucket
