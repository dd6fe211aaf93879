//! `meta.quarantine`: every record a job did not write, with why. Source records that could
//! not be read (bad JSON, wrong types) and rows dropped or failed by expectations land here,
//! one row each, with the job, rule, reason, location and the record itself as text.
//!
//! One writer, two commits. A batch job's run merges what it found, keyed by job, rule,
//! location and the record itself, so each bad record is held once: a rerun refreshes
//! `run_id`/`quarantined_at` (the last run that found the record) instead of adding a copy, and
//! rows of the job that the run re-checked (its date range; everything for a full run) and no
//! longer found are removed. A streaming pipeline appends each epoch's rejects, with their Kafka
//! position and raw bytes, once per epoch. Records are stored without the `_`-prefixed
//! ingestion columns, which differ on every run.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use datafusion::logical_expr::{Expr, Operator, binary_expr, lit};
use datafusion::scalar::ScalarValue;

use super::{timestamp, timestamp_micros};
use crate::catalog::{Lake, TableName};
use crate::decode::reject::{Location, Reject};
use crate::error::Result;
use crate::query::DateRange;
use crate::query::expectations::QuarantinedRows;
use crate::sinks::SinkMetrics;
use crate::sinks::delta::{DeltaSink, Upsert, existing, incoming};
use crate::sinks::rows::{Nulls, rows_as_json};

/// The quarantine table's name.
pub fn table_name() -> TableName {
    TableName::meta("quarantine")
}

/// The rule recorded for source records that could not be read.
pub const UNREADABLE: &str = "unreadable_record";

/// The quarantine table's columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("job", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, true),
        Field::new("rule", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, true),
        Field::new("quarantine_date", DataType::Date32, true),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("quarantined_at", timestamp(), false),
        Field::new("kafka_topic", DataType::Utf8, true),
        Field::new("kafka_partition", DataType::Int32, true),
        Field::new("kafka_offset", DataType::Int64, true),
        Field::new("raw", DataType::Binary, true),
    ]))
}

/// One quarantine row before it becomes Arrow.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The source name, or `expectations`.
    pub source: String,
    /// File and line, topic/partition/offset; `None` for rows dropped by expectations.
    pub location: Option<Location>,
    /// The rule(s) broken, or [`UNREADABLE`].
    pub rule: String,
    /// Why.
    pub reason: String,
    /// The record as text (raw input, or the output row as JSON).
    pub record: String,
    /// The record's bytes, for stream records (which may be Protobuf).
    pub raw: Option<Vec<u8>>,
    /// The date the row belongs to (its sink partition), when known.
    pub date: Option<i32>,
}

/// Entries for source records that could not be read (their date is unknown); stream records
/// keep their bytes.
pub fn unreadable_entries(rejected: Vec<Reject>) -> Vec<Entry> {
    rejected
        .into_iter()
        .map(|r| Entry {
            record: r.text(),
            raw: matches!(r.location, Location::Record { .. }).then(|| r.raw.clone()),
            source: r.source,
            location: Some(r.location),
            rule: UNREADABLE.to_string(),
            reason: r.reason,
            date: None,
        })
        .collect()
}

/// Entries for output rows kept out by expectations; `date_column` is the sink's first
/// partition column, whose value files each row.
pub fn expectation_entries(quarantined: Vec<QuarantinedRows>, date_column: Option<&str>) -> Vec<Entry> {
    let mut entries = Vec::new();
    for QuarantinedRows { rows, rules } in quarantined {
        let dates = date_column
            .and_then(|c| rows.column_by_name(c))
            .filter(|c| c.data_type() == &DataType::Date32)
            .map(|c| c.as_primitive::<Date32Type>().clone());
        let json = rows_as_json(&without_metadata_columns(&rows), Nulls::Omitted)
            .unwrap_or_else(|_| vec![String::new(); rows.num_rows()]);
        for (row, (rule, record)) in rules.into_iter().zip(json).enumerate() {
            let date = dates.as_ref().and_then(|d| d.is_valid(row).then(|| d.value(row)));
            let reason = format!("violates expectation {rule}");
            entries.push(Entry {
                source: "expectations".into(),
                location: None,
                rule,
                reason,
                record,
                raw: None,
                date,
            });
        }
    }
    entries
}

/// The row without `_`-prefixed ingestion columns (`_run_id`, `_ingested_at`, ...).
fn without_metadata_columns(rows: &RecordBatch) -> RecordBatch {
    let keep: Vec<usize> = (0..rows.num_columns())
        .filter(|&i| !rows.schema().field(i).name().starts_with('_'))
        .collect();
    rows.project(&keep).expect("projecting existing columns")
}

/// The entries as quarantine rows of `job`, found by `run_id` at `now`.
fn entries_batch(job: &str, run_id: &str, now: DateTime<Utc>, entries: &[Entry]) -> RecordBatch {
    let rows = entries.len();
    let column = |values: Vec<Option<String>>| Arc::new(StringArray::from(values)) as ArrayRef;
    let kafka = |e: &Entry| match &e.location {
        Some(Location::Record {
            topic,
            partition,
            offset,
        }) => Some((topic.clone(), *partition, *offset)),
        _ => None,
    };
    RecordBatch::try_new(
        schema(),
        vec![
            column(vec![Some(job.to_string()); rows]),
            column(entries.iter().map(|e| Some(e.source.clone())).collect()),
            column(
                entries
                    .iter()
                    .map(|e| e.location.as_ref().map(Location::to_string))
                    .collect(),
            ),
            column(entries.iter().map(|e| Some(e.rule.clone())).collect()),
            column(entries.iter().map(|e| Some(e.reason.clone())).collect()),
            column(entries.iter().map(|e| Some(e.record.clone())).collect()),
            Arc::new(Date32Array::from(entries.iter().map(|e| e.date).collect::<Vec<_>>())),
            column(vec![Some(run_id.to_string()); rows]),
            Arc::new(TimestampMicrosecondArray::from(vec![timestamp_micros(now); rows]).with_timezone("UTC")),
            column(entries.iter().map(|e| kafka(e).map(|k| k.0)).collect()),
            Arc::new(Int32Array::from(
                entries.iter().map(|e| kafka(e).map(|k| k.1)).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                entries.iter().map(|e| kafka(e).map(|k| k.2)).collect::<Vec<_>>(),
            )),
            Arc::new(BinaryArray::from(
                entries.iter().map(|e| e.raw.as_deref()).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("quarantine columns match the schema")
}

fn day(date: chrono::NaiveDate) -> Expr {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    lit(ScalarValue::Date32(Some((date - epoch).num_days() as i32)))
}

/// Merges a run's entries into the quarantine (see the module documentation).
pub async fn record(
    lake: &Lake,
    ctx: &SessionContext,
    job: &str,
    range: DateRange,
    run_id: &str,
    now: DateTime<Utc>,
    entries: Vec<Entry>,
) -> Result<SinkMetrics> {
    // The same bad record twice in one run (an exact re-export) is one entry.
    let mut seen = std::collections::BTreeSet::new();
    let entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| seen.insert((e.rule.clone(), e.location.clone(), e.record.clone())))
        .collect();
    let exists = crate::catalog::open(lake, &table_name()).await?.is_some();
    if entries.is_empty() && !exists {
        return Ok(SinkMetrics::default());
    }
    let batch = entries_batch(job, run_id, now, &entries);
    let this_job = existing("job").eq(lit(job));
    let rechecked = match range {
        DateRange::All => this_job.clone(),
        DateRange::Days { start, end } => this_job
            .clone()
            .and(existing("quarantine_date").gt_eq(day(start)))
            .and(existing("quarantine_date").lt_eq(day(end))),
    };
    let upsert = Upsert {
        on: this_job
            .and(existing("job").eq(incoming("job")))
            .and(existing("rule").eq(incoming("rule")))
            .and(binary_expr(
                existing("location"),
                Operator::IsNotDistinctFrom,
                incoming("location"),
            ))
            .and(existing("record").eq(incoming("record"))),
        delete_unmatched: Some(rechecked),
    };
    DeltaSink::new(lake, table_name())
        .with_partition_columns(&["job".to_string()])
        .with_commit_metadata("quickchat.run_id", run_id)
        .with_commit_metadata("quickchat.job", job)
        .upsert_batches(ctx, schema(), vec![batch], upsert)
        .await
}

/// Appends a streaming pipeline's unusable records of one epoch, with their Kafka position and
/// raw bytes; `app_id`/`epoch` make a replayed epoch write nothing twice.
pub async fn append_epoch(
    lake: &Lake,
    ctx: &SessionContext,
    pipeline: &str,
    app_id: &str,
    epoch: u64,
    rejects: &[Reject],
    now: DateTime<Utc>,
) -> Result<SinkMetrics> {
    if rejects.is_empty() {
        return Ok(SinkMetrics::default());
    }
    let table = table_name();
    if crate::catalog::app_transaction_version(lake, &table, app_id)
        .await?
        .is_some_and(|v| v >= epoch as i64)
    {
        return Ok(SinkMetrics::default());
    }
    let entries = unreadable_entries(rejects.to_vec());
    let batch = entries_batch(pipeline, &format!("epoch-{epoch}"), now, &entries);
    DeltaSink::new(lake, table)
        .with_partition_columns(&["job".to_string()])
        .with_app_transaction(app_id, epoch as i64)
        .with_commit_metadata("quickchat.job", pipeline)
        .write_batches(ctx, schema(), vec![batch])
        .await
}
