//! A streaming pipeline file resolved and checked: sources with their schemas, event times and
//! watermark delays, outputs with their SQL, and the settings of the micro-batch loop.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use prost_reflect::{DescriptorPool, MessageDescriptor};

use super::columns::{schema_from_columns, timestamp_type};
use super::parse_bytes;
use super::pipeline::{GeneratorKind, KafkaSourceDef, RecordFormat, SinkDef, SourceDef, WriteMode};
use super::stream::{AlertsDef, BatchLimit, KafkaDef, StreamPipelineFile, parse_duration};
use crate::catalog::TableName;
use crate::error::ConfigProblem;
use crate::project::Project;

/// The columns every stream record carries besides its own: where it came from in Kafka.
pub const KAFKA_COLUMNS: [&str; 5] = [
    "_kafka_topic",
    "_kafka_partition",
    "_kafka_offset",
    "_kafka_timestamp",
    "_kafka_key",
];

/// The Kafka metadata fields, appended to every source's declared columns.
pub fn kafka_fields() -> Vec<Field> {
    vec![
        Field::new("_kafka_topic", DataType::Utf8, false),
        Field::new("_kafka_partition", DataType::Int32, false),
        Field::new("_kafka_offset", DataType::Int64, false),
        Field::new("_kafka_timestamp", timestamp_type(), true),
        Field::new("_kafka_key", DataType::Utf8, true),
    ]
}

/// An input stream of a pipeline: a Kafka topic with its declared columns.
#[derive(Debug, Clone)]
pub struct StreamSource {
    /// The table name the SQL uses.
    pub name: String,
    /// The Kafka topic (the file `<topic>.jsonl` with `--from-files`).
    pub topic: String,
    /// How Kafka record values are encoded (files are always JSON lines).
    pub format: RecordFormat,
    /// For Protobuf sources: the message type, checked to hold every declared column.
    pub protobuf: Option<MessageDescriptor>,
    /// The event-time column's name.
    pub event_time_column: String,
    /// Index of the event-time column in `schema`.
    pub event_time: usize,
    /// Index of the key column in `schema`, when records are de-duplicated.
    pub key: Option<usize>,
    /// How far the watermark trails the latest event time.
    pub watermark_delay: Duration,
    /// How long keys are remembered for de-duplication.
    pub dedup_within: Duration,
    /// Where late records go.
    pub late_table: TableName,
    /// The built-in event stream for `--from-generator` and `produce`.
    pub generator: Option<GeneratorKind>,
    /// The declared columns.
    pub value_schema: SchemaRef,
    /// The declared columns followed by the Kafka metadata columns: the source table's schema.
    pub schema: SchemaRef,
}

/// One query of a pipeline.
#[derive(Debug, Clone)]
pub struct StreamOutput {
    /// Its name: other outputs may read its rows under it.
    pub name: String,
    /// The SQL file, relative to the project folder.
    pub sql_path: String,
    /// The SQL text.
    pub sql: String,
    /// Where its rows go.
    pub sinks: Vec<SinkDef>,
}

/// A streaming pipeline.
#[derive(Debug, Clone)]
pub struct StreamPipeline {
    /// Its name (the pipeline file name without `.toml`).
    pub name: String,
    /// What it computes.
    pub description: String,
    /// The pipeline file, for messages.
    pub pipeline_path: String,
    /// Most records and bytes per micro-batch.
    pub batch_limit: BatchLimit,
    /// Larger records are quarantined.
    pub max_record_bytes: usize,
    /// Most rows of one operator's state.
    pub max_state_rows: usize,
    /// Longest wait for a micro-batch.
    pub interval: Duration,
    /// How often the state is saved whole.
    pub snapshot_interval: Duration,
    /// Snapshots kept while running (at least 1).
    pub keep_snapshots: usize,
    /// Kafka settings.
    pub kafka: KafkaDef,
    /// Inputs, in file order.
    pub sources: Vec<StreamSource>,
    /// Queries, in file order (an output may read the outputs before it).
    pub outputs: Vec<StreamOutput>,
    /// Alert rules.
    pub alerts: Option<AlertsDef>,
}

impl StreamPipeline {
    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&StreamSource> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Every sink of the pipeline with the output it belongs to (`alerts` for the alert sinks).
    pub fn sinks(&self) -> impl Iterator<Item = (&str, &SinkDef)> {
        self.outputs
            .iter()
            .flat_map(|o| o.sinks.iter().map(move |s| (o.name.as_str(), s)))
            .chain(self.alerts.iter().flat_map(|a| a.sinks.iter().map(|s| ("alerts", s))))
    }

    /// Every lake table the pipeline writes (sinks and late tables).
    pub fn lake_tables(&self) -> Vec<TableName> {
        let mut tables: Vec<TableName> = self.sources.iter().map(|s| s.late_table.clone()).collect();
        for (_, sink) in self.sinks() {
            if let SinkDef::Delta(delta) = sink {
                tables.extend(TableName::parse(&delta.table).ok());
            }
        }
        tables
    }

    /// Resolves and checks a parsed pipeline file; lists every problem found.
    pub fn resolve(
        name: &str,
        pipeline_path: &str,
        file: StreamPipelineFile,
        project: &Project,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem = |message: String| problems.push(ConfigProblem::in_file(pipeline_path, message));
        let duration = |field: &str, text: &str, problem: &mut dyn FnMut(String)| {
            parse_duration(text)
                .map_err(|e| problem(format!("{field}: {e}")))
                .unwrap_or_default()
        };

        let interval = duration("trigger.interval", &file.trigger.interval, &mut problem);
        let snapshot_interval = duration("state.snapshot_interval", &file.state.snapshot_interval, &mut problem);
        if file.trigger.max_records == 0 {
            problem("trigger.max_records must be at least 1".into());
        }
        if file.state.keep_snapshots == 0 {
            problem("state.keep_snapshots must be at least 1 (a restart resumes from the latest snapshot)".into());
        }
        let bytes = |field: &str, text: &str, problem: &mut dyn FnMut(String)| match parse_bytes(text) {
            Ok(0) => {
                problem(format!("{field} must be more than 0"));
                0
            }
            Ok(bytes) => bytes as usize,
            Err(e) => {
                problem(format!("{field}: {e}"));
                0
            }
        };
        let max_record_bytes = bytes("limits.max_record_bytes", &file.limits.max_record_bytes, &mut problem);
        let max_batch_bytes = bytes("limits.max_batch_bytes", &file.limits.max_batch_bytes, &mut problem);

        let mut sources = Vec::new();
        for (source_name, def) in &file.sources {
            match def {
                SourceDef::Kafka(kafka) => {
                    if let Some(source) = resolve_source(source_name, kafka, project, &mut problem) {
                        sources.push(source);
                    }
                }
                other => problem(format!(
                    "sources.{source_name}: a streaming pipeline reads `kind = \"kafka\"` sources; `{}` sources \
                     belong in a batch job",
                    other.kind()
                )),
            }
        }
        if file.sources.is_empty() {
            problem("a streaming pipeline needs at least one source".into());
        }

        let mut outputs = Vec::new();
        for (output_name, def) in &file.outputs {
            if file.sources.contains_key(output_name) {
                problem(format!("outputs.{output_name}: a source has the same name"));
            }
            for sink in &def.sinks {
                check_sink(&format!("outputs.{output_name}"), sink, &mut problem);
            }
            match project.read(&def.sql) {
                Ok(sql) => outputs.push(StreamOutput {
                    name: output_name.clone(),
                    sql_path: def.sql.clone(),
                    sql,
                    sinks: def.sinks.clone(),
                }),
                Err(e) => problem(format!("outputs.{output_name}.sql: {e}")),
            }
        }
        if let Some(alerts) = &file.alerts {
            for sink in &alerts.sinks {
                check_sink("alerts", sink, &mut problem);
            }
            for rule in &alerts.rules {
                if !file.outputs.contains_key(&rule.output) {
                    problem(format!(
                        "alerts rule `{}`: no output named `{}`",
                        rule.name, rule.output
                    ));
                }
            }
        }

        if problems.is_empty() {
            Ok(StreamPipeline {
                name: name.to_string(),
                description: file.description,
                pipeline_path: pipeline_path.to_string(),
                batch_limit: BatchLimit {
                    records: file.trigger.max_records,
                    bytes: max_batch_bytes,
                },
                max_record_bytes,
                max_state_rows: file.limits.max_state_rows,
                interval,
                snapshot_interval,
                keep_snapshots: file.state.keep_snapshots,
                kafka: file.kafka,
                sources,
                outputs,
                alerts: file.alerts,
            })
        } else {
            Err(problems)
        }
    }
}

/// A Kafka source checked against its declared columns; `None` after reporting its problems.
fn resolve_source(
    name: &str,
    def: &KafkaSourceDef,
    project: &Project,
    problem: &mut dyn FnMut(String),
) -> Option<StreamSource> {
    let at = |field: &str| format!("sources.{name}.{field}");
    let value_schema = match schema_from_columns(&def.columns) {
        Ok(schema) => schema,
        Err(column_problems) => {
            column_problems
                .into_iter()
                .for_each(|p| problem(format!("{}: {p}", at("columns"))));
            return None;
        }
    };
    let mut fields: Vec<Field> = value_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(kafka_fields());
    let schema = Arc::new(Schema::new(fields));
    let event_time = match schema.index_of(&def.event_time) {
        Ok(i) if schema.field(i).data_type() == &timestamp_type() => i,
        Ok(_) => {
            problem(format!(
                "{}: `{}` must be a `timestamp` column",
                at("event_time"),
                def.event_time
            ));
            return None;
        }
        Err(_) => {
            problem(format!("{}: no column `{}`", at("event_time"), def.event_time));
            return None;
        }
    };
    let key = match &def.key {
        Some(key) => match schema.index_of(key) {
            Ok(i) => Some(i),
            Err(_) => {
                problem(format!("{}: no column `{key}`", at("key")));
                return None;
            }
        },
        None => None,
    };
    let watermark_delay = match parse_duration(&def.watermark) {
        Ok(delay) => delay,
        Err(e) => {
            problem(format!("{}: {e}", at("watermark")));
            return None;
        }
    };
    let dedup_within = match def.dedup_within.as_deref().map(parse_duration) {
        Some(Ok(within)) => within,
        Some(Err(e)) => {
            problem(format!("{}: {e}", at("dedup_within")));
            return None;
        }
        None => watermark_delay,
    };
    let late_table_text = def.late_table.clone().unwrap_or_else(|| format!("bronze.{name}_late"));
    let late_table = match TableName::parse(&late_table_text) {
        Ok(table) => table,
        Err(message) => {
            problem(format!("{}: {message}", at("late_table")));
            return None;
        }
    };
    let protobuf = match (def.format, &def.descriptor_set, &def.message) {
        (RecordFormat::Json, _, _) => None,
        (RecordFormat::Protobuf, Some(path), Some(message)) => {
            match protobuf_message(project, path, message, &value_schema) {
                Ok(descriptor) => Some(descriptor),
                Err(e) => {
                    problem(format!("{}: {e}", at("descriptor_set")));
                    return None;
                }
            }
        }
        (RecordFormat::Protobuf, _, _) => {
            problem(format!(
                "sources.{name}: format = \"protobuf\" needs descriptor_set and message"
            ));
            return None;
        }
    };
    Some(StreamSource {
        name: name.to_string(),
        topic: def.topic.clone(),
        format: def.format,
        protobuf,
        event_time_column: def.event_time.clone(),
        event_time,
        key,
        watermark_delay,
        dedup_within,
        late_table,
        generator: def.generator,
        value_schema,
        schema,
    })
}

/// The message `message` of the descriptor set at `path`, checked to have a field for every
/// declared column.
fn protobuf_message(
    project: &Project,
    path: &str,
    message: &str,
    columns: &SchemaRef,
) -> Result<MessageDescriptor, String> {
    let bytes = project.read_bytes(path).map_err(|e| e.to_string())?;
    let pool = DescriptorPool::decode(bytes.as_slice()).map_err(|e| format!("bad descriptor set: {e}"))?;
    let descriptor = pool.get_message_by_name(message).ok_or_else(|| {
        let known: Vec<String> = pool.all_messages().map(|m| m.full_name().to_string()).collect();
        format!("no message `{message}` in {path} (it has: {})", known.join(", "))
    })?;
    let missing: Vec<&str> = columns
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| descriptor.get_field_by_name(name).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!("message `{message}` has no field {}", missing.join(", ")));
    }
    Ok(descriptor)
}

fn check_sink(at: &str, sink: &SinkDef, problem: &mut dyn FnMut(String)) {
    let at = format!("{at}: sink {}", sink.display());
    match sink.mode() {
        WriteMode::Append | WriteMode::Update => {}
        other => problem(format!(
            "{at}: mode = \"{}\" is for batch jobs; a streaming sink appends final rows (`append`) or \
             upserts every change (`update`)",
            other.as_str()
        )),
    }
    match sink {
        SinkDef::Delta(delta) => {
            if let Err(message) = TableName::parse(&delta.table) {
                problem(format!("{at}: {message}"));
            }
        }
        SinkDef::Mysql(mysql) => {
            if mysql.table.is_empty() || !mysql.table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problem(format!("{at}: MySQL table `{}` must be a plain name", mysql.table));
            }
            if mysql.key.is_empty() {
                problem(format!("{at}: a MySQL sink needs `key` (its primary key columns)"));
            }
        }
        SinkDef::Parquet(parquet) => {
            if !parquet.partition_by.is_empty() {
                problem(format!(
                    "{at}: a streaming Parquet sink writes one file per micro-batch, unpartitioned"
                ));
            }
        }
        SinkDef::Elasticsearch(search) => {
            if let Err(message) = check_index_name(&search.index) {
                problem(format!("{at}: {message}"));
            }
            if search.bulk_max_docs == 0 || search.bulk_max_bytes == 0 {
                problem(format!("{at}: bulk_max_docs and bulk_max_bytes must be at least 1"));
            }
        }
        SinkDef::Mongodb(mongo) => {
            if let Some(message) = mongo.name_problem() {
                problem(format!("{at}: {message}"));
            }
            if !mongo.partition_by.is_empty() {
                problem(format!(
                    "{at}: partition_by is for batch jobs' replace_partitions; a streaming MongoDB sink upserts by its key"
                ));
            }
        }
        SinkDef::Kafka(_) | SinkDef::Console(_) => {}
    }
}

/// Elasticsearch's rules for index names: lowercase, none of `\ / * ? " < > | , # :` or
/// spaces, not starting with `-`, `_` or `+`, at most 255 bytes (a day suffix takes 11).
fn check_index_name(index: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("`{index}` is not an index name: {why}"));
    if index.is_empty() || index == "." || index == ".." {
        return bad("it is empty or a dot");
    }
    if index.len() > 244 {
        return bad("it is longer than 244 bytes");
    }
    if index.starts_with(['-', '_', '+']) {
        return bad("it starts with -, _ or +");
    }
    if index.chars().any(|c| c.is_uppercase()) {
        return bad("it has uppercase letters");
    }
    if let Some(c) = index.chars().find(|c| "\\/*?\"<>|,#: ".contains(*c)) {
        return bad(&format!("it has `{c}`"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Rows of a test source: `(id, ts)` pairs, `value` = id, Kafka metadata filled in.
    pub fn rows(source: &StreamSource, rows: &[(&str, i64)]) -> arrow::record_batch::RecordBatch {
        use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
        let ids = || Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef;
        let columns: Vec<ArrayRef> = source
            .schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "id" | "value" => ids(),
                "_kafka_topic" => Arc::new(StringArray::from(vec![source.topic.as_str(); rows.len()])) as ArrayRef,
                "_kafka_partition" => Arc::new(Int32Array::from(vec![0; rows.len()])),
                "_kafka_offset" => Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
                "ts" => {
                    Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1)).with_timezone("UTC"))
                }
                _ => arrow::array::new_null_array(f.data_type(), rows.len()),
            })
            .collect();
        arrow::record_batch::RecordBatch::try_new(source.schema.clone(), columns).unwrap()
    }

    /// A pipeline whose sources are [`source`]s with these names, keyed by `id`.
    pub fn pipeline(sources: &[&str]) -> StreamPipeline {
        StreamPipeline {
            name: "test".into(),
            description: String::new(),
            pipeline_path: "pipelines/test.toml".into(),
            batch_limit: BatchLimit {
                records: 1000,
                bytes: 64 << 20,
            },
            max_record_bytes: 1 << 20,
            max_state_rows: 10_000_000,
            interval: Duration::from_millis(100),
            snapshot_interval: Duration::from_secs(30),
            keep_snapshots: 3,
            kafka: KafkaDef::default(),
            sources: sources.iter().map(|name| source(name, "ts", Some("id"))).collect(),
            outputs: Vec::new(),
            alerts: None,
        }
    }

    /// An output named `name` with SQL `sql`.
    pub fn output(name: &str, sql: &str) -> StreamOutput {
        StreamOutput {
            name: name.into(),
            sql_path: format!("sql/{name}.sql"),
            sql: sql.into(),
            sinks: Vec::new(),
        }
    }

    /// A JSON source with string columns `id` and `value` and a timestamp column `ts`.
    pub fn source(name: &str, event_time: &str, key: Option<&str>) -> StreamSource {
        let mut columns = indexmap::IndexMap::new();
        columns.insert("id".to_string(), "string".to_string());
        columns.insert("value".to_string(), "string".to_string());
        columns.insert("ts".to_string(), "timestamp".to_string());
        let def = SourceDef::Kafka(KafkaSourceDef {
            topic: name.to_string(),
            format: RecordFormat::Json,
            descriptor_set: None,
            message: None,
            event_time: event_time.to_string(),
            watermark: "5 minutes".to_string(),
            key: key.map(String::from),
            dedup_within: None,
            generator: None,
            late_table: None,
            columns,
        });
        let file = StreamPipelineFile {
            description: String::new(),
            mode: crate::config::stream::StreamMode::Streaming,
            trigger: Default::default(),
            kafka: Default::default(),
            state: Default::default(),
            limits: Default::default(),
            sources: [(name.to_string(), def)].into_iter().collect(),
            outputs: Default::default(),
            alerts: None,
        };
        let project = Project::new(crate::project::ProjectLocation::BuiltIn);
        StreamPipeline::resolve("test", "test.toml", file, &project)
            .unwrap()
            .sources
            .remove(0)
    }

    #[test]
    fn every_bad_setting_is_reported_at_once_with_its_field_and_file() {
        let text = r#"
            description = "x"
            mode = "streaming"
            [trigger]
            interval = "soon"
            max_records = 0
            [state]
            keep_snapshots = 0
            [sources.clicks]
            kind = "kafka"
            topic = "clickstream"
            event_time = "ts"
            watermark = "5 minuets"
            columns = { id = "string", ts = "timestamp" }
            [sources.users]
            kind = "csv"
            path = "users.csv"
            columns = { id = "string" }
            [outputs]
        "#;
        let file: StreamPipelineFile = toml::from_str(text).unwrap();
        let project = Project::new(crate::project::ProjectLocation::BuiltIn);
        let problems = StreamPipeline::resolve("p", "pipelines/p.toml", file, &project).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 5, "{text:#?}");
        assert!(text.iter().all(|p| p.starts_with("pipelines/p.toml: ")), "{text:#?}");
        assert!(text[0].contains("trigger.interval: `soon` is not a duration") && text[0].contains("\"30s\""));
        assert!(text[1].contains("trigger.max_records must be at least 1"));
        assert!(text[2].contains("state.keep_snapshots must be at least 1"));
        assert!(text[3].contains("sources.clicks.watermark: `5 minuets` is not a duration"));
        assert!(text[4].contains("sources.users: a streaming pipeline reads `kind = \"kafka\"` sources"));
    }
}
