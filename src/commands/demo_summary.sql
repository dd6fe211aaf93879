-- What `quickchat-etl demo` prints after the pipeline has run.

-- Platform metrics of the last seven days.
SELECT date, dau, total_messages, total_calls, peak_activity_hour, new_users, new_conversations
FROM gold.daily_metrics
ORDER BY date DESC
LIMIT 7;

-- Users by segment on the last day.
SELECT segment, count(*) AS users, round(avg(engagement_score), 1) AS avg_engagement_score,
       sum(CASE WHEN churn_risk = 'high' THEN 1 ELSE 0 END) AS high_churn_risk
FROM gold.user_engagement
WHERE as_of_date = (SELECT max(as_of_date) FROM gold.user_engagement)
GROUP BY segment
ORDER BY users DESC;

-- Records kept out of the lake, and why.
SELECT job, rule, count(*) AS records
FROM meta.quarantine
GROUP BY job, rule
ORDER BY job, rule;
