//! Sources: external inputs read into Arrow record batches against their declared schema.
//!
//! A record that cannot be read (bad JSON, a value that does not fit its column, a missing
//! required field) never stops the job and is never dropped silently: it becomes a
//! [`RejectedRecord`] naming its file and line, and the runner puts it in the quarantine table.

pub mod csv;
pub mod extended_json;
pub mod files;
pub mod json_lines;
pub mod mysql;
pub mod text_table;

use arrow::record_batch::RecordBatch;

use crate::catalog::Lake;
use crate::config::pipeline::SourceDef;
use crate::error::Result;
use crate::jobs::Source;

/// Rows per record batch produced by sources.
pub const BATCH_ROWS: usize = 8192;

/// The most bytes of a bad record kept in the quarantine table.
pub const MAX_REJECTED_BYTES: usize = 64 * 1024;

/// An input record that could not be read, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// Where it was: `file.json:17` (line), `mysql:users:5` (fifth row read), `topic/partition/offset`.
    pub location: String,
    /// Why it was rejected.
    pub reason: String,
    /// The raw record (truncated to [`MAX_REJECTED_BYTES`]).
    pub record: String,
}

impl RejectedRecord {
    /// A rejected record, its raw bytes kept as (lossy) UTF-8 text.
    pub fn new(location: String, reason: impl Into<String>, raw: &[u8]) -> Self {
        let kept = &raw[..raw.len().min(MAX_REJECTED_BYTES)];
        Self {
            location,
            reason: reason.into(),
            record: String::from_utf8_lossy(kept).into_owned(),
        }
    }
}

/// What a source produced.
#[derive(Debug, Default)]
pub struct SourceBatches {
    /// Rows that fit the declared schema.
    pub batches: Vec<RecordBatch>,
    /// Records that did not.
    pub rejected: Vec<RejectedRecord>,
    /// Files (or tables) read.
    pub files: usize,
    /// Where the data came from, for logs (passwords redacted).
    pub location: String,
}

impl SourceBatches {
    /// Rows read successfully.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What sources need from the run.
#[derive(Debug, Clone, Copy)]
pub struct SourceContext<'a> {
    /// The lake, for resolving relative paths and reaching object stores.
    pub lake: &'a Lake,
    /// The configured MySQL URL, if any.
    pub mysql_url: Option<&'a str>,
}

/// Reads a source completely.
pub async fn read(source: &Source, cx: SourceContext<'_>) -> Result<SourceBatches> {
    match &source.def {
        SourceDef::MongoExport(def) => {
            files::read_json_lines(source, &def.path, json_lines::Dialect::MongoExtended, cx).await
        }
        SourceDef::JsonLines(def) => files::read_json_lines(source, &def.path, json_lines::Dialect::Plain, cx).await,
        SourceDef::Csv(def) => files::read_csv(source, &def.path, cx).await,
        SourceDef::Mysql(def) => match (cx.mysql_url, &def.csv_export) {
            (Some(url), _) => mysql::read_table(source, &def.table, url).await,
            (None, Some(export)) => files::read_csv(source, export, cx).await,
            (None, None) => Err(crate::error::Error::Source {
                source_name: source.name.clone(),
                location: format!("mysql table {}", def.table),
                message: "no MySQL URL configured: set MYSQL_URL (and MYSQL_USER/MYSQL_PASSWORD), \
                          or give the source a csv_export"
                    .into(),
                retryable: false,
            }),
        },
    }
}
