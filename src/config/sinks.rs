//! The sinks of pipeline files (`[sink]` of a batch job, `[[outputs.<name>.sinks]]` and
//! `[[alerts.sinks]]` of a streaming pipeline): one [`SinkDef`] per kind, with the defaults and
//! table properties each kind starts from. Re-exported by [`super::pipeline`], whose file
//! format they are part of.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::pipeline::WriteMode;

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
    /// Streaming: `append` (final windows) or `update` (every change). Batch jobs: `overwrite`
    /// (the collection ends up holding this run's rows only), `replace_partitions` (the run's
    /// days of the `partition_by` date column are replaced) or `append` (rows are added; a row
    /// with the key of a document replaces it).
    #[serde(default)]
    pub mode: Option<WriteMode>,
    /// Batch jobs with `mode = "replace_partitions"`: the date (or timestamp) column, first,
    /// whose run days are replaced. Not for streaming outputs.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Streaming: written only when a server is configured (`MONGODB_URI`); skipped, with a
    /// warning, otherwise. Batch jobs have one sink, so theirs is never optional.
    #[serde(default)]
    pub optional: bool,
}

impl MongodbSinkDef {
    /// What is wrong with the collection's or the database's name, if anything.
    pub fn name_problem(&self) -> Option<String> {
        [Some(&self.collection), self.database.as_ref()]
            .into_iter()
            .flatten()
            .find(|n| n.is_empty() || n.contains(['$', '\0', '/', ' ']) || n.starts_with("system."))
            .map(|bad| format!("`{bad}` is not a MongoDB collection or database name"))
    }
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
            SinkDef::Mongodb(d) => &d.partition_by,
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
