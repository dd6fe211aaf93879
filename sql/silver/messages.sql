-- silver.messages: one row per message id, enriched with the sender's attributes from
-- silver.users and with derived fields. Re-exported copies of a document are collapsed to
-- the most complete one (latest ingestion, then read/delivered timestamps present).
WITH deduplicated AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY message_id
            ORDER BY _ingested_at DESC, read_at DESC NULLS LAST, delivered_at DESC NULLS LAST
        ) AS copy_rank
    FROM bronze.messages
    WHERE event_date BETWEEN $start_date AND $end_date
)
SELECT
    m.message_id,
    m.conversation_id,
    m.sender_id,
    u.username                                            AS sender_username,
    u.country                                             AS sender_country,
    u.status                                              AS sender_status,
    u.signup_date                                         AS sender_signup_date,
    m.content,
    m.message_type,
    m.sent_at,
    m.delivered_at,
    m.read_at,
    m.is_edited,
    m.reply_to_message_id,
    -- Characters, not bytes: "café 👍" is 6.
    character_length(m.content)                           AS content_length,
    CAST(date_part('hour', m.sent_at) AS INT)             AS hour_of_day,
    -- ISO weekday: 1 = Monday ... 7 = Sunday.
    CAST(date_part('isodow', m.sent_at) AS INT)           AS weekday,
    -- Delivery latency in milliseconds; NULL while undelivered.
    CAST(round(date_part('epoch', m.delivered_at - m.sent_at) * 1000) AS BIGINT) AS latency_ms,
    m.event_date                                          AS message_date
FROM deduplicated AS m
LEFT JOIN silver.users AS u ON u.user_id = m.sender_id
WHERE m.copy_rank = 1
