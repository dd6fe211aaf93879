-- bronze.users: rows of the MySQL `users` table, extracted incrementally: a run for a day
-- takes the users updated that day (run once without --date for the initial snapshot).
-- One partition per UTC day of `updated_at`.
SELECT
    id                          AS user_id,
    username,
    email,
    phone,
    display_name,
    country,
    status,
    created_at,
    updated_at,
    last_login_at,
    CAST(updated_at AS DATE)    AS event_date,
    $ingested_at                AS _ingested_at,
    'mysql:quickchat.users'     AS _source,
    $run_id                     AS _run_id
FROM mysql_users
WHERE updated_at IS NULL
   OR CAST(updated_at AS DATE) BETWEEN $start_date AND $end_date
