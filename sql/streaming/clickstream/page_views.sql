-- Page views: all clickstream events per product, per 1-minute window; unique users are
-- distinct user ids.
SELECT
    window_start,
    window_end,
    product_id,
    category,
    count(*) AS view_count,
    count(DISTINCT user_id) AS unique_users
FROM TUMBLE(clickstream, INTERVAL '1 minute')
GROUP BY window_start, window_end, product_id, category
