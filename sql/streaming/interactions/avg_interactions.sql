-- Overall: interactions per distinct user, and the latest interaction time.
SELECT
    CAST(count(*) AS DOUBLE) / count(DISTINCT user_id) AS avg_interactions,
    max("timestamp") AS last_interaction
FROM interactions
