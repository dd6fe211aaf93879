//! The pipeline file format: what a `pipelines/<name>.toml` may contain, in either mode.
//!
//! A *batch job* names external sources, one SQL file, one sink and its expectations. A
//! *streaming pipeline* (`mode = "streaming"`, see [`super::stream`]) names Kafka sources and
//! outputs, each a SQL file with its sinks. Both use the same connector definitions: a source is
//! a [`SourceDef`] and a sink a [`SinkDef`], tagged enums with one variant per `kind`, and a
//! sink says how it writes with one [`WriteMode`]; the registry checks that a kind and a mode
//! suit the pipeline's mode.
//!
//! These structs are the documented contract with users; each field's `///` line is its
//! documentation. Strings have already been through `${VAR}` expansion when they are
//! deserialized here.

use indexmap::IndexMap;
use serde::Deserialize;

pub use super::sinks::{
    ConsoleSinkDef, DEFAULT_BULK_MAX_BYTES, DEFAULT_BULK_MAX_DOCS, DEFAULT_COMPACT_EVERY, DeltaSinkDef,
    ElasticsearchSinkDef, KafkaSinkDef, MongodbSinkDef, MysqlSinkDef, ParquetSinkDef, STREAMING_TABLE_PROPERTIES,
    SinkDef, streaming_table_properties,
};

/// One batch pipeline file: a job with its sources, SQL, sink and expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// One sentence saying what the job produces; shown by `list`.
    pub description: String,
    /// The job's SQL file, relative to the project folder (e.g. `sql/silver/messages.sql`).
    pub sql: String,
    /// Jobs that must have run before this one (their sink tables are read by the SQL).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// External inputs, by the table name the SQL uses for them. Lake tables
    /// (`bronze.messages`, ...) are read by name in the SQL and need no declaration.
    #[serde(default)]
    pub sources: IndexMap<String, SourceDef>,
    /// Where the job's result goes.
    pub sink: SinkDef,
    /// Data-quality rules checked on every output row before it is written.
    #[serde(default)]
    pub expectations: Vec<ExpectationDef>,
}

/// Where a source's records come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceDef {
    /// JSON lines as written by `mongoexport` (relaxed or canonical Extended JSON). Batch.
    MongoExport(FileSourceDef),
    /// Plain JSON lines, timestamps as ISO-8601 strings. Batch.
    JsonLines(FileSourceDef),
    /// CSV with a header row. Batch.
    Csv(FileSourceDef),
    /// A MySQL/MariaDB table, read through `MYSQL_URL`. Batch.
    Mysql(MysqlSourceDef),
    /// A MongoDB collection, read through `MONGODB_URI`. Batch.
    Mongodb(MongodbSourceDef),
    /// A Kafka topic, read as a stream of micro-batches. Streaming.
    Kafka(KafkaSourceDef),
}

impl SourceDef {
    /// The source's declared columns.
    pub fn columns(&self) -> &IndexMap<String, String> {
        match self {
            SourceDef::MongoExport(def) | SourceDef::JsonLines(def) | SourceDef::Csv(def) => &def.columns,
            SourceDef::Mysql(def) => &def.columns,
            SourceDef::Mongodb(def) => &def.columns,
            SourceDef::Kafka(def) => &def.columns,
        }
    }

    /// The `kind` tag, as written in pipeline files.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceDef::MongoExport(_) => "mongo_export",
            SourceDef::JsonLines(_) => "json_lines",
            SourceDef::Csv(_) => "csv",
            SourceDef::Mysql(_) => "mysql",
            SourceDef::Mongodb(_) => "mongodb",
            SourceDef::Kafka(_) => "kafka",
        }
    }
}

/// A file-based source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceDef {
    /// A file or a folder of files: relative to the lake root, an absolute path, or a URL
    /// (`s3://...`).
    pub path: String,
    /// The columns to read, `name = "type"` in order; other fields in the file are ignored.
    pub columns: IndexMap<String, String>,
}

/// A MySQL table source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceDef {
    /// The table to read, whole.
    pub table: String,
    /// The columns to read, `name = "type"` in order.
    pub columns: IndexMap<String, String>,
    /// A CSV export of the same table, read instead when no MySQL URL is configured
    /// (this is how the demo runs without a server).
    #[serde(default)]
    pub csv_export: Option<String>,
}

/// A MongoDB collection source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbSourceDef {
    /// The collection, in the configured database (`MONGODB_DATABASE`).
    pub collection: String,
    /// The columns to read, `name = "type"` in order (the fields asked of the server); BSON
    /// values convert as their Extended JSON does in a `mongo_export` source.
    pub columns: IndexMap<String, String>,
    /// A date/timestamp column: a run for some dates asks the server for documents whose field
    /// falls on those days, and for those whose field is not a date (missing, null, a string),
    /// so that the job's rules see them as they would in the export. Unset: every document.
    #[serde(default)]
    pub date_field: Option<String>,
    /// A `mongoexport` file of the same collection, read instead when no MongoDB URI is
    /// configured (this is how the demo runs without a server).
    #[serde(default)]
    pub export: Option<String>,
}

/// A Kafka topic read by a streaming pipeline, with the event time and watermark its windows
/// are computed by.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceDef {
    /// The Kafka topic (and, with `--from-files DIR`, the file `DIR/<topic>.jsonl`).
    pub topic: String,
    /// How record values are encoded.
    #[serde(default)]
    pub format: RecordFormat,
    /// For `protobuf`: the descriptor set (`protoc --descriptor_set_out`), relative to the
    /// project folder.
    #[serde(default)]
    pub descriptor_set: Option<String>,
    /// For `protobuf`: the full message name, e.g. `quickchat.ChatMessage`.
    #[serde(default)]
    pub message: Option<String>,
    /// The event-time column (a `timestamp` column). Records without one are quarantined.
    pub event_time: String,
    /// How far behind the latest event time seen the watermark trails, e.g. `"5 minutes"`;
    /// records older than the watermark are late.
    pub watermark: String,
    /// A column identifying a record: repeats of a key are counted once.
    #[serde(default)]
    pub key: Option<String>,
    /// How long keys are remembered for de-duplication; default: the watermark delay.
    #[serde(default)]
    pub dedup_within: Option<String>,
    /// The built-in event stream `--from-generator` and `produce` use for this source.
    #[serde(default)]
    pub generator: Option<GeneratorKind>,
    /// Where late records go; default `bronze.<source>_late`.
    #[serde(default)]
    pub late_table: Option<String>,
    /// The record's columns, `name = "type"` in order.
    pub columns: IndexMap<String, String>,
}

/// How Kafka record values are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// A JSON object per record; timestamps as ISO-8601 strings.
    #[default]
    Json,
    /// A Protobuf message per record, decoded with a descriptor set.
    Protobuf,
}

/// The built-in event streams (`generator = "..."` of a Kafka source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorKind {
    /// `chat-stream`: `message_id, channel_id, user_id, content, message_type, sent_at, delivered_at`.
    Chat,
    /// `clickstream`: `event_id, user_id, session_id, product_id, category, action, timestamp, page_url, referrer`.
    Clickstream,
    /// `transactions`: `transaction_id, user_id, session_id, product_id, category, amount, quantity, timestamp, payment_method`.
    Transactions,
    /// `interactions`: `user_id, item_id, interaction_type, timestamp`.
    Interactions,
}

impl GeneratorKind {
    /// Every kind, in the order `produce --help` lists them.
    pub const ALL: [GeneratorKind; 4] = [
        GeneratorKind::Chat,
        GeneratorKind::Clickstream,
        GeneratorKind::Transactions,
        GeneratorKind::Interactions,
    ];

    /// The name used in pipeline files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GeneratorKind::Chat => "chat",
            GeneratorKind::Clickstream => "clickstream",
            GeneratorKind::Transactions => "transactions",
            GeneratorKind::Interactions => "interactions",
        }
    }

    /// Parses a name from the command line.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            format!("unknown generator `{name}` (known: {})", known.join(", "))
        })
    }

    /// The topic the shipped pipelines read this stream from.
    pub fn topic(self) -> &'static str {
        match self {
            GeneratorKind::Chat => "chat-stream",
            GeneratorKind::Clickstream => "clickstream",
            GeneratorKind::Transactions => "transactions",
            GeneratorKind::Interactions => "interactions",
        }
    }
}

/// How a sink writes. Batch jobs replace what earlier runs wrote (every mode but `append` is
/// idempotent: running the same job for the same dates once or five times leaves the same
/// table); streaming sinks receive a windowed output's rows once final (`append`) or every
/// micro-batch they change (`update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add rows. Batch: logs, not idempotent. Streaming (the default): once per window, final,
    /// when the watermark passes its end.
    Append,
    /// Streaming: every micro-batch in which a window changed, as an upsert by key (live
    /// dashboards).
    Update,
    /// Batch: replace the rows whose first partition column (a date) lies in the run's date
    /// range; a run without `--date`/`--from` replaces the whole table.
    ReplacePartitions,
    /// Batch: replace the whole table on every run (snapshot tables such as `silver.users`).
    Overwrite,
}

impl WriteMode {
    /// The name used in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Append => "append",
            WriteMode::Update => "update",
            WriteMode::ReplacePartitions => "replace_partitions",
            WriteMode::Overwrite => "overwrite",
        }
    }
}

/// A data-quality rule, as in Delta Live Tables' expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationDef {
    /// Rule name, recorded with every violating row in the quarantine table.
    pub name: String,
    /// A SQL boolean expression over the output columns that good rows satisfy. A row for
    /// which it is false *or null* violates the rule.
    pub condition: String,
    /// What to do with a violating row.
    pub on_violation: OnViolation,
}

/// What happens to a row that violates an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    /// Keep it out of the sink and put it in the quarantine table with the rule name.
    Drop,
    /// Write nothing and end the job with the data-quality exit code (5); the violating rows
    /// are put in the quarantine table for inspection.
    Fail,
    /// Keep it in the sink; count and log it.
    Warn,
}

impl OnViolation {
    /// The name used in pipeline files, logs and the run log.
    pub fn as_str(self) -> &'static str {
        match self {
            OnViolation::Drop => "drop",
            OnViolation::Fail => "fail",
            OnViolation::Warn => "warn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        description = "x"
        sql = "sql/bronze/x.sql"
        [sources.raw]
        kind = "mongo_export"
        path = "landing/x.json"
        columns = { _id = "string", n = "int64" }
        [sink]
        kind = "delta"
        table = "bronze.x"
        partition_by = ["event_date"]
        mode = "replace_partitions"
        [[expectations]]
        name = "id_present"
        condition = "id IS NOT NULL"
        on_violation = "drop"
    "#;

    #[test]
    fn parses_a_complete_pipeline_file() {
        let file: PipelineFile = toml::from_str(EXAMPLE).unwrap();
        assert!(matches!(file.sources["raw"], SourceDef::MongoExport(_)));
        assert_eq!(file.sources["raw"].columns().len(), 2);
        assert_eq!(file.sink.declared_mode(), Some(WriteMode::ReplacePartitions));
        assert_eq!(file.expectations[0].on_violation, OnViolation::Drop);
        let older = EXAMPLE.replace("mode = \"replace_partitions\"", "write = \"overwrite\"");
        let file: PipelineFile = toml::from_str(&older).unwrap();
        assert_eq!(
            file.sink.mode(),
            WriteMode::Overwrite,
            "`write` is the older name of `mode`"
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_rejected() {
        let typo = EXAMPLE.replace("partition_by", "partition_on");
        assert!(toml::from_str::<PipelineFile>(&typo).is_err());
        let kind = EXAMPLE.replace("\"mongo_export\"", "\"oracle\"");
        let err = toml::from_str::<PipelineFile>(&kind).unwrap_err().to_string();
        assert!(err.contains("oracle"), "{err}");
    }

    #[test]
    fn generator_names_parse_and_list_the_known_ones() {
        assert_eq!(GeneratorKind::parse("chat"), Ok(GeneratorKind::Chat));
        let err = GeneratorKind::parse("nope").unwrap_err();
        assert!(err.contains("chat, clickstream, transactions, interactions"), "{err}");
    }
}
