-- Per channel and 1-minute window of sent_at: messages, distinct senders, and the mean length
-- of the content in characters.
SELECT
    window_start,
    window_end,
    channel_id,
    count(*) AS message_count,
    count(DISTINCT user_id) AS active_users,
    avg(character_length(content)) AS avg_message_length
FROM TUMBLE(chat, INTERVAL '1 minute')
GROUP BY window_start, window_end, channel_id
