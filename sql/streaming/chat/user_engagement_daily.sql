-- Per user and UTC day of sent_at: messages sent and distinct channels written to.
SELECT
    CAST(window_start AS DATE) AS date,
    user_id,
    count(*) AS messages_sent,
    count(DISTINCT channel_id) AS active_channels
FROM TUMBLE(chat, INTERVAL '1 day')
GROUP BY window_start, window_end, user_id
