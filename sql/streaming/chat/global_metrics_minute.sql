-- Per 1-minute window of sent_at: messages, and the exact median and 99th percentile of the
-- delivery latency (delivered_at - sent_at, milliseconds), interpolating linearly between ranks.
SELECT
    window_start,
    window_end,
    count(*) AS message_count,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_latency_ms,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99_latency_ms
FROM (
    SELECT
        window_start,
        window_end,
        (CAST(delivered_at AS BIGINT) - CAST(sent_at AS BIGINT)) / 1000.0 AS latency_ms
    FROM TUMBLE(chat, INTERVAL '1 minute')
)
GROUP BY window_start, window_end
