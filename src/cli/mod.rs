//! Command-line arguments, as clap derive definitions only: the doc comments are the `--help`
//! text. Turning these raw arguments into typed settings is the job of [`crate::config`].

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod bench;
mod run;
mod servers;

pub use bench::{BenchArgs, BenchPart, CommitTable};
pub use run::{RunArgs, StreamRunArgs};
pub use servers::ServerArgs;

/// quickchat-etl: SQL-first streaming and batch analytics on Arrow, DataFusion and Delta Lake.
///
/// Pipelines are TOML files under `pipelines/` naming their sources, SQL files under `sql/`,
/// sink tables and data-quality expectations. Exit codes: 0 success, 1 internal error,
/// 2 usage error, 3 configuration error, 4 job failed, 5 data-quality failure, 6 state error,
/// 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "quickchat-etl", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Lake root: a local folder or s3://bucket/prefix [default: ./lake]
    #[arg(long, global = true, env = "DATA_LAKE_PATH", value_name = "URL")]
    pub lake: Option<String>,

    /// Configuration file (TOML) with lake, mysql, kafka, s3 and vars settings.
    /// Flags override environment variables, which override this file.
    #[arg(long, global = true, env = "QUICKCHAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Folder holding `pipelines/` and `sql/` [default: ./ when it has a pipelines/ folder,
    /// else the pipelines built into this binary]
    #[arg(long, global = true, env = "QUICKCHAT_PROJECT", value_name = "DIR")]
    pub project: Option<PathBuf>,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "QUICKCHAT_LOG", default_value = "info")]
    pub log_level: String,

    /// Memory all queries of the process may use, e.g. `4GiB` or `512MB`; past it sorts, joins
    /// and aggregations spill to --spill-dir, and a query that cannot fit even so fails (exit
    /// 4) [default: [engine] memory_limit, else 3/4 of the machine's memory].
    #[arg(long, global = true, env = "QUICKCHAT_MEMORY_LIMIT", value_name = "BYTES", value_parser = parse_bytes_arg)]
    pub memory_limit: Option<u64>,

    /// Folder for spill files [default: [engine] spill_dir, else the system's temporary folder].
    #[arg(long, global = true, env = "QUICKCHAT_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,

    /// How long a server away (Kafka, MySQL, S3) or a full disk is retried, with backoff,
    /// before the run fails (exit 4; a restart resumes exactly once), e.g. `30s`, `10m`
    /// [default: [engine] retry_for, else 2m].
    #[arg(long, global = true, env = "QUICKCHAT_RETRY_FOR", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub retry_for: Option<std::time::Duration>,

    /// The servers: MySQL, MongoDB, Elasticsearch, Kafka, S3.
    #[command(flatten)]
    pub servers: ServerArgs,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a sample data set, run the full pipeline into the lake and summarise the gold
    /// tables. Needs no server.
    Demo(DemoArgs),

    /// Run a job or a group of jobs (bronze-all, silver-all, gold-all, full-pipeline).
    Run(RunArgs),

    /// List every job with its layer, sources, sink, dependencies and SQL file.
    List(ListArgs),

    /// Parse every pipeline file and plan every SQL file against the declared schemas,
    /// reporting all problems at once.
    Validate,

    /// Run SQL against the lake: an interactive shell, or `-e`/`-f` for scripts.
    Sql(SqlArgs),

    /// Serve the project's dashboards (dashboards/*.toml) over the lake's tables in a browser:
    /// charts, KPIs, top-N and tables, refreshing themselves. Read-only.
    Serve(ServeArgs),

    /// Write the sample QuickChat data set (MongoDB exports and a MySQL users export), or
    /// event files for a streaming pipeline (--stream).
    Generate(GenerateArgs),

    /// Send generated events (chat, clickstream, transactions, interactions) to a Kafka topic
    /// at a steady rate, retrying with backoff while the broker is away.
    Produce(ProduceArgs),

    /// Show a streaming pipeline's checkpoints, remove old ones, or reset them.
    Checkpoints(CheckpointsArgs),

    /// Keep the lake's Delta tables healthy: compact (or Z-order) small files, VACUUM files no
    /// retained version needs, write a log checkpoint, expire old log entries. With no
    /// operation flag, all four. Safe while jobs and streams run.
    Maintain(MaintainArgs),

    /// Measure clickstream-analytics: events/s, micro-batch latency and peak memory from files
    /// and from Kafka (beside a bare consumer's rate), freshness in update mode, and state
    /// memory over a longer run.
    Bench(BenchArgs),
}

/// Record encodings `produce` can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFormat {
    /// One JSON object per record, timestamps ISO-8601.
    Json,
    /// The Protobuf message of proto/chat.proto (chat only).
    Protobuf,
}

/// Arguments of `produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Event stream: chat, clickstream, transactions or interactions.
    pub stream: String,

    /// Topic [default: the stream's topic in the shipped pipelines: chat-stream, clickstream,
    /// transactions, interactions]. Created with --partitions when missing.
    #[arg(long)]
    pub topic: Option<String>,

    /// Events per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// Events per batch: each batch is sent and acknowledged before the next.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,

    /// Stop after this many events.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,

    /// Stop after this long (e.g. 30s, 10m); without --count or --duration, run until Ctrl-C.
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<std::time::Duration>,

    /// Record encoding [default: protobuf for chat, json for the others].
    #[arg(long, value_enum)]
    pub format: Option<EventFormat>,

    /// Random seed: the same seed and --first give the same events (ids included)
    /// [default: from the clock, printed].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Number of the first event (to continue a stream of the same seed).
    #[arg(long, default_value_t = 0)]
    pub first: u64,

    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
}

/// Arguments of `checkpoints`.
#[derive(Debug, Args)]
pub struct CheckpointsArgs {
    /// Streaming pipeline.
    pub pipeline: String,

    /// Remove snapshots older than the --keep latest, and the offset and commit logs only they
    /// needed. Safe while the pipeline runs: what a restart needs is kept.
    #[arg(long)]
    pub cleanup: bool,

    /// With --cleanup: snapshots to keep.
    #[arg(long, default_value_t = 3, requires = "cleanup")]
    pub keep: usize,

    /// Delete the checkpoints (stop the pipeline first): the next run starts over, from the
    /// starting offsets, and writes every result again.
    #[arg(long, conflicts_with = "cleanup")]
    pub reset: bool,
}

/// Arguments of `maintain`.
#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// `all`, a layer (`bronze`, `silver`, `gold`, `meta`) or one `<layer>.<table>`.
    #[arg(default_value = "all")]
    pub target: String,

    /// Compact small files into files of the table's target size (OPTIMIZE); Z-order instead
    /// where the table's sink declares `zorder_by`.
    #[arg(long)]
    pub optimize: bool,

    /// With optimize: Z-order by these columns (comma-separated) instead of what the pipeline
    /// file declares.
    #[arg(long, value_delimiter = ',')]
    pub zorder_by: Option<Vec<String>>,

    /// Delete data files that no version within --retain references (VACUUM).
    #[arg(long)]
    pub vacuum: bool,

    /// With vacuum: how far back versions stay readable (time travel).
    #[arg(long, default_value = "168h", value_parser = parse_duration_arg)]
    pub retain: std::time::Duration,

    /// With vacuum: allow a --retain under the table's delta.deletedFileRetentionDuration.
    #[arg(long)]
    pub force: bool,

    /// Write a Delta log checkpoint at the current version.
    #[arg(long)]
    pub checkpoint: bool,

    /// Delete log entries older than delta.logRetentionDuration (30 days unless set) that a
    /// checkpoint has made unneeded.
    #[arg(long)]
    pub expire_logs: bool,

    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The sample data set's shape; the same seed always gives the same files.
#[derive(Debug, Clone, Args)]
pub struct DataSetArgs {
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Number of users.
    #[arg(long, default_value_t = 300)]
    pub users: u32,

    /// Number of days of activity.
    #[arg(long, default_value_t = 30)]
    pub days: u32,

    /// First day of activity (UTC).
    #[arg(long, default_value = "2024-01-01", value_name = "YYYY-MM-DD")]
    pub start_date: NaiveDate,
}

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub data: DataSetArgs,
}

/// Parses a size flag such as `512MB`, `4GiB` or `1000000`.
pub fn parse_bytes_arg(text: &str) -> Result<u64, String> {
    crate::config::parse_bytes(text)
}

/// Parses a duration flag such as `30s`, `10m` or `1h`.
pub fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::config::stream::parse_duration(text)
}

/// Output formats for `list` and `sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned table for people.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON lines, one object per row.
    Json,
}

/// Arguments of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Arguments of `sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Execute these statements and exit (repeatable).
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    pub execute: Vec<String>,

    /// Execute the statements in this file and exit (repeatable).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,

    /// Also query a running pipeline's state: the open windows, sessions, running groups and
    /// join buffers its live UI serves (e.g. http://127.0.0.1:4040), as `live.<table>`.
    #[arg(long, value_name = "URL")]
    pub attach: Option<String>,

    /// Result format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here (another interface than loopback only when asked) [default: 127.0.0.1:8501,
    /// or the next free port].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output folder or URL (s3://...); receives mongo/*.json and mysql/users.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub data: DataSetArgs,

    /// Also (re)create the `users` table in the configured MySQL database (--mysql-url,
    /// MYSQL_URL or the config file) and load the users into it.
    #[arg(long, conflicts_with = "stream")]
    pub load_mysql: bool,

    /// Also replace the `messages`, `conversations` and `calls` collections of the configured
    /// MongoDB database (--mongodb-uri, MONGODB_URI or the config file; --mongodb-database) with
    /// the generated documents.
    #[arg(long, conflicts_with = "stream")]
    pub load_mongodb: bool,

    /// Instead of the QuickChat data set: event files for a streaming pipeline, one
    /// `<topic>.jsonl` per source, the input of `run <pipeline> --from-files DIR`.
    #[arg(long, value_name = "PIPELINE")]
    pub stream: Option<String>,

    /// With --stream: events in all (shared by the sources).
    #[arg(long, default_value_t = 100_000, requires = "stream")]
    pub events: u64,

    /// With --stream: events per second of event time.
    #[arg(long, default_value_t = 100.0, requires = "stream")]
    pub events_per_second: f64,

    /// With --stream: event time of the first event (RFC 3339).
    #[arg(long, default_value = "2024-01-01T00:00:00Z", requires = "stream")]
    pub start_time: chrono::DateTime<chrono::Utc>,
}
