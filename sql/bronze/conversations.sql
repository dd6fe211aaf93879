-- bronze.conversations: direct and group conversations from `mongoexport`, with their
-- participants (MySQL user ids). One partition per UTC day of creation.
SELECT
    _id                                 AS conversation_id,
    "type"                              AS conversation_type,
    name                                AS group_name,
    participants,
    created_by,
    created_at,
    updated_at,
    CAST(created_at AS DATE)            AS event_date,
    $ingested_at                        AS _ingested_at,
    'mongodb:quickchat.conversations'   AS _source,
    $run_id                             AS _run_id
FROM raw_conversations
WHERE created_at IS NULL
   OR CAST(created_at AS DATE) BETWEEN $start_date AND $end_date
