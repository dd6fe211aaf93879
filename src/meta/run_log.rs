//! `meta.run_log`: one row per job run, appended when the job ends, whatever the outcome:
//! status, dates, row and file counts, expectation violations per rule, and the error.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Int64Array, Int64Builder, MapBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use super::{date32, timestamp, timestamp_micros};
use crate::catalog::{Lake, TableName};
use crate::error::Result;
use crate::query::DateRange;
use crate::sinks::delta::DeltaSink;

/// The run log table's name.
pub fn table_name() -> TableName {
    TableName::meta("run_log")
}

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Wrote its sink.
    Succeeded,
    /// Wrote nothing because of an error or a `fail` expectation.
    Failed,
}

impl RunStatus {
    /// The name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// One run of one job.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The run id.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// How it ended.
    pub status: RunStatus,
    /// The dates it covered.
    pub range: DateRange,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Rows read from external sources.
    pub rows_read: u64,
    /// Source records that could not be read (quarantined).
    pub rows_rejected: u64,
    /// Rows written to the sink.
    pub rows_written: u64,
    /// Rows kept out by `drop`/`fail` expectations (quarantined).
    pub rows_dropped: u64,
    /// Files added to the sink.
    pub files_added: u64,
    /// Files removed from the sink.
    pub files_removed: u64,
    /// The sink table version committed.
    pub table_version: Option<i64>,
    /// Violations per expectation: rule, action, rows.
    pub violations: Vec<(String, String, u64)>,
    /// The error, when failed.
    pub error: Option<String>,
}

/// The run log's columns.
pub fn schema() -> SchemaRef {
    let map_entries = Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Int64, true),
            ]
            .into(),
        ),
        false,
    );
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("date_from", DataType::Date32, true),
        Field::new("date_to", DataType::Date32, true),
        Field::new("started_at", timestamp(), false),
        Field::new("finished_at", timestamp(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("rows_read", DataType::Int64, false),
        Field::new("rows_rejected", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("rows_dropped", DataType::Int64, false),
        Field::new("files_added", DataType::Int64, false),
        Field::new("files_removed", DataType::Int64, false),
        Field::new("table_version", DataType::Int64, true),
        Field::new("violations_by_rule", DataType::Map(Arc::new(map_entries), false), true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// Appends one record to the run log.
pub async fn append(lake: &Lake, ctx: &SessionContext, record: &RunRecord) -> Result<()> {
    let (date_from, date_to) = match record.range {
        DateRange::All => (None, None),
        DateRange::Days { start, end } => (Some(date32(start)), Some(date32(end))),
    };
    let int = |v: u64| Arc::new(Int64Array::from(vec![v as i64])) as ArrayRef;
    let text = |v: &str| Arc::new(StringArray::from(vec![v.to_string()])) as ArrayRef;
    let time = |t: DateTime<Utc>| {
        Arc::new(TimestampMicrosecondArray::from(vec![timestamp_micros(t)]).with_timezone("UTC")) as ArrayRef
    };
    let mut violations = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    for (rule, action, rows) in &record.violations {
        violations.keys().append_value(format!("{rule}:{action}"));
        violations.values().append_value(*rows as i64);
    }
    violations.append(true).expect("map entries are balanced");
    let duration = (record.finished_at - record.started_at).num_milliseconds().max(0) as u64;
    let columns: Vec<ArrayRef> = vec![
        text(&record.run_id),
        text(&record.job),
        text(record.status.as_str()),
        Arc::new(Date32Array::from(vec![date_from])),
        Arc::new(Date32Array::from(vec![date_to])),
        time(record.started_at),
        time(record.finished_at),
        int(duration),
        int(record.rows_read),
        int(record.rows_rejected),
        int(record.rows_written),
        int(record.rows_dropped),
        int(record.files_added),
        int(record.files_removed),
        Arc::new(Int64Array::from(vec![record.table_version])),
        Arc::new(violations.finish()),
        Arc::new(StringArray::from(vec![record.error.clone()])),
    ];
    let batch = RecordBatch::try_new(schema(), columns).expect("run log columns match the schema");
    DeltaSink::new(lake, table_name())
        .with_commit_metadata("quickchat.run_id", &record.run_id)
        .with_commit_metadata("quickchat.job", &record.job)
        .write_batches(ctx, schema(), vec![batch])
        .await?;
    Ok(())
}
