-- Sessions: distinct session ids seen in the scope (a session with events on both sides of
-- a bucket boundary counts in both buckets).
SELECT bucket, count(DISTINCT session_id) AS sessions
FROM scope
GROUP BY bucket
