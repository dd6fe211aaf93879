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

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;

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

/// Where rows go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkDef {
    /// A Delta table in the lake, readable by later jobs as `<layer>.<table>`.
    Delta(DeltaSinkDef),
    /// Parquet files (an export for consumers without a Delta reader).
    Parquet(ParquetSinkDef),
    /// A MySQL table (created when missing), upserted by `key`. Streaming.
    Mysql(MysqlSinkDef),
    /// A Kafka topic, one JSON object per row. Streaming.
    Kafka(KafkaSinkDef),
    /// An Elasticsearch or OpenSearch index, one document per row, its id made of `key`.
    /// Streaming.
    Elasticsearch(ElasticsearchSinkDef),
    /// A MongoDB collection, one document per row upserted by its `_id` made of `key`.
    /// Streaming.
    Mongodb(MongodbSinkDef),
    /// Standard output, as a table. Streaming.
    Console(ConsoleSinkDef),
}

/// Micro-batch commits between two compactions of a streaming Delta sink, by default: as
/// often as deltalake writes a log checkpoint (`delta.checkpointInterval`, 100).
pub const DEFAULT_COMPACT_EVERY: u64 = 100;

fn default_compact_every() -> u64 {
    DEFAULT_COMPACT_EVERY
}

/// Table properties a streaming Delta sink creates its table with, unless its
/// `table_properties` say otherwise. A table committed every second gets 86,400 log entries a
/// day, and a compaction every 100 commits leaves a hundred removed files whose tombstones every
/// log checkpoint carries until they expire: a day of each bounds both (Delta's defaults, 30
/// days of log and 7 of tombstones, would make every checkpoint of a busy table carry ~600,000
/// tombstones). Time travel and VACUUM's safety margin on these tables are a day.
pub const STREAMING_TABLE_PROPERTIES: [(&str, &str); 2] = [
    ("delta.logRetentionDuration", "interval 1 days"),
    ("delta.deletedFileRetentionDuration", "interval 1 days"),
];

/// `table_properties` of a streaming sink with [`STREAMING_TABLE_PROPERTIES`] under them.
pub fn streaming_table_properties(given: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut properties: BTreeMap<String, String> = STREAMING_TABLE_PROPERTIES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    properties.extend(given.clone());
    properties
}

/// A Delta table sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSinkDef {
    /// `<layer>.<table>`, e.g. `silver.messages`; stored at `<lake>/<layer>/<table>`.
    pub table: String,
    /// Partition columns; with `mode = "replace_partitions"` the first must be a date.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// How rows are written (`write` is accepted as the older name).
    #[serde(default, alias = "write")]
    pub mode: Option<WriteMode>,
    /// Columns identifying a row, for `update` mode (the merge condition).
    #[serde(default)]
    pub key: Vec<String>,
    /// Streaming: compacts the table's small files (Delta OPTIMIZE, bin-packing) after every
    /// this many micro-batch commits of a run; 0 never does. Each micro-batch adds a file per
    /// partition, and every commit's cost grows with the files a table holds, so the default
    /// ([`DEFAULT_COMPACT_EVERY`]) keeps them few.
    #[serde(default = "default_compact_every")]
    pub compact_every: u64,
    /// Columns `maintain` Z-orders the table by (rows near in them share files, so filters on
    /// them skip more files); empty: `maintain` bin-packs.
    #[serde(default)]
    pub zorder_by: Vec<String>,
    /// Delta table properties the table is created with (`delta.logRetentionDuration`,
    /// `delta.targetFileSize`, ...); a streaming sink starts from [`STREAMING_TABLE_PROPERTIES`].
    #[serde(default)]
    pub table_properties: BTreeMap<String, String>,
}

/// A Parquet files sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkDef {
    /// Output folder: relative to the lake root, an absolute path, or a URL.
    pub path: String,
    /// Partition columns (Hive-style `col=value/` folders); with `replace_partitions` the first
    /// must be a date.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// How rows are written (`write` is accepted as the older name).
    #[serde(default, alias = "write")]
    pub mode: Option<WriteMode>,
}

/// A MySQL table sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSinkDef {
    /// Table name.
    pub table: String,
    /// Primary-key columns.
    pub key: Vec<String>,
    /// `append` (final windows) or `update` (every change).
    #[serde(default)]
    pub mode: Option<WriteMode>,
}

/// A Kafka topic sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkDef {
    /// Topic.
    pub topic: String,
    /// Columns whose values make the record key.
    #[serde(default)]
    pub key: Vec<String>,
    /// `append` (final windows) or `update` (every change).
    #[serde(default)]
    pub mode: Option<WriteMode>,
}

/// Documents in one bulk request of an Elasticsearch sink, by default.
pub const DEFAULT_BULK_MAX_DOCS: usize = 1_000;
/// Bytes in one bulk request of an Elasticsearch sink, by default (Elasticsearch's
/// `http.max_content_length` is 100 MB; 5 MB requests are what its guide recommends starting with).
pub const DEFAULT_BULK_MAX_BYTES: usize = 5 * 1024 * 1024;

fn default_bulk_max_docs() -> usize {
    DEFAULT_BULK_MAX_DOCS
}

fn default_bulk_max_bytes() -> usize {
    DEFAULT_BULK_MAX_BYTES
}

/// An Elasticsearch (or OpenSearch) index sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkDef {
    /// The index (lowercase; created by the server on first write, with its dynamic mapping or
    /// an index template the operator set up).
    pub index: String,
    /// Columns whose values, joined with `|`, make each document's `_id`: a row written again
    /// (a replay, an update) overwrites its document. Without a key the id is the output, the
    /// epoch and the row's place in it.
    #[serde(default)]
    pub key: Vec<String>,
    /// `append` (final windows) or `update` (every change).
    #[serde(default)]
    pub mode: Option<WriteMode>,
    /// A timestamp or date column: each row goes to the index `<index>-YYYY.MM.DD` of its UTC
    /// day (daily indices, as Logstash names them); a row with no value goes to `<index>`.
    #[serde(default)]
    pub index_by_day: Option<String>,
    /// Most documents in one `_bulk` request.
    #[serde(default = "default_bulk_max_docs")]
    pub bulk_max_docs: usize,
    /// Most bytes in one `_bulk` request (a larger document goes alone).
    #[serde(default = "default_bulk_max_bytes")]
    pub bulk_max_bytes: usize,
    /// Written only when a server is configured (`ELASTICSEARCH_URL`); skipped, with a
    /// warning, otherwise. A sink that is not optional fails a Kafka run without a server.
    #[serde(default)]
    pub optional: bool,
}

/// A MongoDB collection sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbSinkDef {
    /// The collection (created by the server on first write).
    pub collection: String,
    /// The database [default: `MONGODB_DATABASE`].
    #[serde(default)]
    pub database: Option<String>,
    /// Columns whose values, joined with `|`, make each document's `_id` (see
    /// [`ElasticsearchSinkDef::key`]).
    #[serde(default)]
    pub key: Vec<String>,
    /// `append` (final windows) or `update` (every change).
    #[serde(default)]
    pub mode: Option<WriteMode>,
    /// Written only when a server is configured (`MONGODB_URI`); skipped, with a warning,
    /// otherwise.
    #[serde(default)]
    pub optional: bool,
}

/// Standard output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkDef {
    /// `append` (final windows) or `update` (every change).
    #[serde(default)]
    pub mode: Option<WriteMode>,
}

impl SinkDef {
    /// The mode written in the file, if any.
    pub fn declared_mode(&self) -> Option<WriteMode> {
        match self {
            SinkDef::Delta(d) => d.mode,
            SinkDef::Parquet(d) => d.mode,
            SinkDef::Mysql(d) => d.mode,
            SinkDef::Kafka(d) => d.mode,
            SinkDef::Elasticsearch(d) => d.mode,
            SinkDef::Mongodb(d) => d.mode,
            SinkDef::Console(d) => d.mode,
        }
    }

    /// How the sink writes; a streaming sink without a mode appends final rows (batch sinks
    /// must say, which the registry checks).
    pub fn mode(&self) -> WriteMode {
        self.declared_mode().unwrap_or(WriteMode::Append)
    }

    /// Partition columns of the sink.
    pub fn partition_by(&self) -> &[String] {
        match self {
            SinkDef::Delta(d) => &d.partition_by,
            SinkDef::Parquet(d) => &d.partition_by,
            _ => &[],
        }
    }

    /// The `kind` tag, as written in pipeline files.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkDef::Delta(_) => "delta",
            SinkDef::Parquet(_) => "parquet",
            SinkDef::Mysql(_) => "mysql",
            SinkDef::Kafka(_) => "kafka",
            SinkDef::Elasticsearch(_) => "elasticsearch",
            SinkDef::Mongodb(_) => "mongodb",
            SinkDef::Console(_) => "console",
        }
    }

    /// The sink as shown to users.
    pub fn display(&self) -> String {
        match self {
            SinkDef::Delta(d) => d.table.clone(),
            SinkDef::Mysql(d) => format!("mysql:{}", d.table),
            SinkDef::Parquet(d) => format!("parquet:{}", d.path),
            SinkDef::Kafka(d) => format!("kafka:{}", d.topic),
            SinkDef::Elasticsearch(d) => format!("elasticsearch:{}", d.index),
            SinkDef::Mongodb(d) => match &d.database {
                Some(database) => format!("mongodb:{database}.{}", d.collection),
                None => format!("mongodb:{}", d.collection),
            },
            SinkDef::Console(_) => "console".to_string(),
        }
    }

    /// Whether the sink is skipped when its server is not configured (see
    /// [`ElasticsearchSinkDef::optional`]).
    pub fn optional(&self) -> bool {
        match self {
            SinkDef::Elasticsearch(d) => d.optional,
            SinkDef::Mongodb(d) => d.optional,
            _ => false,
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
