//! Arguments of `run`: the jobs or pipeline, the dates, how a streaming pipeline is fed, the
//! live UI, and where a batch run's final metrics go.

use chrono::NaiveDate;
use clap::Args;

use super::parse_duration_arg;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job name (e.g. silver-messages), group (bronze-all, silver-all, gold-all,
    /// full-pipeline) or streaming pipeline (e.g. clickstream-analytics).
    pub target: String,

    /// Process one day (UTC); replaces exactly that day's partition of the sink.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["from", "to"])]
    pub date: Option<NaiveDate>,

    /// First day of a range (inclusive); needs --to.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "to")]
    pub from: Option<NaiveDate>,

    /// Last day of a range (inclusive); needs --from.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "from")]
    pub to: Option<NaiveDate>,

    /// Also run every job the target depends on, first.
    #[arg(long)]
    pub upstream: bool,

    /// Plan the jobs and print what would run and be replaced; read no data, write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Batch jobs: when the run ends, push its metrics (rows read, written, quarantined,
    /// duration and outcome per job) to this Prometheus Pushgateway [default: `[metrics] push_url`].
    #[arg(long, value_name = "URL")]
    pub metrics_push: Option<url::Url>,

    /// Batch jobs: when the run ends, write the same metrics to PATH in Prometheus's text
    /// format, replaced atomically (node exporter's textfile collector reads `*.prom` files).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub stream: StreamRunArgs,
}

/// How a streaming pipeline is fed and when it stops (streaming pipelines only). Without
/// --from-files or --from-generator it reads Kafka until Ctrl-C/SIGTERM.
#[derive(Debug, Clone, Args)]
pub struct StreamRunArgs {
    /// Read DIR/<topic>.jsonl for each source topic instead of Kafka (JSON lines, ISO-8601
    /// timestamps), then close every window and exit: the bounded batch of the same pipeline.
    #[arg(long, value_name = "DIR", conflicts_with = "from_generator")]
    pub from_files: Option<String>,

    /// Feed the pipeline from the built-in event generator instead of Kafka (no broker needed).
    #[arg(long)]
    pub from_generator: bool,

    /// With --from-generator: events per second, all sources together.
    #[arg(long, default_value_t = 1000.0, requires = "from_generator")]
    pub rate: f64,

    /// With --from-generator: stop producing after this long (e.g. 30s, 10m), close every
    /// window and exit; without it, run until Ctrl-C.
    #[arg(long, value_name = "DURATION", requires = "from_generator", value_parser = parse_duration_arg)]
    pub duration: Option<std::time::Duration>,

    /// With --from-generator: random seed of the generated events.
    #[arg(long, default_value_t = 42, requires = "from_generator")]
    pub seed: u64,

    /// Process what Kafka holds now, commit and exit (for scheduled incremental runs).
    #[arg(long, conflicts_with_all = ["from_files", "from_generator"])]
    pub until_caught_up: bool,

    /// Process at most N micro-batches, then commit, save the state and exit; the next run goes
    /// on from there.
    #[arg(long, value_name = "N")]
    pub max_epochs: Option<u64>,

    /// Serve the live UI here while the run lasts (a stream: the page at /, /metrics, /api/...; batch
    /// jobs: /metrics and /api/status) [default: `[ui] listen`, else 127.0.0.1:4040 or the next free port].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_ui")]
    pub ui: Option<std::net::SocketAddr>,

    /// Serve no live UI.
    #[arg(long)]
    pub no_ui: bool,
}
