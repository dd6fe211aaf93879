-- bronze.messages: chat messages as `mongoexport` wrote them (relaxed Extended JSON), renamed
-- and typed but otherwise untouched — duplicates and odd values stay for silver to handle —
-- plus ingestion metadata. One partition per UTC day of `sent_at`.
SELECT
    _id                              AS message_id,
    conversation_id,
    sender_id,
    content,
    message_type,
    created_at                       AS sent_at,
    delivered_at,
    read_at,
    is_edited,
    reply_to                         AS reply_to_message_id,
    CAST(created_at AS DATE)         AS event_date,
    $ingested_at                     AS _ingested_at,
    'mongodb:quickchat.messages'     AS _source,
    $run_id                          AS _run_id
FROM raw_messages
-- Documents without a timestamp are kept so that the `sent_at_present` expectation
-- quarantines them, rather than a date filter losing them silently.
WHERE created_at IS NULL
   OR CAST(created_at AS DATE) BETWEEN $start_date AND $end_date
