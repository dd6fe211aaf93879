-- Interactions per user in sliding 10-minute windows starting every 5 minutes.
SELECT window_start, window_end, user_id, count(*) AS total_interactions
FROM HOP(interactions, INTERVAL '10 minutes', INTERVAL '5 minutes')
GROUP BY window_start, window_end, user_id
