-- User sessions: a gap of more than 30 minutes between a user's events starts a new session
-- (exactly 30:00.000 stays in it). Start and end are the first and last event times.
SELECT
    user_id,
    session_start,
    session_end,
    count(*) AS event_count,
    (CAST(session_end AS BIGINT) - CAST(session_start AS BIGINT)) / 1000000.0 AS duration_seconds
FROM SESSION(clickstream, INTERVAL '30 minutes', user_id)
GROUP BY user_id, session_start, session_end
