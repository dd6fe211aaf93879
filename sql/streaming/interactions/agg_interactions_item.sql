-- Per item, over its closed 1-minute windows (item_minute): the total, and the fewest and most
-- interactions in one minute (minutes without any do not count).
SELECT
    item_id,
    sum(interactions) AS total_interactions,
    min(interactions) AS min_interactions_per_minute,
    max(interactions) AS max_interactions_per_minute
FROM item_minute
GROUP BY item_id
