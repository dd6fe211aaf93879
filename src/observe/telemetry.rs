//! [`Telemetry`]: the Prometheus metrics of a running pipeline, derived from each micro-batch's
//! [`EpochProgress`], plus the standard process collector (memory, CPU, open files). Names
//! follow Prometheus conventions: `quickchat_` prefix, base units in the name (`_seconds`),
//! counters ending in `_total`; the process's own figures keep the standard `process_` names
//! that dashboards and alerts already know.

use prometheus::{CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

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
    recent: RecentProgress,
}

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
            recent: RecentProgress::new(RECENT_EPOCHS),
            registry,
        };
        #[cfg(target_os = "linux")]
        telemetry
            .registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("registered once");
        telemetry
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
        self.recent.push(progress);
    }

    /// The last `n` micro-batches' progress, oldest first.
    pub fn recent(&self, n: usize) -> Vec<EpochProgress> {
        self.recent.last(n)
    }

    /// The metrics in Prometheus's text format, and its content type.
    pub fn exposition(&self) -> (String, String) {
        let encoder = prometheus::TextEncoder::new();
        let text = encoder
            .encode_to_string(&self.registry.gather())
            .expect("the text encoder writes any metric");
        (text, encoder.format_type().to_string())
    }
}
