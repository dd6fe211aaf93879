//! The micro-batch loop of a streaming pipeline, and its recovery.
//!
//! Each epoch: log what it reads (`offsets/`), decode and de-duplicate each source, split late
//! records off, run every output's query (side by side; an output reading an earlier one waits for
//! its final rows), check the alert rules, write every sink (each idempotent per epoch), let join
//! buffers and remembered keys go once no future record can need them, log the commit
//! (`commits/`), and now and then save the whole state (`state/`).
//!
//! A restart loads the latest snapshot and processes the epochs logged after it again, from
//! exactly the same records: the sinks recognise what they already hold, so every event counts
//! once however the previous run ended.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, BooleanArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;
use chrono::Utc;

use super::alerts::{Alerts, alert_schema};
use super::analysis::QueryKind;
use super::checkpoint::{Checkpoints, Commit, Snapshot};
use super::decode::{StreamReject, decode};
use super::ingest::SourceState;
use super::input::{Codec, Input, InputBatch};
use super::outputs::{plan, run_outputs};
use super::protobuf::ProtobufDecoder;
use super::query::{BatchInput, Emitted, Query};
use super::records::{EpochRange, Positions};
use super::report::{Ended, RunReport};
use super::sinks::SinkWriter;
use super::{StreamPipeline, StreamSource};
use crate::catalog::Lake;
use crate::config::stream::OutputMode;
use crate::error::{ConfigProblem, Error, Result};

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
}

/// A test hook: `QUICKCHAT_FAULT=<stage>@<epoch>` aborts the process at that point of that epoch,
/// as `kill -9` would (stages: `after-offsets`, `mid-sinks`, `after-sinks`, `after-commit`).
fn fault_point(stage: &str, epoch: u64) {
    static FAULT: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let fault = FAULT.get_or_init(|| {
        let text = std::env::var("QUICKCHAT_FAULT").ok()?;
        let (stage, epoch) = text.split_once('@')?;
        Some((stage.to_string(), epoch.parse().ok()?))
    });
    if fault.as_ref().is_some_and(|(s, e)| s == stage && *e == epoch) {
        eprintln!("QUICKCHAT_FAULT: aborting at {stage} of epoch {epoch}");
        std::process::abort();
    }
}

/// A pipeline ready to run: queries analysed, state restored.
pub struct Engine<'a> {
    pipeline: &'a StreamPipeline,
    /// The same pipeline, for the queries' tasks.
    shared: Arc<StreamPipeline>,
    lake: &'a Lake,
    input: Input,
    checkpoints: Checkpoints,
    sinks: SinkWriter<'a>,
    sources: BTreeMap<String, SourceState>,
    decoders: HashMap<String, ProtobufDecoder>,
    queries: Vec<Query>,
    /// Joined sources and their retained rows.
    buffers: BTreeMap<String, Option<RecordBatch>>,
    alerts: Alerts,
    /// Sinks skipped because their server is not configured.
    skipped: Vec<String>,
    lineage: String,
    epoch: u64,
    positions: Positions,
    finished: bool,
    last_snapshot: (Instant, u64),
    report: RunReport,
}

/// Where the sinks' servers are.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    /// MySQL URL with credentials.
    pub mysql_url: Option<String>,
    /// Kafka bootstrap servers.
    pub brokers: Option<String>,
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
        let joined: BTreeSet<String> = queries
            .iter()
            .filter_map(|q| match &q.analysis.kind {
                QueryKind::Windowed { join: Some(join), .. } => Some(join.source.clone()),
                _ => None,
            })
            .collect();
        let mut decoders = HashMap::new();
        for source in &pipeline.sources {
            if let (Codec::Protobuf, Some(set), Some(message)) = (
                input.codec(source.def.format),
                &source.descriptor_set,
                &source.def.message,
            ) {
                let decoder = ProtobufDecoder::new(set, message, source.value_schema.clone())
                    .map_err(|e| Error::config_in(&pipeline.pipeline_path, format!("sources.{}: {e}", source.name)))?;
                decoders.insert(source.name.clone(), decoder);
            }
        }
        let checkpoints = Checkpoints::new(lake, &pipeline.name, input.kind())?;
        let sinks = SinkWriter::new(
            lake,
            pipeline,
            input.kind(),
            "",
            settings.mysql_url.clone(),
            settings.brokers.clone(),
        );
        let mut skipped = Vec::new();
        let every_sink = pipeline
            .outputs
            .iter()
            .flat_map(|o| o.sinks.iter().map(move |s| (o.name.as_str(), s)))
            .chain(
                pipeline
                    .alerts
                    .iter()
                    .flat_map(|a| a.sinks.iter().map(|s| ("alerts", s))),
            );
        for (output, sink) in every_sink {
            if let Some(reason) = sinks.unavailable(sink) {
                if matches!(input, Input::Kafka(_)) {
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
            buffers: joined.into_iter().map(|s| (s, None)).collect(),
            alerts,
            skipped,
            lineage: String::new(),
            epoch: 0,
            positions: Positions::new(),
            finished: false,
            last_snapshot: (Instant::now(), 0),
            report: RunReport::default(),
        };
        engine.restore(settings).await?;
        Ok(engine)
    }

    /// The checkpoint folder.
    pub fn checkpoint_location(&self) -> &str {
        self.checkpoints.location()
    }

    /// Loads the latest snapshot (or starts afresh) and processes the logged epochs after it.
    async fn restore(&mut self, settings: SinkSettings) -> Result<()> {
        let last_commit = self.checkpoints.last_commit().await?;
        let committed = last_commit.as_ref().map_or(0, |c| c.epoch);
        let last_logged = self.checkpoints.last_logged_epoch().await?.unwrap_or(0);
        let snapshot = match self.checkpoints.latest_snapshot(committed).await? {
            Some(snapshot) => snapshot,
            None if last_logged > 0 => {
                return Err(Error::Lake {
                    location: self.checkpoints.location().to_string(),
                    message: format!(
                        "epochs up to {last_logged} are logged but no state snapshot is left to resume from; \
                         `quickchat-etl checkpoints {} --reset` starts over",
                        self.pipeline.name
                    ),
                });
            }
            None => {
                let snapshot = Snapshot {
                    epoch: 0,
                    lineage: new_lineage(),
                    positions: self.input.start_positions().await?,
                    generator_start_ms: self.input.generator_start_ms(),
                    ..Default::default()
                };
                self.checkpoints.write_snapshot(&snapshot).await?;
                snapshot
            }
        };
        self.apply(snapshot.clone())?;
        self.sinks = SinkWriter::new(
            self.lake,
            self.pipeline,
            self.input.kind(),
            &snapshot.lineage,
            settings.mysql_url,
            settings.brokers,
        );
        self.input.resume(snapshot.generator_start_ms, &snapshot.positions);
        if snapshot.epoch > 0 || last_logged > 0 {
            tracing::info!(pipeline = %self.pipeline.name, checkpoint = %self.checkpoints.location(),
                snapshot = snapshot.epoch, committed, logged = last_logged, "resuming from checkpoint");
        }
        for epoch in snapshot.epoch + 1..=last_logged {
            let range = self.checkpoints.read_offsets(epoch).await?.ok_or_else(|| Error::Lake {
                location: self.checkpoints.location().to_string(),
                message: format!("the offsets of epoch {epoch} are missing; the checkpoint is damaged"),
            })?;
            let batch = self.input.replay(&range).await?;
            self.report.replayed += 1;
            self.process(range, batch, epoch <= committed).await?;
        }
        Ok(())
    }

    fn apply(&mut self, snapshot: Snapshot) -> Result<()> {
        self.lineage = snapshot.lineage;
        self.epoch = snapshot.epoch;
        self.positions = snapshot.positions;
        self.last_snapshot = (Instant::now(), snapshot.epoch);
        for (name, state) in &mut self.sources {
            state.progress = snapshot.event_time.get(name).cloned().unwrap_or_default();
            state.keys = snapshot.keys.get(name).into_iter().flatten().copied().collect();
        }
        for (name, buffer) in &mut self.buffers {
            *buffer = match snapshot.buffers.get(name) {
                Some(batches) if !batches.is_empty() => {
                    Some(concat_batches(&batches[0].schema(), batches).map_err(|e| Error::Internal(e.to_string()))?)
                }
                _ => None,
            };
        }
        for query in &mut self.queries {
            let name = &query.output.name;
            let windows = snapshot.windows.get(name).cloned().unwrap_or_default();
            // A state saved by another plan (the SQL changed, or the way quickchat-etl computes
            // it) cannot be merged with this one's.
            if let (Some(expected), Some(saved)) = (&query.analysis.state_schema, windows.first()) {
                let shape = |schema: &arrow::datatypes::Schema| {
                    schema
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().clone()))
                        .collect::<Vec<_>>()
                };
                if shape(&saved.schema()) != shape(expected) {
                    return Err(Error::Config(vec![ConfigProblem::in_file(
                        query.output.sql_path.clone(),
                        format!(
                            "the state of output `{name}` saved in {} (snapshot {}) does not fit this query: its \
                             SQL, or how quickchat-etl computes it, changed since. `quickchat-etl checkpoints {} \
                             --reset` starts over from the configured starting offsets",
                            self.checkpoints.location(),
                            snapshot.epoch,
                            self.pipeline.name
                        ),
                    )]));
                }
            }
            let pending = snapshot.pending.get(name).cloned().unwrap_or_default();
            query.restore(windows, pending)?;
        }
        let raised = snapshot
            .keys
            .iter()
            .filter_map(|(name, keys)| Some((name.strip_prefix("alerts.")?.to_string(), keys.clone())))
            .collect();
        self.alerts.restore(raised);
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        let mut keys: BTreeMap<String, Vec<(u128, i64)>> = self
            .sources
            .iter()
            .map(|(name, state)| (name.clone(), state.keys_snapshot()))
            .collect();
        keys.extend(
            self.alerts
                .raised()
                .into_iter()
                .map(|(rule, raised)| (format!("alerts.{rule}"), raised)),
        );
        let mut windows = BTreeMap::new();
        let mut pending = BTreeMap::new();
        for query in &self.queries {
            let (w, p) = query.state_batches();
            windows.insert(query.output.name.clone(), w);
            pending.insert(query.output.name.clone(), p);
        }
        Snapshot {
            epoch: self.epoch,
            lineage: self.lineage.clone(),
            positions: self.positions.clone(),
            generator_start_ms: self.input.generator_start_ms(),
            event_time: self
                .sources
                .iter()
                .map(|(name, state)| (name.clone(), state.progress.clone()))
                .collect(),
            keys,
            buffers: self
                .buffers
                .iter()
                .map(|(name, buffer)| (name.clone(), buffer.iter().cloned().collect()))
                .collect(),
            windows,
            pending,
        }
    }

    async fn save_snapshot(&mut self) -> Result<()> {
        if self.last_snapshot.1 == self.epoch {
            return Ok(());
        }
        self.checkpoints.write_snapshot(&self.snapshot()).await?;
        self.last_snapshot = (Instant::now(), self.epoch);
        Ok(())
    }

    /// Runs micro-batches until the input ends, the run is caught up, or `stop` is set.
    pub async fn run(&mut self, options: &RunOptions) -> Result<RunReport> {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut progress_from = (self.report.records, self.epoch);
        self.report.ended = loop {
            if self.finished {
                break Ended::EndOfInput;
            }
            if options.stop.load(Ordering::SeqCst) {
                break Ended::Stopped;
            }
            if options.until_caught_up && self.input.caught_up(&self.positions).await? {
                break Ended::CaughtUp;
            }
            let stage = Instant::now();
            let batch = self
                .input
                .next(&self.positions, self.pipeline.max_records, self.pipeline.interval)
                .await?;
            self.report.timed("read", stage);
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
            if last_progress.elapsed() >= Duration::from_secs(10) {
                let seconds = last_progress.elapsed().as_secs_f64();
                tracing::info!(
                    pipeline = %self.pipeline.name,
                    epoch = self.epoch,
                    epochs = self.epoch - progress_from.1,
                    records_per_s = ((self.report.records - progress_from.0) as f64 / seconds) as u64,
                    late = self.report.late,
                    duplicates = self.report.duplicates,
                    quarantined = self.report.rejected,
                    state_rows = self.state_rows(),
                    "progress"
                );
                last_progress = Instant::now();
                progress_from = (self.report.records, self.epoch);
            }
        };
        self.save_snapshot().await?;
        self.report.last_epoch = self.epoch;
        self.report.state_rows = self.state_rows();
        self.report.elapsed = started.elapsed();
        Ok(self.report.clone())
    }

    fn state_rows(&self) -> usize {
        let buffers: usize = self.buffers.values().flatten().map(RecordBatch::num_rows).sum();
        buffers + self.queries.iter().map(Query::state_rows).sum::<usize>()
    }

    /// Decodes, de-duplicates and splits one epoch's records; returns what the queries get, the
    /// late records (with the watermark they missed) and the rejects.
    fn ingest(&mut self, range: &EpochRange, batch: &InputBatch) -> Result<(BatchInput, Vec<Late>, Vec<StreamReject>)> {
        let mut input = BatchInput {
            end_of_input: range.end_of_input,
            ..Default::default()
        };
        let mut late = Vec::new();
        let mut rejects = Vec::new();
        for source in &self.pipeline.sources {
            let empty = Default::default();
            let raw = batch.records.get(&source.name).unwrap_or(&empty);
            self.report.records += raw.len() as u64;
            let stage = Instant::now();
            let (decoded, rejected) = decode(source, self.decoders.get(&source.name), raw)?;
            self.report.timed(format!("decode {}", source.name), stage);
            let stage = Instant::now();
            self.report.rejected += rejected.len() as u64;
            rejects.extend(rejected);
            let state = self.sources.get_mut(&source.name).expect("a state per source");
            let watermark_before = state.watermark();
            let partitions = range.idle.get(&source.name).cloned().unwrap_or_default();
            let ingested = state.ingest(source, decoded, &partitions);
            self.report.duplicates += ingested.duplicates as u64;
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
            if let Some(buffer) = self.buffers.get_mut(&source.name) {
                let rows = match buffer.take() {
                    Some(held) => concat_batches(&source.schema, [&held, &ingested.on_time])
                        .map_err(|e| Error::Internal(e.to_string()))?,
                    None => ingested.on_time.clone(),
                };
                input.buffers.insert(source.name.clone(), rows.clone());
                *buffer = Some(rows);
            }
            input.on_time.insert(source.name.clone(), ingested.on_time);
            input.all.insert(source.name.clone(), ingested.all);
            self.report.timed(format!("ingest {}", source.name), stage);
        }
        Ok((input, late, rejects))
    }

    /// Runs every output's query over an epoch (see [`run_outputs`]).
    async fn run_queries(&mut self, input: &Arc<BatchInput>, only_needed: bool) -> Result<Vec<Emitted>> {
        run_outputs(&mut self.queries, &self.shared, input, only_needed, &mut self.report).await
    }

    /// Lets join buffers drop rows no waiting row can match, and sources forget old keys.
    fn evict(&mut self, input: &BatchInput) {
        let mut retention: HashMap<String, i64> = HashMap::new();
        for query in &self.queries {
            if let Some((source, keep_from)) = query.join_retention(self.pipeline, input) {
                let entry = retention.entry(source).or_insert(keep_from);
                *entry = (*entry).min(keep_from);
            }
        }
        for (name, buffer) in &mut self.buffers {
            let (Some(rows), Some(keep_from)) = (buffer.as_ref(), retention.get(name)) else {
                continue;
            };
            let source = self.pipeline.source(name).expect("buffers are of sources");
            let times = rows
                .column(source.event_time)
                .as_primitive::<TimestampMicrosecondType>();
            let keep: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t >= *keep_from))).collect();
            if keep.true_count() < rows.num_rows() {
                *buffer = Some(filter_record_batch(rows, &keep).expect("filter"));
            }
        }
        for source in &self.pipeline.sources {
            if let Some(state) = self.sources.get_mut(&source.name) {
                state.forget_old_keys(source);
            }
        }
    }

    /// Processes one epoch; `replay` marks an epoch committed before a restart.
    async fn process(&mut self, range: EpochRange, batch: InputBatch, replay: bool) -> Result<()> {
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
                    OutputMode::Append => &out.append,
                    OutputMode::Update => &out.update,
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
        self.evict(&input);
        self.report.timed("evict", stage);
        self.commit(&range, started, oldest_record_ms).await
    }

    /// Processes one epoch without writing anything but the checkpoint (benchmarks).
    async fn process_without_sinks(&mut self, range: EpochRange, batch: InputBatch) -> Result<()> {
        let started = Instant::now();
        let input = Arc::new(self.ingest(&range, &batch)?.0);
        drop(batch);
        self.run_queries(&input, true).await?;
        let stage = Instant::now();
        self.evict(&input);
        self.report.timed("evict", stage);
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
        Ok(())
    }
}

/// A source's late records of an epoch.
struct Late {
    source: StreamSource,
    rows: RecordBatch,
    watermark: i64,
}

/// A new checkpoint lineage id: the time it began and a random suffix.
fn new_lineage() -> String {
    format!("{}-{:04x}", Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u16>())
}
