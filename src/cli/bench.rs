//! Arguments of `bench`: which parts run and how big they are.

use clap::{Args, ValueEnum};

use super::parse_duration_arg;

/// Parts of `bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchPart {
    /// From files: decode, dedup and windows alone, then with the Delta sinks.
    Files,
    /// From Kafka: a bare consumer, then the pipeline without and with sinks.
    Kafka,
    /// Event produced to MySQL row updated, in update mode, at a steady rate.
    Freshness,
    /// State rows and memory over a longer run from the generator.
    Soak,
    /// `chat-analytics` over the same events as Protobuf records and as JSON records (held in
    /// memory, no sinks): the cost of each decoder in a whole pipeline.
    Protobuf,
    /// Many micro-batch commits to one append and one update Delta table (a day of a 1 s
    /// trigger is 86,400): whether a commit's cost grows with the table's age.
    Commits,
    /// The batch medallion on a generated data set under `--memory-limit`: time and peak
    /// memory per job.
    Batch,
    /// The same files through the pipeline with the live UI off, then on and polled every
    /// 500 ms: what serving the UI costs.
    Ui,
    /// `bronze-messages` reading a generated data set's messages from the MongoDB server
    /// (`MONGODB_URI`), then from the export file: rows/s and peak memory.
    Mongodb,
    /// The MongoDB and Elasticsearch sinks writing a streaming output's epochs, new documents
    /// then the same ids again: documents/s and epoch times (each server when configured).
    Sinks,
}

/// Tables of `bench --only commits`: an append and an update sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CommitTable {
    /// Appends (a bronze copy).
    Append,
    /// An update sink (a windowed count merged on its key).
    Update,
}

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events for the runs from files.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,

    /// Events for the runs from Kafka (enough that connecting and the final quiet poll, ~1 s in
    /// all, do not dominate the rates).
    #[arg(long, default_value_t = 2_000_000)]
    pub kafka_events: u64,

    /// Events per second produced while freshness is measured.
    #[arg(long, default_value_t = 5_000.0)]
    pub freshness_rate: f64,

    /// How long freshness is measured.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub freshness_duration: std::time::Duration,

    /// How long the memory soak runs (generator input, event time 10x wall-clock time).
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub soak: std::time::Duration,

    /// Events per second during the soak.
    #[arg(long, default_value_t = 20_000.0)]
    pub soak_rate: f64,

    /// Soak without the sinks, to tell the memory of state and queries from that of the writers.
    #[arg(long)]
    pub soak_without_sinks: bool,

    /// The soak's Delta tables keep log entries and removed files' tombstones this long
    /// (`delta.logRetentionDuration`, `delta.deletedFileRetentionDuration`) instead of the
    /// streaming default of a day: a soak shorter than a day shows the log bounded.
    #[arg(long, value_parser = parse_duration_arg)]
    pub soak_log_retention: Option<std::time::Duration>,

    /// Users of the batch part's data set (each sends ~6 messages a day).
    #[arg(long, default_value_t = 2_000)]
    pub batch_users: u32,

    /// Days of the batch part's data set.
    #[arg(long, default_value_t = 30)]
    pub batch_days: u32,

    /// Micro-batch commits per table in the commits part.
    #[arg(long, default_value_t = 3_000)]
    pub commits: u64,

    /// Rows of each commit in the commits part: pages counted in the micro-batch's minute.
    #[arg(long, default_value_t = 50)]
    pub commit_rows: usize,

    /// The commits part's tables keep log entries and tombstones this long instead of the
    /// streaming default of a day (see --soak-log-retention).
    #[arg(long, value_parser = parse_duration_arg)]
    pub commit_log_retention: Option<std::time::Duration>,

    /// Users of the mongodb part's data set (with --batch-days; 5,600 users x 30 days is ~1 M
    /// message documents).
    #[arg(long, default_value_t = 2_000)]
    pub mongodb_users: u32,

    /// Documents the sinks part writes in each of its two passes (over 20 epochs).
    #[arg(long, default_value_t = 100_000)]
    pub sink_rows: u64,

    /// Tables of the commits part (comma-separated) [default: both].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub commit_tables: Vec<CommitTable>,

    /// Run only these parts (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<BenchPart>,
}
