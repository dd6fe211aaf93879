-- gold.daily_metrics: one row per UTC day with any activity.
WITH days AS (
    SELECT DISTINCT activity_date AS day
    FROM silver.user_activity
    WHERE activity_date BETWEEN $start_date AND $end_date
),
activity AS (
    -- DAU: users who sent a message or started a call that day.
    SELECT activity_date AS day, count(DISTINCT user_id) AS dau, sum(calls_made) AS total_calls
    FROM silver.user_activity
    WHERE activity_date BETWEEN $start_date AND $end_date
    GROUP BY activity_date
),
messages_by_type AS (
    SELECT message_date AS day, message_type, count(*) AS messages
    FROM silver.messages
    WHERE message_date BETWEEN $start_date AND $end_date
    GROUP BY message_date, message_type
),
messages AS (
    -- Message type distribution: a map from type to count, e.g. {image: 40, text: 512}.
    SELECT
        day,
        sum(messages) AS total_messages,
        map(array_agg(message_type ORDER BY message_type), array_agg(messages ORDER BY message_type))
            AS message_type_distribution
    FROM messages_by_type
    GROUP BY day
),
peak_hours AS (
    -- Peak activity hour: the UTC hour with the most messages; ties go to the earlier hour.
    SELECT day, hour_of_day AS peak_activity_hour
    FROM (
        SELECT
            message_date AS day,
            hour_of_day,
            row_number() OVER (PARTITION BY message_date ORDER BY count(*) DESC, hour_of_day) AS hour_rank
        FROM silver.messages
        WHERE message_date BETWEEN $start_date AND $end_date
        GROUP BY message_date, hour_of_day
    ) AS ranked
    WHERE hour_rank = 1
),
new_users AS (
    SELECT signup_date AS day, count(*) AS new_users
    FROM silver.users
    WHERE signup_date BETWEEN $start_date AND $end_date
    GROUP BY signup_date
),
new_conversations AS (
    SELECT event_date AS day, count(DISTINCT conversation_id) AS new_conversations
    FROM bronze.conversations
    WHERE event_date BETWEEN $start_date AND $end_date
    GROUP BY event_date
)
SELECT
    d.day                                   AS date,
    coalesce(a.dau, 0)                      AS dau,
    coalesce(m.total_messages, 0)           AS total_messages,
    coalesce(a.total_calls, 0)              AS total_calls,
    m.message_type_distribution,
    p.peak_activity_hour,
    coalesce(u.new_users, 0)                AS new_users,
    coalesce(c.new_conversations, 0)        AS new_conversations
FROM days AS d
LEFT JOIN activity AS a ON a.day = d.day
LEFT JOIN messages AS m ON m.day = d.day
LEFT JOIN peak_hours AS p ON p.day = d.day
LEFT JOIN new_users AS u ON u.day = d.day
LEFT JOIN new_conversations AS c ON c.day = d.day
