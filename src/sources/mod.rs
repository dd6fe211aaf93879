//! Sources: where records come from, before they are decoded. Two contracts, one per mode:
//!
//! - **Bounded** (batch jobs): [`resolve`] finds a source's files or table, which are read
//!   while the job's query runs (`crate::query::source_table`), a piece at a time, so their
//!   size does not matter: JSON-lines and Extended JSON files in chunks of whole lines
//!   ([`files::LineChunks`]), CSV files through a pulling parser ([`files::BlockingFileRead`]),
//!   MySQL tables row by row ([`mysql::read_table`]), MongoDB collections through a cursor in
//!   chunks of documents ([`mongodb::DocumentChunks`]).
//! - **Replayable** (streaming pipelines): an [`Input`] reads micro-batches from positions
//!   (partition → offset; a line number for files, an event number for the generator) and can
//!   read an epoch's exact range again, which is what makes a restart replay the same
//!   micro-batches.

pub mod files;
pub mod generator;
pub mod kafka;
pub mod mongodb;
pub mod mysql;
pub mod positions;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::catalog::Lake;
use crate::config::MongoSettings;
use crate::config::job::Source;
use crate::config::pipeline::SourceDef;
use crate::config::stream::BatchLimit;
use crate::error::{Error, Result};
use files::{FileInput, FileRef, list_files};
use generator::GeneratorInput;
use kafka::KafkaInput;
use mongodb::CollectionRead;
use positions::{EpochRange, InputBatch, Positions};

/// What bounded sources need from the run.
#[derive(Debug, Clone, Copy)]
pub struct SourceContext<'a> {
    /// The lake, for resolving relative paths and reaching object stores.
    pub lake: &'a Lake,
    /// The configured MySQL URL, if any.
    pub mysql_url: Option<&'a str>,
    /// The configured MongoDB server, if any.
    pub mongodb: Option<&'a MongoSettings>,
    /// The run's days: a MongoDB source with a `date_field` asks the server for those only.
    pub range: crate::query::DateRange,
}

/// Where a batch job's source is read from, found before its query runs (so a missing file
/// or an unset MySQL URL fails the job at once); the reading itself happens while the query
/// runs (`crate::query::source_table`).
#[derive(Debug, Clone)]
pub enum BoundedInput {
    /// JSON-lines or Extended JSON files, read in chunks of whole lines.
    Lines(Vec<FileRef>),
    /// CSV files with a header row, pulled through a parser on a blocking thread.
    Csv(Vec<FileRef>),
    /// A MySQL table, streamed from the server.
    Mysql {
        /// The table.
        table: String,
        /// The server (with credentials).
        url: String,
    },
    /// A MongoDB collection, read through a cursor.
    Mongodb(CollectionRead),
}

impl BoundedInput {
    /// Where the records come from, for logs (passwords redacted).
    pub fn describe(&self) -> String {
        match self {
            BoundedInput::Lines(files) | BoundedInput::Csv(files) => match files.as_slice() {
                [one] => one.shown.clone(),
                many => format!("{} files", many.len()),
            },
            BoundedInput::Mysql { table, url } => format!("{} table {table}", crate::config::redact_url(url)),
            BoundedInput::Mongodb(read) => read.describe(),
        }
    }
}

/// Finds where `source` is read from.
pub async fn resolve(source: &Source, cx: SourceContext<'_>) -> Result<BoundedInput> {
    match &source.def {
        SourceDef::MongoExport(def) | SourceDef::JsonLines(def) => {
            Ok(BoundedInput::Lines(list_files(&source.name, &def.path, cx.lake).await?))
        }
        SourceDef::Csv(def) => Ok(BoundedInput::Csv(list_files(&source.name, &def.path, cx.lake).await?)),
        SourceDef::Mysql(def) => match (cx.mysql_url, &def.csv_export) {
            (Some(url), _) => Ok(BoundedInput::Mysql {
                table: def.table.clone(),
                url: url.to_string(),
            }),
            (None, Some(export)) => Ok(BoundedInput::Csv(list_files(&source.name, export, cx.lake).await?)),
            (None, None) => Err(Error::Source {
                source_name: source.name.clone(),
                location: format!("mysql table {}", def.table),
                message: "no MySQL URL configured: set MYSQL_URL (and MYSQL_USER/MYSQL_PASSWORD), \
                          or give the source a csv_export"
                    .into(),
                retryable: false,
                cause: None,
            }),
        },
        SourceDef::Mongodb(def) => match (cx.mongodb, &def.export) {
            (Some(settings), _) => Ok(BoundedInput::Mongodb(CollectionRead::new(
                settings,
                &def.collection,
                def.date_field.as_deref(),
                cx.range,
            ))),
            (None, Some(export)) => Ok(BoundedInput::Lines(list_files(&source.name, export, cx.lake).await?)),
            (None, None) => Err(Error::Source {
                source_name: source.name.clone(),
                location: format!("mongodb collection {}", def.collection),
                message: "no MongoDB URI configured: set MONGODB_URI (and MONGODB_DATABASE), \
                          or give the source an export"
                    .into(),
                retryable: false,
                cause: None,
            }),
        },
        SourceDef::Kafka(_) => Err(Error::config_in(
            source.name.clone(),
            "a kafka source is read by a streaming pipeline, not a batch job",
        )),
    }
}

/// The input of a streaming run.
pub enum Input {
    /// Kafka topics.
    Kafka(Box<KafkaInput>),
    /// JSON lines files.
    Files(FileInput),
    /// The built-in generator.
    Generator(GeneratorInput),
}

impl Input {
    /// The name used for the checkpoint folder and Delta application ids (`kafka`, `files`,
    /// `generator`): runs from different inputs keep separate progress.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Kafka(_) => "kafka",
            Input::Files(_) => "files",
            Input::Generator(_) => "generator",
        }
    }

    /// Whether record values are JSON whatever the source's format (files are JSON lines).
    pub fn always_json(&self) -> bool {
        matches!(self, Input::Files(files) if files.json_lines())
    }

    /// Where a run without a checkpoint starts.
    pub async fn start_positions(&mut self) -> Result<Positions> {
        match self {
            Input::Kafka(kafka) => kafka.start_positions().await,
            Input::Files(files) => Ok(files.start_positions()),
            Input::Generator(generator) => Ok(generator.start_positions()),
        }
    }

    /// Continues a run restored from a checkpoint: the generator keeps the original run's event
    /// times and produces from where it stopped.
    pub fn resume(&mut self, generator_start_ms: Option<i64>, positions: &Positions) {
        if let Input::Generator(generator) = self {
            generator.resume(generator_start_ms, positions);
        }
    }

    /// The generator's first event time, to save with the state.
    pub fn generator_start_ms(&self) -> Option<i64> {
        match self {
            Input::Generator(generator) => Some(generator.start_ms),
            _ => None,
        }
    }

    /// Reads the next micro-batch from `positions`: up to `limit`, waiting at most
    /// `interval` for records to arrive.
    pub async fn next(&mut self, positions: &Positions, limit: BatchLimit, interval: Duration) -> Result<InputBatch> {
        match self {
            Input::Kafka(kafka) => kafka.next(positions, limit, interval).await,
            Input::Files(files) => {
                let mut batch = files.next(positions, limit);
                batch.idle = files.idle(&batch.ranges);
                Ok(batch)
            }
            // Generated events are a few hundred bytes: the record count bounds their bytes.
            Input::Generator(generator) => generator.next(positions, limit.records, interval).await,
        }
    }

    /// Reads exactly the records of an epoch again.
    pub async fn replay(&mut self, range: &EpochRange) -> Result<InputBatch> {
        match self {
            Input::Kafka(kafka) => kafka.replay(range).await,
            Input::Files(files) => files.replay(&range.ranges),
            Input::Generator(generator) => Ok(generator.read(&range.ranges)),
        }
    }

    /// Whether a bounded input has nothing more to give after `positions`.
    pub fn exhausted(&self, positions: &Positions) -> bool {
        match self {
            Input::Kafka(_) => false,
            Input::Files(files) => files.exhausted(positions),
            Input::Generator(generator) => generator.exhausted(positions),
        }
    }

    /// For Kafka: whether `positions` reached the end offsets seen when the run started.
    pub async fn caught_up(&mut self, positions: &Positions) -> Result<bool> {
        match self {
            Input::Kafka(kafka) => kafka.caught_up(positions).await,
            _ => Ok(self.exhausted(positions)),
        }
    }

    /// After an epoch is committed: records progress outside the pipeline (Kafka consumer group
    /// offsets, for lag monitoring).
    pub fn committed(&mut self, positions: &Positions) {
        if let Input::Kafka(kafka) = self {
            kafka.commit_offsets(positions);
        }
    }
}

/// Every source at partition 0, offset 0: where files and the generator start.
pub(crate) fn from_the_start<'a>(sources: impl Iterator<Item = &'a String>) -> Positions {
    sources.map(|s| (s.clone(), BTreeMap::from([(0, 0)]))).collect()
}
