-- Revenue per category, per 5-minute window. Amounts are decimal(12,2), so sums are exact
-- whatever the order events arrive in.
SELECT
    window_start,
    window_end,
    category,
    count(*) AS transaction_count,
    sum(amount) AS total_revenue,
    round(avg(amount), 2) AS avg_transaction
FROM TUMBLE(transactions, INTERVAL '5 minutes')
GROUP BY window_start, window_end, category
