-- Revenue per category, per 5-minute window. Amounts are decimal(12,2), so sums are exact
-- whatever the order events arrive in. The average is the one Spark's `avg` of a decimal gives:
-- the exact quotient at four more digits of scale, decimal(16,6), rounded half up (not rounded
-- to cents; DataFusion's own decimal `avg` would truncate the sixth digit instead).
SELECT
    window_start,
    window_end,
    category,
    count(*) AS transaction_count,
    sum(amount) AS total_revenue,
    CAST(CAST(sum(amount) AS DECIMAL(38, 12)) / count(*) AS DECIMAL(16, 6)) AS avg_transaction
FROM TUMBLE(transactions, INTERVAL '5 minutes')
GROUP BY window_start, window_end, category
