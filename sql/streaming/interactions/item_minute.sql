-- Interactions per item and 1-minute window (only windows with interactions exist).
SELECT window_start, window_end, item_id, count(*) AS interactions
FROM TUMBLE(interactions, INTERVAL '1 minute')
GROUP BY window_start, window_end, item_id
