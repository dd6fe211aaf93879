//! [`EpochProgress`]: what one micro-batch of a streaming pipeline did, in the spirit of Spark's
//! `StreamingQueryProgress` — the object `/api/progress` returns, the Prometheus metrics are
//! derived from, and the JSON progress log line prints.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::{RunReport, SourceCounts};
use crate::sources::positions::EpochRange;

/// One committed micro-batch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EpochProgress {
    /// The pipeline's name.
    pub pipeline: String,
    /// The epoch (micro-batch) number.
    pub batch_id: u64,
    /// When it committed (RFC 3339, UTC).
    pub timestamp: String,
    /// Records read, all sources.
    pub num_input_rows: u64,
    /// Records read per second of wall time since the previous micro-batch committed.
    pub input_rows_per_second: f64,
    /// Records processed per second of this micro-batch's own time.
    pub processed_rows_per_second: f64,
    /// Milliseconds by phase: `read`, `decode <source>`, `ingest <source>`, `query <output>`,
    /// `sink <output> -> <sink>`, `evict`, `checkpoint`, `snapshot`, and `total`.
    pub duration_ms: BTreeMap<String, f64>,
    /// Per source: what it read.
    pub sources: Vec<SourceProgress>,
    /// Per operator (an output's windows, groups or sessions, a source's join buffer): rows held.
    pub state_operators: Vec<StateOperator>,
    /// Per output and sink: rows written.
    pub sinks: Vec<SinkProgress>,
}

/// What one source read in a micro-batch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceProgress {
    /// The source's name.
    pub name: String,
    /// Per partition: the first offset read.
    pub start_offset: BTreeMap<i32, i64>,
    /// Per partition: the offset after the last one read.
    pub end_offset: BTreeMap<i32, i64>,
    /// Per partition: the offset after the last record the input held when last read, where
    /// the input knows it (Kafka: the partition's high watermark).
    pub latest_offset: BTreeMap<i32, i64>,
    /// Records read.
    pub num_input_rows: u64,
    /// Records behind the watermark (written to the late table).
    pub late_rows: u64,
    /// Records dropped as repeats of a key.
    pub duplicate_rows: u64,
    /// Records quarantined.
    pub quarantined_rows: u64,
    /// The source's event-time watermark after the micro-batch, in microseconds since the Unix
    /// epoch (RFC 3339 in JSON), if it has one.
    #[serde(serialize_with = "as_rfc3339")]
    pub watermark: Option<i64>,
}

fn as_rfc3339<S: serde::Serializer>(micros: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
    let text = micros
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|at| at.to_rfc3339());
    serde::Serialize::serialize(&text, serializer)
}

/// Rows an operator holds after a micro-batch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateOperator {
    /// `output <name>` or `join buffer <source>`.
    pub operator: String,
    /// Rows held.
    pub rows: u64,
    /// Memory of the Arrow batches held.
    pub bytes: u64,
}

/// Rows one sink of an output got in a micro-batch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SinkProgress {
    /// The output (or `alerts`, `<source> late`).
    pub output: String,
    /// The sink (`delta:gold.page_views`, `mysql:page_views`, ...).
    pub sink: String,
    /// Rows written.
    pub rows: u64,
}

/// Where a run's report stood when the previous micro-batch committed: the next progress is
/// the difference.
#[derive(Debug, Clone)]
pub struct ProgressMark {
    at: Instant,
    stage_times: BTreeMap<String, Duration>,
    written: BTreeMap<String, u64>,
    sources: BTreeMap<String, SourceCounts>,
}

impl ProgressMark {
    /// The mark of `report` now.
    pub fn of(report: &RunReport) -> Self {
        Self {
            at: Instant::now(),
            stage_times: report.stage_times.clone(),
            written: report.written.clone(),
            sources: report.sources.clone(),
        }
    }
}

/// What the engine knows of a micro-batch that just committed, besides its report.
pub struct Committed<'a> {
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The offsets it read.
    pub range: &'a EpochRange,
    /// Per source and partition: the end of the input, where known.
    pub latest_offsets: &'a crate::sources::positions::Positions,
    /// Its own time, read to commit.
    pub elapsed: Duration,
    /// Per operator: rows held.
    pub state: Vec<StateOperator>,
    /// Per source: the watermark after it, in microseconds.
    pub watermarks: BTreeMap<String, i64>,
}

impl EpochProgress {
    /// The progress of the micro-batch that moved `report` on from `mark`.
    pub fn since(mark: &ProgressMark, report: &RunReport, committed: Committed<'_>) -> Self {
        let mut duration_ms: BTreeMap<String, f64> = report
            .stage_times
            .iter()
            .map(|(stage, total)| {
                let before = mark.stage_times.get(stage).copied().unwrap_or_default();
                (stage.clone(), total.saturating_sub(before).as_secs_f64() * 1e3)
            })
            .filter(|(_, ms)| *ms > 0.0)
            .collect();
        duration_ms.insert("total".into(), committed.elapsed.as_secs_f64() * 1e3);
        let sources: Vec<SourceProgress> = committed
            .range
            .ranges
            .iter()
            .map(|(name, partitions)| {
                let now = report.sources.get(name).cloned().unwrap_or_default();
                let before = mark.sources.get(name).cloned().unwrap_or_default();
                SourceProgress {
                    name: name.clone(),
                    start_offset: partitions.iter().map(|(p, (start, _))| (*p, *start)).collect(),
                    end_offset: partitions.iter().map(|(p, (_, end))| (*p, *end)).collect(),
                    latest_offset: committed.latest_offsets.get(name).cloned().unwrap_or_default(),
                    num_input_rows: now.records - before.records,
                    late_rows: now.late - before.late,
                    duplicate_rows: now.duplicates - before.duplicates,
                    quarantined_rows: now.rejected - before.rejected,
                    watermark: committed.watermarks.get(name).copied(),
                }
            })
            .collect();
        let sinks = report
            .written
            .iter()
            .filter_map(|(target, rows)| {
                let rows = rows - mark.written.get(target).copied().unwrap_or(0);
                let (output, sink) = target.split_once(" -> ")?;
                Some(SinkProgress {
                    output: output.to_string(),
                    sink: sink.to_string(),
                    rows,
                })
            })
            .collect();
        let num_input_rows = sources.iter().map(|s| s.num_input_rows).sum::<u64>();
        let per_second = |seconds: f64| {
            if seconds > 0.0 {
                num_input_rows as f64 / seconds
            } else {
                0.0
            }
        };
        Self {
            pipeline: committed.pipeline.to_string(),
            batch_id: committed.range.epoch,
            timestamp: chrono::Utc::now().to_rfc3339(),
            num_input_rows,
            input_rows_per_second: per_second(mark.at.elapsed().as_secs_f64()),
            processed_rows_per_second: per_second(committed.elapsed.as_secs_f64()),
            duration_ms,
            sources,
            state_operators: committed.state,
            sinks,
        }
    }
}

/// The last micro-batches' progress, newest last.
#[derive(Debug)]
pub struct RecentProgress {
    kept: Mutex<VecDeque<EpochProgress>>,
    capacity: usize,
}

impl RecentProgress {
    /// Keeps the last `capacity` micro-batches.
    pub fn new(capacity: usize) -> Self {
        Self {
            kept: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// Adds the newest micro-batch, forgetting the oldest past the capacity.
    pub fn push(&self, progress: EpochProgress) {
        let mut kept = self.kept.lock().expect("progress lock");
        if kept.len() == self.capacity {
            kept.pop_front();
        }
        kept.push_back(progress);
    }

    /// The last `n` micro-batches after batch `after` (all kept with `None`), oldest first.
    pub fn last(&self, n: usize, after: Option<u64>) -> Vec<EpochProgress> {
        let kept = self.kept.lock().expect("progress lock");
        let newer = kept.iter().filter(|p| after.is_none_or(|after| p.batch_id > after));
        let count = newer.clone().count();
        newer.skip(count.saturating_sub(n)).cloned().collect()
    }

    /// Each pipeline's newest micro-batch, newest first.
    pub fn newest_per_pipeline(&self) -> Vec<EpochProgress> {
        let kept = self.kept.lock().expect("progress lock");
        let mut newest: Vec<EpochProgress> = Vec::new();
        for progress in kept.iter().rev() {
            if !newest.iter().any(|p| p.pipeline == progress.pipeline) {
                newest.push(progress.clone());
            }
        }
        newest
    }
}
