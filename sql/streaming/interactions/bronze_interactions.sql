-- Every interaction of the micro-batch, as received (Kafka position included), with the UTC
-- day of its event time to partition by.
SELECT *, CAST("timestamp" AS DATE) AS event_date
FROM interactions
