-- Every chat message of the micro-batch, as received (Kafka position included), with the UTC
-- day it was sent to partition by.
SELECT *, CAST(sent_at AS DATE) AS event_date
FROM chat
