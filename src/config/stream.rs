//! The streaming pipeline file format: a `pipelines/<name>.toml` with `mode = "streaming"`.
//!
//! Sources are Kafka topics (`kind = "kafka"`; a JSON-lines file per topic with `--from-files`;
//! the built-in generator with `--from-generator`) with an event-time column, a watermark delay
//! and optionally a key for de-duplication. Outputs are named SQL files, each with its sinks;
//! every sink chooses its mode (`append` or `update`). Sources and sinks are the same
//! [`SourceDef`]/[`SinkDef`] as batch jobs use.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use super::pipeline::{SinkDef, SourceDef};

/// A streaming pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamPipelineFile {
    /// One sentence saying what the pipeline computes; shown by `list`.
    pub description: String,
    /// Always `"streaming"` (batch jobs leave `mode` out).
    pub mode: StreamMode,
    /// When a micro-batch ends.
    #[serde(default)]
    pub trigger: TriggerDef,
    /// Kafka consumer settings.
    #[serde(default)]
    pub kafka: KafkaDef,
    /// State and checkpoint settings.
    #[serde(default)]
    pub state: StateDef,
    /// Limits that protect the process from input it cannot hold.
    #[serde(default)]
    pub limits: LimitsDef,
    /// The input streams, by the table name the SQL uses for them.
    pub sources: IndexMap<String, SourceDef>,
    /// The queries, by name: each a SQL file and where its rows go. An output's rows can be read
    /// by later outputs under its name.
    pub outputs: IndexMap<String, OutputDef>,
    /// Alert rules over outputs, and where alerts go.
    #[serde(default)]
    pub alerts: Option<AlertsDef>,
}

/// The `mode` of a streaming pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamMode {
    /// Micro-batches from streams.
    Streaming,
}

/// When a micro-batch ends: after `max_records` records or `interval`, whichever comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// Most records in one micro-batch.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Longest wait for a micro-batch to fill, e.g. `"1s"`.
    #[serde(default = "default_interval")]
    pub interval: String,
}

fn default_max_records() -> usize {
    100_000
}

fn default_interval() -> String {
    "1s".to_string()
}

impl Default for TriggerDef {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            interval: default_interval(),
        }
    }
}

/// Where a micro-batch ends: after this many records or bytes of records (the first reached;
/// a single record larger than `bytes` still makes a micro-batch of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimit {
    /// Most records.
    pub records: usize,
    /// Most bytes of record values.
    pub bytes: usize,
}

/// Limits that protect a streaming run from input it cannot hold: a record too large, a
/// micro-batch too large, a state growing without bound (a runaway key space).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDef {
    /// A record (a Kafka message's value, a line of a file) larger than this is quarantined
    /// with its size, not decoded, e.g. `"1MiB"` (the default; Kafka's own default message
    /// limit is about that).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: String,
    /// A micro-batch ends once its records add up to this many bytes, whatever
    /// `trigger.max_records` says, e.g. `"64MiB"` (the default).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: String,
    /// The most rows one operator (an output's open windows, sessions or remembered keys, a
    /// join buffer) may hold; past it the run stops (exit 4) naming the output, instead of
    /// growing until the machine's memory runs out. Default 10,000,000.
    #[serde(default = "default_max_state_rows")]
    pub max_state_rows: usize,
}

fn default_max_record_bytes() -> String {
    "1MiB".to_string()
}

fn default_max_batch_bytes() -> String {
    "64MiB".to_string()
}

fn default_max_state_rows() -> usize {
    10_000_000
}

impl Default for LimitsDef {
    fn default() -> Self {
        Self {
            max_record_bytes: default_max_record_bytes(),
            max_batch_bytes: default_max_batch_bytes(),
            max_state_rows: default_max_state_rows(),
        }
    }
}

/// Kafka consumer settings of a pipeline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaDef {
    /// Bootstrap servers; default `KAFKA_BOOTSTRAP_SERVERS`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// Consumer group offsets are committed to (for lag monitoring); default
    /// `quickchat-<pipeline>`. The pipeline's own checkpoint decides where it resumes.
    #[serde(default)]
    pub group: Option<String>,
    /// Where a pipeline without a checkpoint starts reading.
    #[serde(default)]
    pub starting_offsets: StartingOffsets,
}

/// Where a first run starts reading a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartingOffsets {
    /// From the oldest record kept.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// State settings of a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDef {
    /// How often the state is saved whole (offsets and commits are logged every micro-batch;
    /// a restart replays the micro-batches since the last snapshot), e.g. `"30s"`.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: String,
    /// Snapshots a run keeps: after each one it saves, older ones go, with the offsets and
    /// commits only they needed (as `checkpoints <pipeline> --cleanup --keep N` does), so a
    /// checkpoint's size does not grow with the run's length.
    #[serde(default = "default_keep_snapshots")]
    pub keep_snapshots: usize,
}

fn default_snapshot_interval() -> String {
    "30s".to_string()
}

/// Three: a snapshot that turns out unreadable still leaves two to resume from.
fn default_keep_snapshots() -> usize {
    3
}

impl Default for StateDef {
    fn default() -> Self {
        Self {
            snapshot_interval: default_snapshot_interval(),
            keep_snapshots: default_keep_snapshots(),
        }
    }
}

/// One query of a streaming pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    /// The SQL file, relative to the project folder.
    pub sql: String,
    /// Where the rows go; an output without sinks only feeds later outputs.
    #[serde(default)]
    pub sinks: Vec<SinkDef>,
}

/// Alert rules and where alerts go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsDef {
    /// Where alert rows go (like an output's sinks).
    pub sinks: Vec<SinkDef>,
    /// The rules.
    pub rules: Vec<AlertRuleDef>,
}

/// One alert rule: rows of `output` satisfying `condition` raise an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleDef {
    /// Rule name, in every alert it raises.
    pub name: String,
    /// The output whose rows are watched.
    pub output: String,
    /// A SQL condition over the output's columns.
    pub condition: String,
    /// Columns naming what the alert is about (e.g. `item_id`); an alert is raised once per
    /// rule and key value, when the condition first holds.
    pub key: Vec<String>,
}

/// Parses a duration such as `5 minutes`, `30s`, `1s` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. \"5 minutes\", \"30s\", \"500ms\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::pipeline::{RecordFormat, WriteMode};

    #[test]
    fn a_streaming_pipeline_file_parses_with_defaults() {
        let text = r#"
            description = "x"
            mode = "streaming"
            [sources.clicks]
            kind = "kafka"
            topic = "clickstream"
            event_time = "timestamp"
            watermark = "5 minutes"
            key = "event_id"
            columns = { event_id = "string", timestamp = "timestamp" }
            [outputs.views]
            sql = "sql/streaming/views.sql"
            [[outputs.views.sinks]]
            kind = "mysql"
            table = "views"
            key = ["window_start"]
            mode = "update"
        "#;
        let file: StreamPipelineFile = toml::from_str(text).unwrap();
        assert_eq!(file.trigger.max_records, 100_000);
        assert_eq!(file.kafka.starting_offsets, StartingOffsets::Earliest);
        assert!(matches!(&file.sources["clicks"], SourceDef::Kafka(k) if k.format == RecordFormat::Json));
        assert_eq!(file.outputs["views"].sinks[0].mode(), WriteMode::Update);
        assert_eq!(file.outputs["views"].sinks[0].display(), "mysql:views");
    }
}
