-- gold.ml_features: one feature vector per user active in the 30 days up to each as-of day of
-- the run (the days with activity), for ml-service.
WITH as_of AS (
    SELECT DISTINCT activity_date AS as_of_date
    FROM silver.user_activity
    WHERE activity_date BETWEEN $start_date AND $end_date
),
activity AS (
    -- Activity features: messages and calls over the as-of day, 7 and 30 days.
    SELECT
        a.as_of_date,
        ua.user_id,
        sum(CASE WHEN ua.activity_date = a.as_of_date THEN ua.messages_sent ELSE 0 END)                       AS messages_1d,
        sum(CASE WHEN ua.activity_date > a.as_of_date - INTERVAL '7 days' THEN ua.messages_sent ELSE 0 END)  AS messages_7d,
        sum(ua.messages_sent)                                                                                  AS messages_30d,
        sum(CASE WHEN ua.activity_date = a.as_of_date THEN ua.calls_made ELSE 0 END)                          AS calls_1d,
        sum(CASE WHEN ua.activity_date > a.as_of_date - INTERVAL '7 days' THEN ua.calls_made ELSE 0 END)     AS calls_7d,
        sum(ua.calls_made)                                                                                     AS calls_30d,
        sum(CASE WHEN ua.activity_date <= a.as_of_date - INTERVAL '7 days'
                  AND ua.activity_date > a.as_of_date - INTERVAL '14 days' THEN ua.messages_sent ELSE 0 END)   AS messages_prev_7d
    FROM as_of AS a
    JOIN silver.user_activity AS ua
        ON ua.activity_date > a.as_of_date - INTERVAL '30 days'
       AND ua.activity_date <= a.as_of_date
    WHERE ua.activity_date > $start_date - INTERVAL '30 days'
      AND ua.activity_date <= $end_date
    GROUP BY a.as_of_date, ua.user_id
),
-- Messages are summarised per user and day before being spread over the as-of days: a day's
-- messages count towards the 30 as-of days after it, so joining raw messages would multiply them.
daily_conversations AS (
    SELECT DISTINCT sender_id AS user_id, message_date, conversation_id
    FROM silver.messages
    WHERE message_date > $start_date - INTERVAL '30 days'
      AND message_date <= $end_date
),
daily_hours AS (
    SELECT sender_id AS user_id, message_date, hour_of_day, count(*) AS messages
    FROM silver.messages
    WHERE message_date > $start_date - INTERVAL '30 days'
      AND message_date <= $end_date
    GROUP BY sender_id, message_date, hour_of_day
),
conversations AS (
    SELECT conversation_id, conversation_type, participants
    FROM (
        SELECT *, row_number() OVER (PARTITION BY conversation_id ORDER BY _ingested_at DESC) AS copy_rank
        FROM bronze.conversations
    ) AS c
    WHERE copy_rank = 1
),
members AS (
    SELECT conversation_id, unnest(participants) AS member_id
    FROM conversations
),
user_conversations AS (
    SELECT DISTINCT a.as_of_date, d.user_id, d.conversation_id
    FROM as_of AS a
    JOIN daily_conversations AS d
        ON d.message_date > a.as_of_date - INTERVAL '30 days'
       AND d.message_date <= a.as_of_date
),
recent_hours AS (
    SELECT a.as_of_date, d.user_id, d.hour_of_day, sum(d.messages) AS messages
    FROM as_of AS a
    JOIN daily_hours AS d
        ON d.message_date > a.as_of_date - INTERVAL '30 days'
       AND d.message_date <= a.as_of_date
    GROUP BY a.as_of_date, d.user_id, d.hour_of_day
),
-- Social features over 30 days: distinct people messaged with (other members of the
-- conversations the user wrote in) and distinct group conversations written in. Each is made
-- distinct first and then counted: count(DISTINCT ...) per (as-of day, user) keeps a hash set
-- per group outside the memory pool (10 GB on 20,000 users x 30 days).
contacts AS (
    SELECT as_of_date, user_id, count(*) AS distinct_contacts_30d
    FROM (
        SELECT DISTINCT uc.as_of_date, uc.user_id, mb.member_id
        FROM user_conversations AS uc
        JOIN members AS mb ON mb.conversation_id = uc.conversation_id
        WHERE mb.member_id <> uc.user_id
    ) AS reached
    GROUP BY as_of_date, user_id
),
groups AS (
    -- user_conversations is distinct per (as-of day, user, conversation), conversations per
    -- conversation: each row is one group conversation.
    SELECT uc.as_of_date, uc.user_id, count(*) AS groups_30d
    FROM user_conversations AS uc
    JOIN conversations AS c ON c.conversation_id = uc.conversation_id
    WHERE c.conversation_type = 'group'
    GROUP BY uc.as_of_date, uc.user_id
),
temporal AS (
    -- Temporal features: share of messages sent Monday to Friday, over 30 days (a message's
    -- UTC weekday is the weekday of its UTC date).
    SELECT
        as_of_date,
        user_id,
        sum(CASE WHEN weekday <= 5 THEN messages ELSE 0 END) * 1.0 / sum(messages) AS weekday_ratio
    FROM (
        SELECT a.as_of_date, d.user_id, CAST(date_part('isodow', d.message_date) AS INT) AS weekday, sum(d.messages) AS messages
        FROM as_of AS a
        JOIN daily_hours AS d
            ON d.message_date > a.as_of_date - INTERVAL '30 days'
           AND d.message_date <= a.as_of_date
        GROUP BY a.as_of_date, d.user_id, d.message_date
    ) AS by_day
    GROUP BY as_of_date, user_id
),
preferred_hours AS (
    -- Preferred hour: the UTC hour the user sent most messages in, ties to the earlier hour.
    SELECT as_of_date, user_id, hour_of_day AS preferred_hour
    FROM (
        SELECT
            as_of_date,
            user_id,
            hour_of_day,
            row_number() OVER (PARTITION BY as_of_date, user_id ORDER BY messages DESC, hour_of_day) AS hour_rank
        FROM recent_hours
    ) AS ranked
    WHERE hour_rank = 1
)
SELECT
    a.as_of_date,
    a.user_id,
    a.messages_1d,
    a.messages_7d,
    a.messages_30d,
    a.calls_1d,
    a.calls_7d,
    a.calls_30d,
    coalesce(sc.distinct_contacts_30d, 0)       AS distinct_contacts_30d,
    coalesce(sg.groups_30d, 0)                  AS groups_30d,
    h.preferred_hour,
    round(t.weekday_ratio, 4)                   AS weekday_ratio,
    -- Velocity: messages per day over the last 7 days and the 7 before, and their ratio
    -- (NULL when the earlier week had no messages).
    round(a.messages_7d / 7.0, 3)               AS message_rate_7d,
    round(a.messages_prev_7d / 7.0, 3)          AS message_rate_prev_7d,
    CASE
        WHEN a.messages_prev_7d = 0 THEN NULL
        ELSE round(CAST(a.messages_7d AS DOUBLE) / a.messages_prev_7d, 4)
    END                                         AS message_rate_trend
FROM activity AS a
LEFT JOIN contacts AS sc ON sc.as_of_date = a.as_of_date AND sc.user_id = a.user_id
LEFT JOIN groups AS sg ON sg.as_of_date = a.as_of_date AND sg.user_id = a.user_id
LEFT JOIN temporal AS t ON t.as_of_date = a.as_of_date AND t.user_id = a.user_id
LEFT JOIN preferred_hours AS h ON h.as_of_date = a.as_of_date AND h.user_id = a.user_id
