-- silver.user_activity: what each user did each UTC day. A user appears on a day when they
-- sent at least one message or started at least one call.
WITH sent AS (
    -- Per user, day and conversation first, then per user and day: the same counts as
    -- count(DISTINCT conversation_id) per user and day, which DataFusion keeps as a hash set
    -- per group outside the memory pool (10 GB and 34 s against 0.2 GB and 1 s on 3.7 M
    -- messages).
    SELECT
        sender_id                          AS user_id,
        message_date                       AS activity_date,
        conversation_id,
        count(*)                           AS messages,
        min(sent_at)                       AS first_at,
        max(sent_at)                       AS last_at
    FROM silver.messages
    WHERE message_date BETWEEN $start_date AND $end_date
    GROUP BY sender_id, message_date, conversation_id
),
messages AS (
    SELECT
        user_id,
        activity_date,
        sum(messages)                      AS messages_sent,
        count(conversation_id)             AS conversations_active,
        min(first_at)                      AS first_message_at,
        max(last_at)                       AS last_message_at
    FROM sent
    GROUP BY user_id, activity_date
),
calls AS (
    -- Calls made = calls the user started; minutes count completed calls only.
    SELECT
        caller_id                          AS user_id,
        event_date                         AS activity_date,
        count(*)                           AS calls_made,
        round(sum(CASE WHEN status = 'completed' THEN duration_seconds ELSE 0 END) / 60.0, 2) AS call_minutes,
        min(started_at)                    AS first_call_at,
        max(started_at)                    AS last_call_at
    FROM (
        SELECT *, row_number() OVER (PARTITION BY call_id ORDER BY _ingested_at DESC) AS copy_rank
        FROM bronze.calls
        WHERE event_date BETWEEN $start_date AND $end_date
    ) AS c
    WHERE copy_rank = 1
    GROUP BY caller_id, event_date
)
SELECT
    coalesce(m.user_id, c.user_id)                    AS user_id,
    coalesce(m.activity_date, c.activity_date)        AS activity_date,
    coalesce(m.messages_sent, 0)                      AS messages_sent,
    coalesce(m.conversations_active, 0)               AS conversations_active,
    coalesce(c.calls_made, 0)                         AS calls_made,
    coalesce(c.call_minutes, 0.0)                     AS call_minutes,
    least(m.first_message_at, c.first_call_at)        AS first_activity_at,
    greatest(m.last_message_at, c.last_call_at)      AS last_activity_at
FROM messages AS m
FULL OUTER JOIN calls AS c
    ON m.user_id = c.user_id AND m.activity_date = c.activity_date
