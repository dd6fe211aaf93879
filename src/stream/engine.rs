//! The micro-batch loop of a streaming pipeline.
//!
//! Each epoch: log what it reads (`offsets/`), decode and de-duplicate each source, split late
//! records off, run every output's query (side by side; an output reading an earlier one waits for
//! its final rows), check the alert rules, write every sink (each idempotent per epoch), let join
//! buffers and remembered keys go once no future record can need them, log the commit
//! (`commits/`), and now and then save the whole state (`state/`). What a restart does with all
//! that is in `recovery`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use chrono::Utc;

use super::alerts::{Alerts, alert_schema};
use super::checkpoint::{Checkpoints, Commit};
use super::faults::fault_point;
use super::ingest::SourceState;
use super::join_buffer::JoinBuffer;
use super::micro_batch::{Emitted, MicroBatch};
use super::operator::Query;
use super::outputs::{plan, run_outputs};
use super::state_batches::StateSize;
use crate::catalog::Lake;
use crate::config::pipeline::WriteMode;
use crate::config::stream_pipeline::{StreamPipeline, StreamSource};
use crate::decode::decode_records;
use crate::decode::protobuf::ProtobufDecoder;
use crate::decode::reject::Reject;
use crate::error::{Error, Result};
use crate::metrics::{Ended, RunReport};
use crate::observe::live_state::StateInbox;
use crate::observe::progress::{Committed, EpochProgress, ProgressMark, StateOperator};
use crate::observe::telemetry::Telemetry;
use crate::query::analysis::QueryKind;
use crate::sinks::epoch::SinkWriter;
use crate::sources::Input;
use crate::sources::positions::{EpochRange, InputBatch, Positions};

/// How a run is driven.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop once the input's end (as it was when the run started) is reached.
    pub until_caught_up: bool,
    /// Set to stop after the epoch in progress (Ctrl-C, SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Skip the sinks, and the stateless outputs (bronze copies) no other output reads, whose
    /// rows would go nowhere: benchmarks of decoding, state and windows alone.
    pub without_sinks: bool,
    /// Stop after this many micro-batches (and save the state): a scheduler's bounded run, or a
    /// test restoring the state at every epoch boundary.
    pub max_epochs: Option<u64>,
}

pub use crate::sinks::epoch::SinkSettings;

/// A pipeline ready to run: queries analysed, state restored.
pub struct Engine<'a> {
    pub(super) pipeline: &'a StreamPipeline,
    /// The same pipeline, for the queries' tasks.
    pub(super) shared: Arc<StreamPipeline>,
    pub(super) lake: &'a Lake,
    pub(super) input: Input,
    pub(super) checkpoints: Checkpoints,
    pub(super) sinks: SinkWriter<'a>,
    pub(super) sources: BTreeMap<String, SourceState>,
    pub(super) decoders: HashMap<String, ProtobufDecoder>,
    pub(super) queries: Vec<Query>,
    /// Per joined source: its rows retained for joins.
    pub(super) join_buffers: BTreeMap<String, JoinBuffer>,
    pub(super) alerts: Alerts,
    /// Sinks skipped because their server is not configured.
    pub(super) skipped: Vec<String>,
    pub(super) lineage: String,
    pub(super) epoch: u64,
    pub(super) positions: Positions,
    pub(super) finished: bool,
    pub(super) last_snapshot: (Instant, u64),
    /// The snapshot being written beside the stream, if one is.
    pub(super) snapshot_writing: Option<tokio::task::JoinHandle<Result<()>>>,
    pub(super) report: RunReport,
    /// Where each committed micro-batch's progress goes (the live UI), if anywhere.
    telemetry: Option<Arc<Telemetry>>,
    /// Questions about the state (the live UI's), answered between micro-batches.
    pub(super) state_inbox: Option<StateInbox>,
    /// The report when the last micro-batch committed, and that micro-batch's progress.
    progress: (ProgressMark, Option<EpochProgress>),
    /// Per source and partition: the end of the input when it was last read, where known.
    latest_offsets: Positions,
}

impl<'a> Engine<'a> {
    /// Analyses the pipeline's queries and restores its state from the checkpoint of `input`
    /// (processing again the epochs logged after the latest snapshot).
    pub async fn open(
        pipeline: &'a StreamPipeline,
        lake: &'a Lake,
        input: Input,
        settings: SinkSettings,
    ) -> Result<Self> {
        let (queries, alerts) = match plan(pipeline).await {
            Ok(planned) => planned,
            Err(mut problems) => return Err(problems.remove(0)),
        };
        let join_buffers = queries
            .iter()
            .filter_map(|q| match &q.analysis.kind {
                QueryKind::Windowed { join: Some(join), .. } => Some((join.source.clone(), JoinBuffer::default())),
                _ => None,
            })
            .collect();
        let mut decoders = HashMap::new();
        if !input.always_json() {
            for source in &pipeline.sources {
                if let Some(message) = &source.protobuf {
                    let decoder = ProtobufDecoder::new(message, source.value_schema.clone()).map_err(|e| {
                        Error::config_in(&pipeline.pipeline_path, format!("sources.{}: {e}", source.name))
                    })?;
                    decoders.insert(source.name.clone(), decoder);
                }
            }
        }
        let checkpoints = Checkpoints::new(lake, &pipeline.name, input.kind())?;
        let sinks = SinkWriter::new(lake, pipeline, input.kind(), "", settings.clone());
        let mut skipped = Vec::new();
        for (output, sink) in pipeline.sinks() {
            if let Some(reason) = sinks.unavailable(sink) {
                if matches!(input, Input::Kafka(_)) && !sink.optional() {
                    return Err(Error::config_in(
                        &pipeline.pipeline_path,
                        format!("outputs.{output}: sink {} cannot be written: {reason}", sink.display()),
                    ));
                }
                tracing::warn!(pipeline = %pipeline.name, output, sink = %sink.display(), "sink skipped: {reason}");
                skipped.push(sink.display());
            }
        }
        let mut engine = Self {
            pipeline,
            shared: Arc::new(pipeline.clone()),
            lake,
            input,
            checkpoints,
            sinks,
            sources: pipeline
                .sources
                .iter()
                .map(|s| (s.name.clone(), SourceState::default()))
                .collect(),
            decoders,
            queries,
            join_buffers,
            alerts,
            skipped,
            lineage: String::new(),
            epoch: 0,
            positions: Positions::new(),
            finished: false,
            last_snapshot: (Instant::now(), 0),
            snapshot_writing: None,
            report: RunReport::default(),
            telemetry: None,
            state_inbox: None,
            progress: (ProgressMark::of(&RunReport::default()), None),
            latest_offsets: Positions::new(),
        };
        engine.restore(settings).await?;
        Ok(engine)
    }

    /// Reports each micro-batch committed from now on to `telemetry`, and answers its questions
    /// about the state.
    pub fn observed_by(&mut self, telemetry: Arc<Telemetry>) {
        self.state_inbox = telemetry.live_state().take_inbox();
        self.telemetry = Some(telemetry);
    }

    /// The checkpoint folder.
    pub fn checkpoint_location(&self) -> &str {
        self.checkpoints.location()
    }

    /// Runs micro-batches until the input ends, the run is caught up, or `stop` is set.
    pub async fn run(&mut self, options: &RunOptions) -> Result<RunReport> {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut progress_from = (self.report.records, self.epoch);
        let first_epoch = self.epoch;
        self.report.ended = loop {
            if self.finished {
                break Ended::EndOfInput;
            }
            if options.stop.load(Ordering::SeqCst) {
                break Ended::Stopped;
            }
            if options.max_epochs.is_some_and(|max| self.epoch - first_epoch >= max) {
                break Ended::EpochLimit;
            }
            // Every ten seconds, idle or not: a quiet pipeline says it is alive.
            if last_progress.elapsed() >= Duration::from_secs(10) {
                self.log_progress(last_progress.elapsed(), progress_from);
                last_progress = Instant::now();
                progress_from = (self.report.records, self.epoch);
            }
            self.answer_state_questions().await;
            if options.until_caught_up && self.input.caught_up(&self.positions).await? {
                break Ended::CaughtUp;
            }
            let stage = Instant::now();
            let batch = self
                .input
                .next(&self.positions, self.pipeline.batch_limit, self.pipeline.interval)
                .await?;
            self.report.timed("read", stage);
            for (source, latest) in &batch.latest {
                self.latest_offsets.entry(source.clone()).or_default().extend(latest);
            }
            let range = EpochRange {
                epoch: self.epoch + 1,
                ranges: batch.ranges.clone(),
                end_of_input: false,
                idle: batch.idle.clone(),
            };
            let end_of_input = self.input.exhausted(&range.end_positions(&self.positions));
            if batch.is_empty() && !end_of_input {
                continue;
            }
            let range = EpochRange { end_of_input, ..range };
            self.checkpoints.write_offsets(&range).await?;
            fault_point("after-offsets", range.epoch);
            if options.without_sinks {
                self.process_without_sinks(range, batch).await?;
            } else {
                self.process(range, batch, false).await?;
            }
        };
        self.sinks.settle().await;
        self.save_snapshot().await?;
        self.snapshot_written().await?;
        self.report.last_epoch = self.epoch;
        self.report.state_rows = self.state_rows();
        self.report.elapsed = started.elapsed();
        Ok(self.report.clone())
    }

    /// The progress log line: with `--log-format json` the last micro-batch's [`EpochProgress`]
    /// (the object `/api/progress` returns), else the figures since `from` (records, epoch).
    fn log_progress(&self, since: Duration, from: (u64, u64)) {
        match &self.progress.1 {
            Some(progress) if crate::progress::json_logs() => crate::progress::log_json("progress", progress),
            _ => tracing::info!(
                pipeline = %self.pipeline.name,
                epoch = self.epoch,
                epochs = self.epoch - from.1,
                records_per_s = ((self.report.records - from.0) as f64 / since.as_secs_f64()) as u64,
                late = self.report.late,
                duplicates = self.report.duplicates,
                quarantined = self.report.rejected,
                state_rows = self.state_rows(),
                "progress"
            ),
        }
    }

    pub(super) fn state_rows(&self) -> usize {
        self.operator_sizes().map(|(_, _, size)| size.rows).sum()
    }

    /// Decodes, de-duplicates and splits one epoch's records; returns what the queries get, the
    /// late records (with the watermark they missed) and the rejects.
    fn ingest(&mut self, range: &EpochRange, batch: &InputBatch) -> Result<(MicroBatch, Vec<Late>, Vec<Reject>)> {
        let mut input = MicroBatch {
            end_of_input: range.end_of_input,
            ..Default::default()
        };
        let mut late = Vec::new();
        let mut rejects = Vec::new();
        for source in &self.pipeline.sources {
            let empty = Default::default();
            let raw = batch.records.get(&source.name).unwrap_or(&empty);
            self.report.records += raw.len() as u64;
            let mut counts = self.report.sources.remove(&source.name).unwrap_or_default();
            counts.records += raw.len() as u64;
            let stage = Instant::now();
            let (decoded, rejected) = decode_records(
                source,
                self.decoders.get(&source.name),
                raw,
                self.pipeline.max_record_bytes,
            )?;
            self.report.timed(format!("decode {}", source.name), stage);
            let stage = Instant::now();
            self.report.rejected += rejected.len() as u64;
            counts.rejected += rejected.len() as u64;
            rejects.extend(rejected);
            let state = self.sources.get_mut(&source.name).expect("a state per source");
            let watermark_before = state.watermark();
            let partitions = range.idle.get(&source.name).cloned().unwrap_or_default();
            let ingested = state.ingest(source, decoded, &partitions);
            self.report.duplicates += ingested.duplicates as u64;
            counts.duplicates += ingested.duplicates as u64;
            counts.late += ingested.late.num_rows() as u64;
            self.report.sources.insert(source.name.clone(), counts);
            if ingested.late.num_rows() > 0 {
                self.report.late += ingested.late.num_rows() as u64;
                late.push(Late {
                    source: source.clone(),
                    rows: ingested.late,
                    watermark: watermark_before.unwrap_or(i64::MIN),
                });
            }
            if let Some(watermark) = state.watermark() {
                input.watermarks.insert(source.name.clone(), watermark);
            }
            if let Some(buffer) = self.join_buffers.get_mut(&source.name) {
                input
                    .buffers
                    .insert(source.name.clone(), buffer.add(source, &ingested.on_time)?);
            }
            input.on_time.insert(source.name.clone(), ingested.on_time);
            input.all.insert(source.name.clone(), ingested.all);
            self.report.timed(format!("ingest {}", source.name), stage);
        }
        Ok((input, late, rejects))
    }

    /// Runs every output's query over an epoch (see [`run_outputs`]).
    async fn run_queries(&mut self, input: &Arc<MicroBatch>, only_needed: bool) -> Result<Vec<Emitted>> {
        run_outputs(&mut self.queries, &self.shared, input, only_needed, &mut self.report).await
    }

    /// Lets join buffers drop rows no waiting row can match, and sources forget old keys.
    fn evict(&mut self, input: &MicroBatch) -> Result<()> {
        let mut retention: HashMap<String, i64> = HashMap::new();
        for query in &self.queries {
            if let Some((source, keep_from)) = query.join_retention(self.pipeline, input) {
                let entry = retention.entry(source).or_insert(keep_from);
                *entry = (*entry).min(keep_from);
            }
        }
        for (name, buffer) in &mut self.join_buffers {
            if let Some(keep_from) = retention.get(name) {
                buffer.evict(self.pipeline.source(name).expect("buffers are of sources"), *keep_from)?;
            }
        }
        for source in &self.pipeline.sources {
            if let Some(state) = self.sources.get_mut(&source.name) {
                state.forget_old_keys(source);
            }
        }
        Ok(())
    }

    /// Processes one epoch; `replay` marks an epoch committed before a restart.
    pub(super) async fn process(&mut self, range: EpochRange, batch: InputBatch, replay: bool) -> Result<()> {
        let started = Instant::now();
        let oldest_record_ms = batch
            .records
            .values()
            .flat_map(|r| r.timestamps.iter().flatten())
            .min()
            .copied();
        let (input, late, rejects) = self.ingest(&range, &batch)?;
        let input = Arc::new(input);
        drop(batch);
        let emitted = self.run_queries(&input, false).await?;
        let epoch = range.epoch;

        let mut changed: HashMap<String, Vec<RecordBatch>> = HashMap::new();
        for (query, out) in self.queries.iter().zip(&emitted) {
            for sink in &query.output.sinks {
                if self.skipped.contains(&sink.display()) {
                    continue;
                }
                let rows = match sink.mode() {
                    WriteMode::Update => &out.update,
                    _ => &out.append,
                };
                let stage = Instant::now();
                let metrics = self
                    .sinks
                    .write(&query.output.name, sink, epoch, &query.analysis.schema, rows, replay)
                    .await?;
                *self
                    .report
                    .written
                    .entry(format!("{} -> {}", query.output.name, sink.display()))
                    .or_default() += metrics.rows;
                self.report
                    .timed(format!("sink {} -> {}", query.output.name, sink.display()), stage);
                fault_point("mid-sinks", epoch);
            }
            if let Some(telemetry) = &self.telemetry {
                let latest = telemetry.latest_rows();
                latest.keep(&self.pipeline.name, &query.output.name, epoch, &out.append, &out.update);
            }
            changed.insert(query.output.name.clone(), out.update.clone());
        }
        if !self.alerts.is_empty() {
            let now = Utc::now().timestamp_micros();
            let alerts = self.alerts.check(&changed, now).await?;
            let sinks = self
                .pipeline
                .alerts
                .as_ref()
                .map(|a| a.sinks.clone())
                .unwrap_or_default();
            for sink in &sinks {
                if self.skipped.contains(&sink.display()) {
                    continue;
                }
                let metrics = self
                    .sinks
                    .write(
                        "alerts",
                        sink,
                        epoch,
                        &alert_schema(),
                        std::slice::from_ref(&alerts),
                        replay,
                    )
                    .await?;
                *self
                    .report
                    .written
                    .entry(format!("alerts -> {}", sink.display()))
                    .or_default() += metrics.rows;
            }
        }
        for late in &late {
            let metrics = self
                .sinks
                .write_late(&late.source, epoch, &late.rows, late.watermark)
                .await?;
            *self
                .report
                .written
                .entry(format!("{} late -> {}", late.source.name, late.source.late_table))
                .or_default() += metrics.rows;
        }
        self.sinks.write_rejects(epoch, &rejects).await?;
        fault_point("after-sinks", epoch);

        let stage = Instant::now();
        self.evict(&input)?;
        self.report.timed("evict", stage);
        self.check_state_bound()?;
        self.commit(&range, started, oldest_record_ms).await
    }

    /// Stops the run before the epoch commits when an operator holds more rows than
    /// `limits.max_state_rows`: a key space growing without bound fails clearly instead of
    /// taking the machine's memory.
    fn check_state_bound(&self) -> Result<()> {
        let bound = self.pipeline.max_state_rows;
        let over = self
            .operator_sizes()
            .map(|(kind, name, size)| (kind, name, size.rows))
            .find(|(_, _, rows)| *rows > bound)
            .map(|(kind, name, rows)| {
                let what = match kind {
                    OUTPUT => format!("output `{name}`"),
                    _ => format!("the join buffer of source `{name}`"),
                };
                (what, rows)
            });
        match over {
            Some((what, rows)) => Err(Error::compute(
                format!("pipeline {}: {what}", self.pipeline.name),
                format!(
                    "its state holds {rows} rows, more than limits.max_state_rows ({bound}) of {}: a key space \
                     growing without bound (check the GROUP BY keys and the watermark delay), or raise the limit",
                    self.pipeline.pipeline_path
                ),
            )),
            None => Ok(()),
        }
    }

    /// Processes one epoch without writing anything but the checkpoint (benchmarks).
    async fn process_without_sinks(&mut self, range: EpochRange, batch: InputBatch) -> Result<()> {
        let started = Instant::now();
        let input = Arc::new(self.ingest(&range, &batch)?.0);
        drop(batch);
        self.run_queries(&input, true).await?;
        let stage = Instant::now();
        self.evict(&input)?;
        self.report.timed("evict", stage);
        self.check_state_bound()?;
        self.commit(&range, started, None).await
    }

    async fn commit(&mut self, range: &EpochRange, started: Instant, oldest_record_ms: Option<i64>) -> Result<()> {
        let stage = Instant::now();
        let positions = range.end_positions(&self.positions);
        self.checkpoints
            .write_commit(&Commit {
                epoch: range.epoch,
                positions: positions.clone(),
                committed_at: Utc::now().to_rfc3339(),
            })
            .await?;
        fault_point("after-commit", range.epoch);
        self.positions = positions;
        self.epoch = range.epoch;
        self.finished = range.end_of_input;
        self.report.epochs += 1;
        self.report.epoch_times.record(started.elapsed());
        if let (Some(oldest), Input::Kafka(_)) = (oldest_record_ms, &self.input) {
            let age = Utc::now().timestamp_millis() - oldest;
            self.report.freshness.record(Duration::from_millis(age.max(0) as u64));
        }
        self.report.timed("checkpoint", stage);
        if self.last_snapshot.0.elapsed() >= self.pipeline.snapshot_interval || self.finished {
            let stage = Instant::now();
            self.save_snapshot().await?;
            self.report.timed("snapshot", stage);
        }
        self.input.committed(&self.positions);
        self.report_progress(range, started);
        Ok(())
    }

    /// What each stateful operator holds: `(OUTPUT or JOIN_BUFFER, name, size)`.
    fn operator_sizes(&self) -> impl Iterator<Item = (&'static str, &str, StateSize)> + '_ {
        let outputs = self
            .queries
            .iter()
            .map(|q| (OUTPUT, q.output.name.as_str(), q.state_size()));
        let buffers = self
            .join_buffers
            .iter()
            .map(|(source, buffer)| (JOIN_BUFFER, source.as_str(), buffer.size()));
        outputs.chain(buffers)
    }

    /// Keeps the progress of the micro-batch that just committed, and hands it to the telemetry.
    fn report_progress(&mut self, range: &EpochRange, started: Instant) {
        let state = self
            .operator_sizes()
            .map(|(kind, name, size)| StateOperator {
                operator: format!("{kind} {name}"),
                rows: size.rows as u64,
                bytes: size.bytes as u64,
            })
            .collect();
        let committed = Committed {
            pipeline: &self.pipeline.name,
            range,
            latest_offsets: &self.latest_offsets,
            elapsed: started.elapsed(),
            state,
            watermarks: self
                .sources
                .iter()
                .filter_map(|(name, state)| Some((name.clone(), state.watermark()?)))
                .collect(),
        };
        let progress = EpochProgress::since(&self.progress.0, &self.report, committed);
        if let Some(telemetry) = &self.telemetry {
            telemetry.record(progress.clone());
        }
        self.progress = (ProgressMark::of(&self.report), Some(progress));
    }
}

/// The kinds of stateful operator, as progress and errors name them.
const OUTPUT: &str = "output";
pub(super) const JOIN_BUFFER: &str = "join buffer";

/// A source's late records of an epoch.
struct Late {
    source: StreamSource,
    rows: RecordBatch,
    watermark: i64,
}
