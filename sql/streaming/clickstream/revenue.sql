-- Revenue per category, per 5-minute window. Amounts are decimal(12,2), so sums are exact
-- whatever the order events arrive in; the average is the exact decimal average at four more
-- digits of scale (decimal(16,6)), as Spark's `avg` of a decimal gives it, not rounded to cents.
SELECT
    window_start,
    window_end,
    category,
    count(*) AS transaction_count,
    sum(amount) AS total_revenue,
    avg(amount) AS avg_transaction
FROM TUMBLE(transactions, INTERVAL '5 minutes')
GROUP BY window_start, window_end, category
