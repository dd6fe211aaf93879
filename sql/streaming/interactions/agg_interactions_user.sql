-- Running totals per user, by interaction type and overall.
SELECT
    user_id,
    sum(CASE WHEN interaction_type = 'click' THEN 1 ELSE 0 END) AS total_click,
    sum(CASE WHEN interaction_type = 'like' THEN 1 ELSE 0 END) AS total_like,
    sum(CASE WHEN interaction_type = 'view' THEN 1 ELSE 0 END) AS total_view,
    sum(CASE WHEN interaction_type = 'purchase' THEN 1 ELSE 0 END) AS total_purchase,
    sum(CASE WHEN interaction_type = 'add_to_cart' THEN 1 ELSE 0 END) AS total_add_to_cart,
    count(*) AS total_interactions
FROM interactions
GROUP BY user_id
