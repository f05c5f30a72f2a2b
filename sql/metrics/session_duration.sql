-- Session duration: time from a session's first to its last event in the scope, seconds.
SELECT bucket, median(duration_s) AS median_session_duration_s
FROM session_facts
GROUP BY bucket
