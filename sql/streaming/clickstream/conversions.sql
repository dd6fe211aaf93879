-- Click-to-purchase conversion, as the Spark job computed it: each click joined with the same
-- user's purchases of the same product in the 10 minutes after it (a click without one still
-- counts), grouped by the click's 5-minute window and product. `clicks` counts joined rows by
-- click id, `purchases` the matched transaction ids.
SELECT
    c.window_start,
    c.window_end,
    c.product_id,
    count(c.event_id) AS clicks,
    count(t.transaction_id) AS purchases,
    CAST(count(t.transaction_id) AS DOUBLE) / count(c.event_id) AS conversion_rate
FROM TUMBLE(clickstream, INTERVAL '5 minutes') AS c
LEFT JOIN transactions AS t
    ON t.user_id = c.user_id
    AND t.product_id = c.product_id
    AND t."timestamp" BETWEEN c."timestamp" AND c."timestamp" + INTERVAL '10 minutes'
WHERE c.action = 'click'
GROUP BY c.window_start, c.window_end, c.product_id
