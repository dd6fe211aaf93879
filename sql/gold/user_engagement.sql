-- gold.user_engagement: for every day of the run with activity (the "as-of" day) and every
-- user signed up by then, how engaged the user is, from their daily activity up to that day.
WITH as_of AS (
    SELECT DISTINCT activity_date AS as_of_date
    FROM silver.user_activity
    WHERE activity_date BETWEEN $start_date AND $end_date
),
population AS (
    SELECT a.as_of_date, u.user_id
    FROM as_of AS a
    JOIN silver.users AS u ON u.signup_date <= a.as_of_date
),
history AS (
    -- Activity of the 60 days up to the as-of day: enough to tell "churned" (over 30 days
    -- silent) from "at risk" without scanning all history.
    SELECT
        p.as_of_date,
        p.user_id,
        count(DISTINCT CASE WHEN ua.activity_date > p.as_of_date - INTERVAL '30 days' THEN ua.activity_date END)
                                                                             AS active_days_30d,
        coalesce(sum(CASE WHEN ua.activity_date > p.as_of_date - INTERVAL '30 days' THEN ua.messages_sent END), 0)
                                                                             AS messages_30d,
        -- Rounded: a float sum's last digits depend on the order rows are added in.
        round(coalesce(sum(CASE WHEN ua.activity_date > p.as_of_date - INTERVAL '30 days' THEN ua.call_minutes END), 0), 2)
                                                                             AS call_minutes_30d,
        coalesce(sum(CASE WHEN ua.activity_date > p.as_of_date - INTERVAL '30 days' THEN ua.conversations_active END), 0)
                                                                             AS conversation_days_30d,
        coalesce(sum(CASE WHEN ua.activity_date > p.as_of_date - INTERVAL '7 days' THEN ua.messages_sent END), 0)
                                                                             AS messages_7d,
        coalesce(sum(CASE WHEN ua.activity_date <= p.as_of_date - INTERVAL '7 days'
                           AND ua.activity_date > p.as_of_date - INTERVAL '14 days' THEN ua.messages_sent END), 0)
                                                                             AS messages_prev_7d,
        max(ua.activity_date)                                                AS last_active_date
    FROM population AS p
    LEFT JOIN silver.user_activity AS ua
        ON ua.user_id = p.user_id
       AND ua.activity_date > p.as_of_date - INTERVAL '60 days'
       AND ua.activity_date <= p.as_of_date
       AND ua.activity_date > $start_date - INTERVAL '60 days'
    GROUP BY p.as_of_date, p.user_id
),
scored AS (
    SELECT
        *,
        -- Engagement score, 0-100, four capped components:
        --   40 × share of the last 30 days with any activity (consistency)
        --   30 × messages in 30 days / 300, capped at 1   (volume: ~10 a day earns full marks)
        --   15 × call minutes in 30 days / 120, capped at 1 (two hours of calls a month)
        --   15 × conversation-days in 30 days / 60, capped at 1 (breadth: ~2 chats a day)
        round(
              40.0 * active_days_30d / 30.0
            + 30.0 * least(messages_30d / 300.0, 1.0)
            + 15.0 * least(call_minutes_30d / 120.0, 1.0)
            + 15.0 * least(conversation_days_30d / 60.0, 1.0),
            1
        ) AS engagement_score,
        CAST(as_of_date - last_active_date AS INT) AS days_since_last_active,
        -- Activity trend: messages of the last 7 days against the 7 before:
        -- at least +20% is increasing, at least -20% decreasing, otherwise stable.
        CASE
            WHEN messages_7d = 0 AND messages_prev_7d = 0 THEN 'stable'
            WHEN messages_prev_7d = 0 THEN 'increasing'
            WHEN messages_7d >= 1.2 * messages_prev_7d THEN 'increasing'
            WHEN messages_7d <= 0.8 * messages_prev_7d THEN 'decreasing'
            ELSE 'stable'
        END AS activity_trend
    FROM history
),
with_risk AS (
    SELECT
        *,
        -- Churn risk: high after more than 14 silent days (or never active); medium after more
        -- than 7, or when activity is decreasing and the user has been silent over 3 days.
        CASE
            WHEN last_active_date IS NULL OR days_since_last_active > 14 THEN 'high'
            WHEN days_since_last_active > 7 THEN 'medium'
            WHEN activity_trend = 'decreasing' AND days_since_last_active > 3 THEN 'medium'
            ELSE 'low'
        END AS churn_risk
    FROM scored
)
SELECT
    as_of_date,
    user_id,
    engagement_score,
    activity_trend,
    churn_risk,
    -- Segment, first match wins: churned (silent over 30 days, or never active), at_risk
    -- (medium or high churn risk), power_user (score 60+), regular (score 25+), casual.
    CASE
        WHEN last_active_date IS NULL OR days_since_last_active > 30 THEN 'churned'
        WHEN churn_risk IN ('high', 'medium') THEN 'at_risk'
        WHEN engagement_score >= 60 THEN 'power_user'
        WHEN engagement_score >= 25 THEN 'regular'
        ELSE 'casual'
    END AS segment,
    active_days_30d,
    messages_30d,
    call_minutes_30d,
    messages_7d,
    messages_prev_7d,
    last_active_date,
    days_since_last_active
FROM with_risk
