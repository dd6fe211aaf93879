//! [`Telemetry`]: the Prometheus metrics of a running pipeline, derived from each micro-batch's
//! [`EpochProgress`], plus the standard process collector (memory, CPU, open files). Names
//! follow Prometheus conventions: `quickchat_` prefix, base units in the name (`_seconds`),
//! counters ending in `_total`; the process's own figures keep the standard `process_` names
//! that dashboards and alerts already know.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::latest_rows::LatestRows;
use super::live_state::LiveState;
use super::progress::{EpochProgress, RecentProgress};

/// Micro-batches `/api/progress` can return.
pub const RECENT_EPOCHS: usize = 100;

/// Bounds of the duration histograms: 5 ms to ~80 s.
fn seconds_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.005, 2.0, 15).expect("valid buckets")
}

/// The metrics of the pipelines one process runs, and their recent progress.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    records_read: IntCounterVec,
    records_late: IntCounterVec,
    records_duplicate: IntCounterVec,
    records_quarantined: IntCounterVec,
    source_offset: IntGaugeVec,
    source_lag: IntGaugeVec,
    watermark: prometheus::GaugeVec,
    event_time_lag: prometheus::GaugeVec,
    micro_batches: IntCounterVec,
    micro_batch_duration: HistogramVec,
    stage_time: CounterVec,
    rows_written: IntCounterVec,
    sink_duration: HistogramVec,
    checkpoint_duration: HistogramVec,
    last_epoch: IntGaugeVec,
    last_commit: prometheus::GaugeVec,
    state_rows: IntGaugeVec,
    state_bytes: IntGaugeVec,
    checkpoint_age: prometheus::GaugeVec,
    retries: IntCounterVec,
    /// When each pipeline last wrote its checkpoint (a micro-batch's commit).
    checkpointed: Mutex<BTreeMap<String, Instant>>,
    recent: RecentProgress,
    latest: LatestRows,
    /// Questions about the running pipeline's state, for its engine to answer.
    live: LiveState,
    /// The pipelines this process runs, known before their first micro-batch.
    watched: Vec<Watched>,
    started: (Instant, chrono::DateTime<chrono::Utc>),
}

/// A pipeline the telemetry is told of at start.
#[derive(Debug, Clone)]
struct Watched {
    name: String,
    outputs: Vec<String>,
    interval: Duration,
}

/// A pipeline counts as `waiting` (idle input, or a server away: see the retries) once it has
/// not committed for this many trigger intervals, and at least [`WAITING_AFTER_AT_LEAST`].
const WAITING_AFTER_INTERVALS: u32 = 3;
const WAITING_AFTER_AT_LEAST: Duration = Duration::from_secs(30);

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

const PIPELINE: &[&str] = &["pipeline"];
const SOURCE: &[&str] = &["pipeline", "source"];
const PARTITION: &[&str] = &["pipeline", "source", "partition"];
const SINK: &[&str] = &["pipeline", "output", "sink"];
const STAGE: &[&str] = &["pipeline", "stage"];
const OPERATOR: &[&str] = &["pipeline", "operator"];

impl Telemetry {
    /// Empty metrics, registered under their names.
    pub fn new() -> Self {
        let registry = Registry::new();
        fn add<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
            registry
                .register(Box::new(metric.clone()))
                .expect("names registered once");
            metric
        }
        let int_counter = |name: &str, help: &str, labels: &[&str]| {
            add(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            add(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            add(
                &registry,
                prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(seconds_buckets());
            add(&registry, HistogramVec::new(opts, labels).expect("valid metric"))
        };
        let telemetry = Self {
            records_read: int_counter("quickchat_records_read_total", "Records read from a source", SOURCE),
            records_late: int_counter(
                "quickchat_records_late_total",
                "Records behind their source's watermark, written to its late table",
                SOURCE,
            ),
            records_duplicate: int_counter(
                "quickchat_records_duplicate_total",
                "Records dropped as repeats of a key already seen",
                SOURCE,
            ),
            records_quarantined: int_counter(
                "quickchat_records_quarantined_total",
                "Records written to meta.quarantine with the reason they were refused",
                SOURCE,
            ),
            source_offset: int_gauge(
                "quickchat_source_offset",
                "The next offset a source partition reads from (Kafka: the consumer position)",
                PARTITION,
            ),
            source_lag: int_gauge(
                "quickchat_source_lag_records",
                "Records a source partition holds that the pipeline has not read yet (Kafka: the \
                 consumer lag, high watermark minus position)",
                PARTITION,
            ),
            watermark: gauge(
                "quickchat_watermark_timestamp_seconds",
                "A source's event-time watermark, as a Unix time",
                SOURCE,
            ),
            event_time_lag: gauge(
                "quickchat_event_time_lag_seconds",
                "How far a source's watermark is behind the wall clock",
                SOURCE,
            ),
            micro_batches: int_counter("quickchat_micro_batches_total", "Micro-batches committed", PIPELINE),
            micro_batch_duration: histogram(
                "quickchat_micro_batch_duration_seconds",
                "Wall time of a micro-batch, read to commit",
                PIPELINE,
            ),
            stage_time: add(
                &registry,
                CounterVec::new(
                    Opts::new(
                        "quickchat_stage_seconds_total",
                        "Wall time spent per stage (read, decode, query, sink, checkpoint ...)",
                    ),
                    STAGE,
                )
                .expect("valid metric"),
            ),
            rows_written: int_counter("quickchat_rows_written_total", "Rows written per output and sink", SINK),
            sink_duration: histogram(
                "quickchat_sink_write_duration_seconds",
                "Wall time of one micro-batch's write (and commit) to a sink",
                SINK,
            ),
            checkpoint_duration: histogram(
                "quickchat_checkpoint_duration_seconds",
                "Wall time of writing a micro-batch's checkpoint (commit log and state snapshot)",
                PIPELINE,
            ),
            last_epoch: int_gauge("quickchat_last_epoch", "The last micro-batch committed", PIPELINE),
            last_commit: gauge(
                "quickchat_last_commit_timestamp_seconds",
                "When the last micro-batch committed, as a Unix time",
                PIPELINE,
            ),
            state_rows: int_gauge(
                "quickchat_state_rows",
                "Rows an operator holds: an output's open windows, groups or sessions, a join buffer",
                OPERATOR,
            ),
            state_bytes: int_gauge(
                "quickchat_state_bytes",
                "Memory of the Arrow batches an operator holds as state",
                OPERATOR,
            ),
            checkpoint_age: gauge(
                "quickchat_checkpoint_age_seconds",
                "Time since the pipeline last wrote its checkpoint (a micro-batch's commit): what a \
                 restart would read again",
                PIPELINE,
            ),
            retries: int_counter(
                "quickchat_retries_total",
                "Failed tries tried again (a server away, storage full), by operation and kind of error",
                &["operation", "error"],
            ),
            checkpointed: Mutex::default(),
            recent: RecentProgress::new(RECENT_EPOCHS),
            latest: LatestRows::default(),
            live: LiveState::default(),
            watched: Vec::new(),
            started: (Instant::now(), chrono::Utc::now()),
            registry,
        };
        #[cfg(target_os = "linux")]
        telemetry
            .registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("registered once");
        telemetry
    }

    /// The same telemetry, told that this process runs `pipeline` (its name, outputs and trigger
    /// interval): `/api/status` names it before its first micro-batch.
    pub fn watching(mut self, pipeline: &str, outputs: Vec<String>, interval: Duration) -> Self {
        for output in &outputs {
            self.latest.add_output(pipeline, output);
        }
        self.watched.push(Watched {
            name: pipeline.to_string(),
            outputs,
            interval,
        });
        self
    }

    /// What each output last wrote (the engine keeps it up to date, the live page shows it).
    pub fn latest_rows(&self) -> &LatestRows {
        &self.latest
    }

    /// Where questions about the running pipeline's state go.
    pub fn live_state(&self) -> &LiveState {
        &self.live
    }

    /// Counts a committed micro-batch and keeps its progress.
    pub fn record(&self, progress: EpochProgress) {
        let pipeline = progress.pipeline.as_str();
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        for source in &progress.sources {
            let labels = [pipeline, source.name.as_str()];
            self.records_read
                .with_label_values(&labels)
                .inc_by(source.num_input_rows);
            self.records_late.with_label_values(&labels).inc_by(source.late_rows);
            self.records_duplicate
                .with_label_values(&labels)
                .inc_by(source.duplicate_rows);
            self.records_quarantined
                .with_label_values(&labels)
                .inc_by(source.quarantined_rows);
            if let Some(micros) = source.watermark {
                let at = micros as f64 / 1e6;
                self.watermark.with_label_values(&labels).set(at);
                self.event_time_lag.with_label_values(&labels).set((now - at).max(0.0));
            }
            for (partition, offset) in &source.end_offset {
                let labels = [pipeline, source.name.as_str(), &partition.to_string()];
                self.source_offset.with_label_values(&labels).set(*offset);
                if let Some(latest) = source.latest_offset.get(partition) {
                    self.source_lag.with_label_values(&labels).set((latest - offset).max(0));
                }
            }
        }
        for (stage, ms) in progress.duration_ms.iter().filter(|(stage, _)| *stage != "total") {
            self.stage_time
                .with_label_values(&[pipeline, stage.as_str()])
                .inc_by(ms / 1e3);
        }
        for sink in &progress.sinks {
            let labels = [pipeline, sink.output.as_str(), sink.sink.as_str()];
            self.rows_written.with_label_values(&labels).inc_by(sink.rows);
            if let Some(ms) = progress
                .duration_ms
                .get(&format!("sink {} -> {}", sink.output, sink.sink))
            {
                self.sink_duration.with_label_values(&labels).observe(ms / 1e3);
            }
        }
        for operator in &progress.state_operators {
            self.state_rows
                .with_label_values(&[pipeline, operator.operator.as_str()])
                .set(operator.rows as i64);
            self.state_bytes
                .with_label_values(&[pipeline, operator.operator.as_str()])
                .set(operator.bytes as i64);
        }
        let phase = |name: &str| progress.duration_ms.get(name).copied().unwrap_or(0.0) / 1e3;
        self.checkpoint_duration
            .with_label_values(&[pipeline])
            .observe(phase("checkpoint") + phase("snapshot"));
        self.micro_batch_duration
            .with_label_values(&[pipeline])
            .observe(phase("total"));
        self.micro_batches.with_label_values(&[pipeline]).inc();
        self.last_epoch
            .with_label_values(&[pipeline])
            .set(progress.batch_id as i64);
        self.last_commit.with_label_values(&[pipeline]).set(now);
        self.checkpointed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(pipeline.to_string(), Instant::now());
        self.recent.push(progress);
    }

    /// The last `n` micro-batches' progress after batch `after` (any with `None`), oldest first.
    pub fn recent(&self, n: usize, after: Option<u64>) -> Vec<EpochProgress> {
        self.recent.last(n, after)
    }

    /// The process and its pipelines at a glance (`/api/status`): per pipeline its status
    /// (`starting` before the first micro-batch, `running`, `waiting` when it has not committed
    /// for a while), last epoch, checkpoint age, records read, late, duplicate and quarantined
    /// since start, state held and outputs; and the retries by operation and kind of error.
    pub fn status(&self) -> serde_json::Value {
        let newest = self.recent.newest_per_pipeline();
        let checkpointed = self
            .checkpointed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut names: Vec<&str> = self.watched.iter().map(|w| w.name.as_str()).collect();
        for progress in newest.iter().rev() {
            if !names.contains(&progress.pipeline.as_str()) {
                names.push(&progress.pipeline);
            }
        }
        let pipelines: Vec<serde_json::Value> = names
            .into_iter()
            .map(|name| {
                let watched = self.watched.iter().find(|w| w.name == name);
                // In the pipeline file's order when told at start, else as they wrote.
                let outputs = watched.map(|w| w.outputs.clone()).unwrap_or_else(|| {
                    let written = self.latest.outputs().into_iter();
                    written.filter(|(p, _)| p == name).map(|(_, o)| o).collect()
                });
                let Some(last) = newest.iter().find(|p| p.pipeline == name) else {
                    return serde_json::json!({"name": name, "status": "starting", "outputs": outputs});
                };
                let age = checkpointed.get(name).map(Instant::elapsed).unwrap_or_default();
                let interval = watched.map(|w| w.interval).unwrap_or_default();
                let waiting = age > (interval * WAITING_AFTER_INTERVALS).max(WAITING_AFTER_AT_LEAST);
                let total = |counter: &IntCounterVec| -> u64 {
                    last.sources
                        .iter()
                        .map(|s| counter.with_label_values(&[name, s.name.as_str()]).get())
                        .sum()
                };
                serde_json::json!({
                    "name": name,
                    "status": if waiting { "waiting" } else { "running" },
                    "last_epoch": last.batch_id,
                    "last_commit": last.timestamp,
                    "checkpoint_age_seconds": age.as_secs_f64(),
                    "records_read": total(&self.records_read),
                    "late": total(&self.records_late),
                    "duplicate": total(&self.records_duplicate),
                    "quarantined": total(&self.records_quarantined),
                    "micro_batches": self.micro_batches.with_label_values(&[name]).get(),
                    "state_rows": last.state_operators.iter().map(|o| o.rows).sum::<u64>(),
                    "state_bytes": last.state_operators.iter().map(|o| o.bytes).sum::<u64>(),
                    "outputs": outputs,
                })
            })
            .collect();
        let retries: Vec<serde_json::Value> = crate::retry::retries_counted()
            .into_iter()
            .map(|((operation, error), count)| serde_json::json!({"operation": operation, "error": error, "count": count}))
            .collect();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": self.started.1.to_rfc3339(),
            "uptime_seconds": self.started.0.elapsed().as_secs_f64(),
            "pipelines": pipelines,
            "retries": retries,
        })
    }

    /// The metrics in Prometheus's text format, and its content type. Figures that change
    /// without a micro-batch (checkpoint age, retries) are brought up to date first.
    pub fn exposition(&self) -> (String, String) {
        for (pipeline, at) in self
            .checkpointed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            self.checkpoint_age
                .with_label_values(&[pipeline])
                .set(at.elapsed().as_secs_f64());
        }
        for ((operation, error), count) in crate::retry::retries_counted() {
            let counter = self.retries.with_label_values(&[operation, error]);
            counter.inc_by(count.saturating_sub(counter.get()));
        }
        let encoder = prometheus::TextEncoder::new();
        let text = encoder
            .encode_to_string(&self.registry.gather())
            .expect("the text encoder writes any metric");
        (text, encoder.format_type().to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::observe::progress::{SinkProgress, SourceProgress, StateOperator};

    /// A micro-batch touching every metric a progress feeds.
    fn progress() -> EpochProgress {
        let offsets = |offset| BTreeMap::from([(0, offset)]);
        EpochProgress {
            pipeline: "p".into(),
            batch_id: 7,
            timestamp: "2026-12-03T10:00:00Z".into(),
            num_input_rows: 10,
            input_rows_per_second: 10.0,
            processed_rows_per_second: 100.0,
            duration_ms: BTreeMap::from([
                ("read".into(), 1.0),
                ("sink out -> delta:gold.out".into(), 2.0),
                ("checkpoint".into(), 1.0),
                ("total".into(), 5.0),
            ]),
            sources: vec![SourceProgress {
                name: "s".into(),
                start_offset: offsets(0),
                end_offset: offsets(10),
                latest_offset: offsets(12),
                num_input_rows: 10,
                late_rows: 1,
                duplicate_rows: 1,
                quarantined_rows: 1,
                watermark: Some(1_700_000_000_000_000),
            }],
            state_operators: vec![StateOperator {
                operator: "output out".into(),
                rows: 3,
                bytes: 300,
            }],
            sinks: vec![SinkProgress {
                output: "out".into(),
                sink: "delta:gold.out".into(),
                rows: 8,
            }],
        }
    }

    /// The metric names a PromQL text names: `quickchat_…` and `process_…` words.
    fn names_in(text: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find(['q', 'p']) {
            let word: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let starts_word = at == 0 || !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if starts_word && (word.starts_with("quickchat_") || word.starts_with("process_")) {
                names.insert(word.clone());
            }
            rest = &rest[at + word.len().max(1)..];
        }
        names
    }

    #[test]
    fn every_metric_the_shipped_dashboard_and_alerts_name_is_one_a_pipeline_exports() {
        let telemetry = Telemetry::new();
        telemetry.record(progress());
        crate::retry::count_retry(crate::retry::operation::SINK_WRITE, "sink");
        let (text, _) = telemetry.exposition();
        let exported: BTreeSet<String> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(str::to_string)
            .collect();
        assert!(text.contains("quickchat_retries_total{error=\"sink\",operation=\"sink_write\"}"));
        assert!(text.contains("quickchat_state_bytes{operator=\"output out\",pipeline=\"p\"} 300"));
        assert!(text.contains("quickchat_checkpoint_age_seconds{pipeline=\"p\"}"));

        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../docker/grafana/quickchat-etl.json")).unwrap();
        let mut named = BTreeSet::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                named.extend(names_in(target["expr"].as_str().unwrap()));
            }
        }
        assert!(named.len() > 10, "the dashboard's panels name the metrics: {named:?}");
        // Batch runs' metrics (`quickchat_job_…`) come from the Pushgateway, not a pipeline.
        let alerts = names_in(include_str!("../../docker/quickchat-alerts.yml"));
        named.extend(alerts.into_iter().filter(|name| !name.starts_with("quickchat_job_")));
        let missing: Vec<&String> = named.iter().filter(|name| !exported.contains(*name)).collect();
        assert!(missing.is_empty(), "named but not exported: {missing:?}\n{text}");
    }

    #[test]
    fn progress_since_a_batch_is_only_the_newer_ones_and_status_shows_each_pipelines_newest() {
        let telemetry = Telemetry::new();
        for (pipeline, batch_id) in [("p", 1), ("q", 1), ("p", 2), ("p", 3)] {
            telemetry.record(EpochProgress {
                pipeline: pipeline.into(),
                batch_id,
                ..progress()
            });
        }
        let ids = |batches: Vec<EpochProgress>| -> Vec<(String, u64)> {
            batches.into_iter().map(|b| (b.pipeline, b.batch_id)).collect()
        };
        assert_eq!(ids(telemetry.recent(100, Some(1))), [("p".into(), 2), ("p".into(), 3)]);
        assert_eq!(ids(telemetry.recent(1, None)), [("p".into(), 3)]);
        assert!(telemetry.recent(100, Some(3)).is_empty());
        let status = telemetry.status();
        let pipelines = status["pipelines"].as_array().unwrap();
        let shown: Vec<(&str, u64)> = pipelines
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["last_epoch"].as_u64().unwrap()))
            .collect();
        assert_eq!(shown, [("q", 1), ("p", 3)]);
    }
}
