-- bronze.calls: calls from `mongoexport --jsonFormat=canonical`, typed. One partition per
-- UTC day the call started.
SELECT
    _id                            AS call_id,
    conversation_id,
    caller_id,
    participants,
    call_type,
    status,
    started_at,
    ended_at,
    duration_seconds,
    CAST(started_at AS DATE)       AS event_date,
    $ingested_at                   AS _ingested_at,
    'mongodb:quickchat.calls'      AS _source,
    $run_id                        AS _run_id
FROM raw_calls
WHERE started_at IS NULL
   OR CAST(started_at AS DATE) BETWEEN $start_date AND $end_date
