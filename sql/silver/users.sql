-- silver.users: one row per user — the latest version in bronze.users, whatever the run's
-- dates (a snapshot: every run rebuilds it whole) — with personal data protected: the e-mail is normalised (trimmed, lower-cased) and kept only
-- as a SHA-256 hash plus its domain, the phone keeps its last four digits, the display name
-- its first name and last initial.
WITH versions AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY user_id
            ORDER BY updated_at DESC, _ingested_at DESC
        ) AS version_rank
    FROM bronze.users
)
SELECT
    user_id,
    username,
    encode(sha256(lower(trim(email))), 'hex')                     AS email_sha256,
    split_part(lower(trim(email)), '@', 2)                         AS email_domain,
    CASE
        WHEN phone IS NULL THEN NULL
        ELSE '***-***-' || right(regexp_replace(phone, '[^0-9]', '', 'g'), 4)
    END                                                            AS phone_masked,
    CASE
        WHEN strpos(display_name, ' ') = 0 THEN display_name
        ELSE split_part(display_name, ' ', 1) || ' ' || left(split_part(display_name, ' ', 2), 1) || '.'
    END                                                            AS display_name_masked,
    country,
    status,
    created_at,
    CAST(created_at AS DATE)                                       AS signup_date,
    updated_at,
    last_login_at
FROM versions
WHERE version_rank = 1
