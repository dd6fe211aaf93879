//! Helpers of the streaming tests: a project copy whose topics and MariaDB database belong to
//! one test, generated input files with a sentinel event that closes every window, producing
//! files to Kafka, and table dumps comparable across runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use mysql_async::prelude::Queryable;
use quickchat_etl::config::Vars;
use quickchat_etl::config::stream_pipeline::{StreamPipeline, StreamSource};
use quickchat_etl::generate::streams::stream_files;
use quickchat_etl::jobs::Registry;
use quickchat_etl::kafka::ensure_topic;
use quickchat_etl::project::{Project, ProjectLocation};
use quickchat_etl::sinks::kafka::KafkaSink;
use quickchat_etl::sources::generator::json_to_protobuf;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::support::{TestLake, describe, dump_batches, required_env, unique_name};

/// Event time of the first generated event.
const START: &str = "2024-01-01T00:00:00Z";
/// An event two days later, appended to every input: it moves every watermark past every real
/// window, so a Kafka run (which never sees the input end) closes them too. Rows it makes are
/// left out of comparisons.
const SENTINEL_TIME: &str = "2024-01-03T00:00:00.000Z";

/// A copy of the project whose topics carry a suffix of this test, with `max_records` records
/// per micro-batch, plus a MariaDB database of its own.
pub struct StreamProject {
    dir: tempfile::TempDir,
    suffix: String,
    pub mysql_url: String,
    database: String,
}

impl StreamProject {
    pub async fn new(max_records: usize) -> Self {
        let dir = crate::support::project_copy();
        let suffix = unique_name("t").replace('_', "-");
        for entry in std::fs::read_dir(dir.path().join("pipelines")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if !text.contains("mode = \"streaming\"") {
                    continue;
                }
                let mut text = text.replace("max_records = 100000", &format!("max_records = {max_records}"));
                for topic in ["clickstream", "transactions", "chat-stream", "interactions", "alerts"] {
                    text = text.replace(
                        &format!("topic = \"{topic}\""),
                        &format!("topic = \"{topic}-{suffix}\""),
                    );
                }
                std::fs::write(&path, text).unwrap();
            }
        }
        let server = required_env("QUICKCHAT_TEST_MYSQL_URL");
        let database = unique_name("quickchat_stream");
        let mut admin = mysql(&server).await;
        admin.query_drop(format!("CREATE DATABASE {database}")).await.unwrap();
        let mysql_url = format!("{}/{database}", server.trim_end_matches('/'));
        Self {
            dir,
            suffix,
            mysql_url,
            database,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets the records per micro-batch of every streaming pipeline.
    pub fn set_max_records(&self, max_records: usize) {
        self.set_setting("max_records", &max_records.to_string());
    }

    /// Sets `name = value` wherever a streaming pipeline file has a line setting `name`.
    pub fn set_setting(&self, name: &str, value: &str) {
        for entry in std::fs::read_dir(self.path().join("pipelines")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<String> = text
                .lines()
                .map(|l| {
                    if l.starts_with(&format!("{name} = ")) {
                        format!("{name} = {value}")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        }
    }

    pub fn topic(&self, base: &str) -> String {
        format!("{base}-{}", self.suffix)
    }

    pub fn pipeline(&self, name: &str) -> StreamPipeline {
        let registry = Registry::load(
            &Project::new(ProjectLocation::Folder(self.path().to_path_buf())),
            &Vars::default(),
        )
        .unwrap();
        registry.stream(name).unwrap().clone()
    }

    /// Creates the pipeline's topics (and the alerts topic) with three partitions.
    pub async fn create_topics(&self, pipeline: &StreamPipeline) {
        self.create_topics_with(pipeline, 3).await;
    }

    /// [`Self::create_topics`] with `partitions` partitions each.
    pub async fn create_topics_with(&self, pipeline: &StreamPipeline, partitions: i32) {
        let brokers = brokers();
        for source in &pipeline.sources {
            ensure_topic(&brokers, &source.topic, partitions).await.unwrap();
        }
        ensure_topic(&brokers, &self.topic("alerts"), partitions).await.unwrap();
    }

    /// `quickchat-etl --project <copy> --lake <lake> <args>`, with the broker and the database.
    pub fn command(&self, lake: &TestLake, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quickchat-etl"));
        command
            .args(["--project", self.path().to_str().unwrap(), "--lake", &lake.root_arg])
            .args(args)
            .env_remove("DATA_LAKE_PATH")
            .env_remove("QUICKCHAT_PROJECT")
            .env_remove("MONGODB_URI")
            .env_remove("ELASTICSEARCH_URL")
            .env("KAFKA_BOOTSTRAP_SERVERS", brokers())
            .env("MYSQL_URL", &self.mysql_url)
            .env("QUICKCHAT_LOG", "warn");
        command
    }

    pub fn run(&self, lake: &TestLake, args: &[&str]) -> Output {
        self.command(lake, args).output().unwrap()
    }

    pub fn run_ok(&self, lake: &TestLake, args: &[&str]) -> String {
        let output = self.run(lake, args);
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A query's rows from this test's database, one line per row, sorted.
    pub async fn mysql_rows(&self, sql: &str) -> Vec<String> {
        mysql_rows_at(&self.mysql_url, sql).await
    }

    pub async fn drop_database(&self) {
        let mut admin = mysql(&required_env("QUICKCHAT_TEST_MYSQL_URL")).await;
        admin
            .query_drop(format!("DROP DATABASE {}", self.database))
            .await
            .unwrap();
    }
}

/// A query's rows from the database at `url`, one line per row, sorted.
pub async fn mysql_rows_at(url: &str, sql: &str) -> Vec<String> {
    let mut conn = mysql(url).await;
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.unwrap();
    let mut lines: Vec<String> = rows
        .into_iter()
        .map(|row| {
            (0..row.len())
                .map(|i| match row.as_ref(i).unwrap() {
                    mysql_async::Value::NULL => "NULL".to_string(),
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    other => other.as_sql(true).trim_matches('\'').to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    lines.sort();
    lines
}

pub async fn mysql(url: &str) -> mysql_async::Conn {
    mysql_async::Conn::new(mysql_async::Opts::from_url(url).unwrap())
        .await
        .unwrap()
}

pub fn brokers() -> String {
    required_env("QUICKCHAT_TEST_KAFKA_BROKERS")
}

/// The pipeline's generated events, per topic, as JSON lines.
pub fn input_files(pipeline: &StreamPipeline, events: u64, seed: u64) -> BTreeMap<String, Vec<u8>> {
    input_files_at_rate(pipeline, events, 100.0, seed)
}

/// [`input_files`] with `rate` events per second of event time.
pub fn input_files_at_rate(pipeline: &StreamPipeline, events: u64, rate: f64, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let start = chrono::DateTime::parse_from_rfc3339(START).unwrap().timestamp_millis();
    let files = stream_files(pipeline, events, rate, start, seed).unwrap();
    files.into_iter().map(|file| (file.topic, file.contents)).collect()
}

/// One sentinel event per topic.
pub fn sentinels(pipeline: &StreamPipeline) -> BTreeMap<String, Vec<u8>> {
    pipeline
        .sources
        .iter()
        .map(|source| (source.topic.clone(), format!("{}\n", sentinel(source)).into_bytes()))
        .collect()
}

/// Files followed by more lines.
pub fn concat(mut files: BTreeMap<String, Vec<u8>>, more: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    for (topic, lines) in more {
        files.entry(topic.clone()).or_default().extend_from_slice(lines);
    }
    files
}

fn sentinel(source: &StreamSource) -> String {
    let fields: Vec<String> = source
        .value_schema
        .fields()
        .iter()
        .map(|f| {
            let value = match f.data_type() {
                arrow::datatypes::DataType::Timestamp(_, _) => format!("\"{SENTINEL_TIME}\""),
                arrow::datatypes::DataType::Utf8 => "\"sentinel\"".to_string(),
                _ => "1".to_string(),
            };
            format!("\"{}\":{value}", f.name())
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Writes the files into a folder for `--from-files`.
pub fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (topic, contents) in files {
        std::fs::write(dir.join(format!("{topic}.jsonl")), contents).unwrap();
    }
}

/// Sends every line of the files to its topic on the test broker (Protobuf-encoded for Protobuf
/// sources).
pub async fn produce_files(pipeline: &StreamPipeline, files: &BTreeMap<String, Vec<u8>>) -> u64 {
    produce_files_to(&brokers(), pipeline, files).await
}

/// [`produce_files`] to other brokers (librdkafka's mock cluster).
pub async fn produce_files_to(brokers: &str, pipeline: &StreamPipeline, files: &BTreeMap<String, Vec<u8>>) -> u64 {
    let sink = KafkaSink::connect(brokers).unwrap();
    let mut sent = 0;
    for (topic, contents) in files {
        let source = pipeline.sources.iter().find(|s| &s.topic == topic).unwrap();
        let protobuf = source.protobuf.clone();
        let records: Vec<_> = contents
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| {
                let value = match &protobuf {
                    Some(descriptor) => json_to_protobuf(descriptor, line),
                    None => line.to_vec(),
                };
                (None, value)
            })
            .collect();
        for chunk in records.chunks(5000) {
            sent += sink.send(topic, chunk.to_vec()).await.unwrap();
        }
    }
    sent
}

/// librdkafka's mock cluster of `brokers` brokers holding the pipeline's topics (3 partitions,
/// a replica on every broker) with `files` sent to them: the cluster, its bootstrap address and
/// the records sent.
pub async fn mock_cluster_with(
    pipeline: &StreamPipeline,
    brokers: i32,
    files: &BTreeMap<String, Vec<u8>>,
) -> (MockCluster<'static, DefaultProducerContext>, String, u64) {
    let cluster = MockCluster::new(brokers).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    for source in &pipeline.sources {
        cluster.create_topic(&source.topic, 3, brokers).unwrap();
    }
    let sent = produce_files_to(&bootstrap, pipeline, files).await;
    (cluster, bootstrap, sent)
}

/// Every table of the lake, dumped without Kafka metadata, sentinel rows, or what differs by
/// design between runs (alert wall-clock times and the row values at the moment an alert rose,
/// where in which topic a quarantined record was).
pub async fn stream_tables(lake: &TestLake) -> BTreeMap<String, String> {
    let ctx = quickchat_etl::repl::exec::lake_session(&lake.lake).await.unwrap();
    let mut dumps = BTreeMap::new();
    for table in lake.lake.list_tables().await.unwrap() {
        let name = table.to_string();
        let schema = ctx.table(name.as_str()).await.unwrap().schema().as_arrow().clone();
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| !c.starts_with("_kafka_"))
            .filter(|c| name != "gold.alerts" || c == "rule" || c == "alert_key")
            .filter(|c| name != "meta.quarantine" || ["source", "rule", "reason", "record"].contains(&c.as_str()))
            .map(|c| format!("\"{c}\""))
            .collect();
        let sql = format!("SELECT {} FROM {name}", columns.join(", "));
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let dump = dump_batches(&batches, &lake.root_arg);
        let kept: Vec<&str> = dump
            .lines()
            .filter(|l| !l.contains("sentinel") && !l.contains("2024-01-03"))
            .collect();
        dumps.insert(name, kept.join("\n"));
    }
    dumps
}

pub fn assert_same(expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>, context: &str) {
    crate::support::assert_same_tables(expected, actual, context);
}

/// Runs `sql` in the lake and returns its rows dumped.
pub async fn query(lake: &TestLake, sql: &str) -> String {
    lake.query(sql).await
}
