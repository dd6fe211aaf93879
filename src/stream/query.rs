//! Running one output of a streaming pipeline, micro-batch by micro-batch.
//!
//! Each micro-batch the output's SQL is planned afresh over that batch's tables, then:
//! - a *stateless* query just runs;
//! - a *global* aggregate folds the batch into one state row per group and emits the groups
//!   that changed;
//! - a *windowed* aggregate folds the rows that are ready into per-window state, emits windows
//!   whose end the watermark passed (append and update sinks) and the groups that changed in
//!   windows still open (update sinks), then forgets the closed windows. In a join, windowed rows
//!   wait until the joined stream's watermark passes their upper time bound, so every match has
//!   arrived before they are aggregated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::common::DFSchema;
use datafusion::datasource::MemTable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use super::aggregate::SplitPlan;
use super::analysis::{Analysis, QueryKind, planning_session};
use super::session::SessionWindows;
use super::window::{WindowSpec, WindowTables, assign_windows};
use super::{StreamOutput, StreamPipeline};
use crate::error::{Error, Result};
use crate::query::new_session;

/// Everything one micro-batch brings, shared by all outputs.
#[derive(Debug, Default)]
pub struct BatchInput {
    /// Per source: rows at or after the watermark (they feed aggregates).
    pub on_time: HashMap<String, RecordBatch>,
    /// Per source: every row kept, late ones too (stateless queries see these).
    pub all: HashMap<String, RecordBatch>,
    /// Per joined source: every row retained for joins, this batch's included.
    pub buffers: HashMap<String, RecordBatch>,
    /// Per source: the watermark after this batch (microseconds; `i64::MIN` before any row).
    pub watermarks: HashMap<String, i64>,
    /// The input is over: every window closes.
    pub end_of_input: bool,
}

impl BatchInput {
    fn watermark(&self, source: &str) -> i64 {
        if self.end_of_input {
            i64::MAX
        } else {
            self.watermarks.get(source).copied().unwrap_or(i64::MIN)
        }
    }
}

/// What an output emits in one micro-batch.
#[derive(Debug, Default, Clone)]
pub struct Emitted {
    /// Final rows: for append sinks (and later outputs reading this one).
    pub append: Vec<RecordBatch>,
    /// Changed rows, final ones included: for update sinks.
    pub update: Vec<RecordBatch>,
}

/// What an aggregate remembers between micro-batches.
#[derive(Debug, Default, Clone)]
pub struct QueryState {
    /// Accumulator states by window `(end, start)` (sessions and global aggregates use one
    /// bucket), one batch per bucket after reduction.
    pub windows: BTreeMap<(i64, i64), Vec<RecordBatch>>,
    /// In a join: windowed-source rows waiting for the joined stream's watermark.
    pub pending: Vec<RecordBatch>,
}

/// One output, with its state.
#[derive(Debug)]
pub struct Query {
    /// The output.
    pub output: StreamOutput,
    /// What its SQL is.
    pub analysis: Analysis,
    /// Its state.
    pub state: QueryState,
    /// The analysis' `source_filter`, ready to evaluate on the windowed source's rows.
    source_filter: Option<Arc<dyn PhysicalExpr>>,
}

/// The bucket of aggregates without windows, and of sessions.
const ONE_BUCKET: (i64, i64) = (i64::MAX, i64::MIN);

impl Query {
    /// A query with empty state, for `pipeline`.
    pub fn new(pipeline: &StreamPipeline, output: StreamOutput, analysis: Analysis) -> Result<Self> {
        let source_filter = match (&analysis.kind, &analysis.source_filter) {
            (QueryKind::Windowed { window, .. }, Some(condition)) => {
                let source = pipeline.source(&window.source).expect("analysed windows name sources");
                let sql_error = |e: datafusion::error::DataFusionError| Error::Sql {
                    job: pipeline.name.clone(),
                    file: output.sql_path.clone(),
                    message: e.to_string(),
                };
                let schema = DFSchema::try_from(source.schema.as_ref().clone()).map_err(sql_error)?;
                Some(
                    new_session()
                        .create_physical_expr(condition.clone(), &schema)
                        .map_err(sql_error)?,
                )
            }
            _ => None,
        };
        Ok(Self {
            output,
            analysis,
            state: QueryState::default(),
            source_filter,
        })
    }

    /// The rows of the windowed source the query's own conditions on it accept.
    fn accepted(&self, rows: RecordBatch) -> Result<RecordBatch> {
        let Some(filter) = &self.source_filter else {
            return Ok(rows);
        };
        let error = |e: String| Error::Internal(format!("{}: the WHERE on the windowed source: {e}", self.output.name));
        let mask = filter
            .evaluate(&rows)
            .and_then(|v| v.into_array(rows.num_rows()))
            .map_err(|e| error(e.to_string()))?;
        let mask = mask.as_boolean_opt().ok_or_else(|| error("not a condition".into()))?;
        filter_record_batch(&rows, mask).map_err(|e| error(e.to_string()))
    }

    fn sql_error(&self, pipeline: &StreamPipeline, e: impl std::fmt::Display) -> Error {
        Error::Sql {
            job: pipeline.name.clone(),
            file: self.output.sql_path.clone(),
            message: e.to_string(),
        }
    }

    /// Runs one micro-batch. `outputs` holds the final rows earlier outputs emitted in it.
    pub async fn run(
        &mut self,
        pipeline: &StreamPipeline,
        input: &BatchInput,
        outputs: &HashMap<String, (SchemaRef, Vec<RecordBatch>)>,
    ) -> Result<Emitted> {
        match self.analysis.kind.clone() {
            QueryKind::Stateless => {
                let ctx = self.session(pipeline, input, outputs, None);
                let rows = self
                    .plan(pipeline, &ctx)
                    .await?
                    .collect()
                    .await
                    .map_err(|e| self.sql_error(pipeline, e))?;
                Ok(Emitted {
                    append: rows.clone(),
                    update: rows,
                })
            }
            QueryKind::Global => self.run_global(pipeline, input, outputs).await,
            QueryKind::Windowed { .. } => self.run_windowed(pipeline, input, outputs).await,
        }
    }

    async fn plan(&self, pipeline: &StreamPipeline, ctx: &SessionContext) -> Result<datafusion::prelude::DataFrame> {
        ctx.sql(&self.output.sql).await.map_err(|e| self.sql_error(pipeline, e))
    }

    async fn split(&self, pipeline: &StreamPipeline, ctx: &SessionContext) -> Result<SplitPlan> {
        let physical = self
            .plan(pipeline, ctx)
            .await?
            .create_physical_plan()
            .await
            .map_err(|e| self.sql_error(pipeline, e))?;
        tracing::trace!(output = %self.output.name, plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(true), "physical plan");
        SplitPlan::split(&physical)
            .map_err(|e| self.sql_error(pipeline, e))?
            .ok_or_else(|| self.sql_error(pipeline, "the query lost its aggregate"))
    }

    /// A session with this micro-batch's tables for the query.
    fn session(
        &self,
        pipeline: &StreamPipeline,
        input: &BatchInput,
        outputs: &HashMap<String, (SchemaRef, Vec<RecordBatch>)>,
        windowed: Option<(&super::window::WindowUse, RecordBatch)>,
    ) -> SessionContext {
        let schemas = pipeline
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.schema.clone()))
            .collect();
        let tables = Arc::new(WindowTables::new(schemas));
        if let Some((window, rows)) = &windowed {
            tables.prepare((*window).clone(), rows.clone());
        }
        let output_schemas = outputs
            .iter()
            .map(|(name, (schema, _))| (name.clone(), schema.clone()))
            .collect();
        // In a join, only joined rows inside the time bounds of some windowed row can match.
        let join_span = match (&self.analysis.kind, &windowed) {
            (QueryKind::Windowed { join: Some(join), .. }, Some((window, rows))) => {
                let source = pipeline.source(&window.source).expect("analysed windows name sources");
                let times = rows
                    .column(source.event_time)
                    .as_primitive::<TimestampMicrosecondType>();
                arrow::compute::min(times)
                    .zip(arrow::compute::max(times))
                    .map(|(min, max)| (join, min.saturating_add(join.lower), max.saturating_add(join.upper)))
            }
            _ => None,
        };
        let ctx = planning_session(pipeline, &output_schemas, &tables);
        for name in &self.analysis.reads {
            let (schema, rows) = match pipeline.source(name) {
                Some(source) => {
                    let rows = match &self.analysis.kind {
                        QueryKind::Stateless => input.all.get(name),
                        QueryKind::Global => input.on_time.get(name),
                        QueryKind::Windowed { .. } => input.buffers.get(name),
                    };
                    let rows = match (rows, join_span) {
                        (Some(rows), Some((join, from, to))) if join.source == *name => {
                            Some(rows_between(rows, source.event_time, from, to))
                        }
                        (rows, _) => rows.cloned(),
                    };
                    (source.schema.clone(), rows.into_iter().collect::<Vec<_>>())
                }
                None => outputs
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| (self.analysis.schema.clone(), Vec::new())),
            };
            let table = MemTable::try_new(schema, vec![rows]).expect("rows match their table's schema");
            let _ = ctx.deregister_table(name.as_str());
            ctx.register_table(name.as_str(), Arc::new(table))
                .expect("tables register");
        }
        ctx
    }

    async fn run_global(
        &mut self,
        pipeline: &StreamPipeline,
        input: &BatchInput,
        outputs: &HashMap<String, (SchemaRef, Vec<RecordBatch>)>,
    ) -> Result<Emitted> {
        let new_rows: usize = self
            .analysis
            .reads
            .iter()
            .map(|name| match pipeline.source(name) {
                Some(_) => input.on_time.get(name).map_or(0, RecordBatch::num_rows),
                None => outputs
                    .get(name)
                    .map_or(0, |(_, rows)| rows.iter().map(RecordBatch::num_rows).sum()),
            })
            .sum();
        if new_rows == 0 {
            return Ok(Emitted::default());
        }
        let ctx = self.session(pipeline, input, outputs, None);
        let split = self.split(pipeline, &ctx).await?;
        let task = ctx.task_ctx();
        let partial = split
            .partial(task.clone())
            .await
            .map_err(|e| self.sql_error(pipeline, e))?;
        let bucket = self.state.windows.entry(ONE_BUCKET).or_default();
        bucket.extend(partial.iter().cloned());
        let reduced = split
            .reduce(std::mem::take(bucket), task.clone())
            .await
            .map_err(|e| self.sql_error(pipeline, e))?;
        *self.state.windows.get_mut(&ONE_BUCKET).expect("bucket exists") = reduced.clone();
        let changed = rows_with_keys_of(&reduced, &partial, &group_indices(&split, &reduced))?;
        let update = split
            .finish(changed, task)
            .await
            .map_err(|e| self.sql_error(pipeline, e))?;
        Ok(Emitted {
            append: Vec::new(),
            update,
        })
    }

    async fn run_windowed(
        &mut self,
        pipeline: &StreamPipeline,
        input: &BatchInput,
        outputs: &HashMap<String, (SchemaRef, Vec<RecordBatch>)>,
    ) -> Result<Emitted> {
        let QueryKind::Windowed { window, join } = self.analysis.kind.clone() else {
            unreachable!("windowed")
        };
        let source = pipeline.source(&window.source).expect("analysed windows name sources");
        let new_rows = input
            .on_time
            .get(&window.source)
            .cloned()
            .unwrap_or_else(|| RecordBatch::new_empty(source.schema.clone()));

        // Rows that may be aggregated now, and the watermark of this query's results.
        let (ready, query_watermark) = match &join {
            None => (new_rows, input.watermark(&window.source)),
            Some(join) => {
                // Only rows the query's WHERE accepts wait for the joined stream.
                let new_rows = self.accepted(new_rows)?;
                if new_rows.num_rows() > 0 {
                    self.state.pending.push(new_rows);
                }
                let joined_watermark = input.watermark(&join.source);
                // Each pending batch is split only when the watermark cuts through it: a batch
                // wholly waiting stays as it is, so waiting rows are not copied every epoch.
                let mut ready_batches = Vec::new();
                let mut waiting_batches = Vec::new();
                let mut oldest_waiting: Option<i64> = None;
                let earliest = |a: Option<i64>, b: Option<i64>| a.into_iter().chain(b).min();
                let is_ready = |t: i64| t.saturating_add(join.upper) <= joined_watermark;
                for batch in std::mem::take(&mut self.state.pending) {
                    let times = batch
                        .column(source.event_time)
                        .as_primitive::<TimestampMicrosecondType>();
                    let (Some(min), Some(max)) = (arrow::compute::min(times), arrow::compute::max(times)) else {
                        continue;
                    };
                    if is_ready(max) {
                        ready_batches.push(batch);
                    } else if !is_ready(min) {
                        oldest_waiting = earliest(oldest_waiting, Some(min));
                        waiting_batches.push(batch);
                    } else {
                        let waiting_min = times.values().iter().copied().filter(|t| !is_ready(*t)).min();
                        oldest_waiting = earliest(oldest_waiting, waiting_min);
                        let mask: BooleanArray = times.values().iter().map(|t| Some(is_ready(*t))).collect();
                        ready_batches
                            .push(filter_record_batch(&batch, &mask).map_err(|e| self.sql_error(pipeline, e))?);
                        let not = arrow::compute::not(&mask).expect("boolean");
                        waiting_batches
                            .push(filter_record_batch(&batch, &not).map_err(|e| self.sql_error(pipeline, e))?);
                    }
                }
                let ready = concat_batches(&source.schema, &ready_batches).map_err(|e| self.sql_error(pipeline, e))?;
                self.state.pending = waiting_batches;
                let watermark = input.watermark(&window.source).min(oldest_waiting.unwrap_or(i64::MAX));
                (ready, watermark)
            }
        };

        let sessions = match &window.spec {
            WindowSpec::Session { gap, keys } => Some(SessionWindows::new(*gap, keys.clone())),
            _ => None,
        };
        let windowed = match &sessions {
            Some(sessions) => sessions.assign(&ready, source.event_time, &mut self.state, &window.spec)?,
            None => assign_windows(&ready, source.event_time, &window.spec),
        };
        let closing: Vec<(i64, i64)> = match &sessions {
            Some(_) => Vec::new(),
            None => self
                .state
                .windows
                .keys()
                .filter(|(end, _)| *end <= query_watermark)
                .copied()
                .collect(),
        };
        let sessions_closing = sessions
            .as_ref()
            .is_some_and(|s| s.any_closing(&self.state, query_watermark));
        if windowed.num_rows() == 0 && closing.is_empty() && !sessions_closing {
            return Ok(Emitted::default());
        }

        // A join runs over slices of the windowed rows by event time, each against the joined
        // rows its bounds can reach: fewer candidate pairs, and a large catch-up (the end of
        // the input, a restart after a pause) streams through in pieces instead of at once.
        let chunks = match &join {
            Some(join) if sessions.is_none() => {
                let span = ((join.upper - join.lower) / 4).max(JOIN_SLICE_MIN);
                time_slices(&windowed, source.event_time, span).map_err(|e| self.sql_error(pipeline, e))?
            }
            _ => vec![windowed.clone()],
        };
        let mut partial = Vec::new();
        let mut planned = None;
        for chunk in chunks {
            let ctx = self.session(pipeline, input, outputs, Some((&window, chunk.clone())));
            let split = self.split(pipeline, &ctx).await?;
            let task = ctx.task_ctx();
            if chunk.num_rows() > 0 {
                partial.extend(
                    split
                        .partial(task.clone())
                        .await
                        .map_err(|e| self.sql_error(pipeline, e))?,
                );
            }
            planned.get_or_insert((split, task));
        }
        let (split, task) = planned.expect("at least one slice");
        let mut emitted = Emitted::default();
        if let Some(sessions) = &sessions {
            let closed = sessions
                .fold(&split, partial, &mut self.state, query_watermark, task.clone())
                .await?;
            if !closed.is_empty() {
                emitted.append = split
                    .finish(closed, task)
                    .await
                    .map_err(|e| self.sql_error(pipeline, e))?;
            }
            emitted.update = emitted.append.clone();
            return Ok(emitted);
        }

        // Fold the new states into their windows.
        let (start, end) = window.spec.columns();
        let mut touched = Vec::new();
        for batch in &partial {
            for (bucket, rows) in split_by_window(batch, start, end)? {
                self.state.windows.entry(bucket).or_default().push(rows);
                touched.push(bucket);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for bucket in &touched {
            let states = std::mem::take(self.state.windows.get_mut(bucket).expect("touched bucket exists"));
            let reduced = split
                .reduce(states, task.clone())
                .await
                .map_err(|e| self.sql_error(pipeline, e))?;
            *self.state.windows.get_mut(bucket).expect("touched bucket exists") = reduced;
        }

        // Windows the watermark passed are final; open windows that changed emit their changed groups.
        let closing: Vec<(i64, i64)> = self
            .state
            .windows
            .keys()
            .filter(|(end, _)| *end <= query_watermark)
            .copied()
            .collect();
        let closed_states: Vec<RecordBatch> = closing
            .iter()
            .flat_map(|b| self.state.windows.remove(b).unwrap_or_default())
            .collect();
        if !closed_states.is_empty() {
            emitted.append = split
                .finish(closed_states, task.clone())
                .await
                .map_err(|e| self.sql_error(pipeline, e))?;
        }
        let open_states: Vec<RecordBatch> = touched
            .iter()
            .filter_map(|b| self.state.windows.get(b))
            .flatten()
            .cloned()
            .collect();
        if !open_states.is_empty() {
            let changed = rows_with_keys_of(&open_states, &partial, &group_indices(&split, &open_states))?;
            emitted.update = split
                .finish(changed, task)
                .await
                .map_err(|e| self.sql_error(pipeline, e))?;
        }
        emitted.update.extend(emitted.append.iter().cloned());
        Ok(emitted)
    }

    /// The state to save in a snapshot: accumulator states (every window's) and pending rows.
    pub fn state_batches(&self) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
        let windows = self.state.windows.values().flatten().cloned().collect();
        (windows, self.state.pending.clone())
    }

    /// Restores the state saved by [`Query::state_batches`].
    pub fn restore(&mut self, windows: Vec<RecordBatch>, pending: Vec<RecordBatch>) -> Result<()> {
        self.state = QueryState::default();
        match &self.analysis.kind {
            QueryKind::Windowed { window, .. } if !matches!(window.spec, WindowSpec::Session { .. }) => {
                let (start, end) = window.spec.columns();
                for batch in &windows {
                    for (bucket, rows) in split_by_window(batch, start, end)? {
                        self.state.windows.entry(bucket).or_default().push(rows);
                    }
                }
            }
            _ if windows.is_empty() => {}
            _ => {
                self.state.windows.insert(ONE_BUCKET, windows);
            }
        }
        self.state.pending = pending;
        Ok(())
    }

    /// Open windows (or groups, or sessions) held, for progress reports.
    pub fn state_rows(&self) -> usize {
        self.state
            .windows
            .values()
            .flatten()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            + self.state.pending.iter().map(RecordBatch::num_rows).sum::<usize>()
    }

    /// For a join: the joined source and the event time below which its rows can no longer match.
    pub fn join_retention(&self, pipeline: &StreamPipeline, input: &BatchInput) -> Option<(String, i64)> {
        let QueryKind::Windowed {
            window,
            join: Some(join),
        } = &self.analysis.kind
        else {
            return None;
        };
        let source = pipeline.source(&window.source)?;
        let oldest_waiting = self
            .state
            .pending
            .iter()
            .filter_map(|b| arrow::compute::min(b.column(source.event_time).as_primitive::<TimestampMicrosecondType>()))
            .min();
        let driving = input.watermark(&window.source).min(oldest_waiting.unwrap_or(i64::MAX));
        Some((join.source.clone(), driving.saturating_add(join.lower)))
    }
}

/// The state rows' group columns, by position.
fn group_indices(split: &SplitPlan, states: &[RecordBatch]) -> Vec<usize> {
    let Some(first) = states.first() else { return Vec::new() };
    split
        .group_columns()
        .iter()
        .filter_map(|name| first.schema().index_of(name).ok())
        .collect()
}

/// Splits accumulator states by their window `(end, start)`.
fn split_by_window(states: &RecordBatch, start: &str, end: &str) -> Result<Vec<((i64, i64), RecordBatch)>> {
    let column = |name: &str| {
        let schema = states.schema();
        let index = schema
            .fields()
            .iter()
            .position(|f| f.name() == name || f.name().ends_with(&format!(".{name}")))
            .ok_or_else(|| Error::Internal(format!("no {name} column in the aggregate state")))?;
        Ok::<_, Error>(states.column(index).as_primitive::<TimestampMicrosecondType>().clone())
    };
    let (starts, ends) = (column(start)?, column(end)?);
    let mut rows: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
    for row in 0..states.num_rows() {
        rows.entry((ends.value(row), starts.value(row)))
            .or_default()
            .push(row as u32);
    }
    rows.into_iter()
        .map(|(bucket, indices)| {
            let rows =
                take_record_batch(states, &UInt32Array::from(indices)).map_err(|e| Error::Internal(e.to_string()))?;
            Ok((bucket, rows))
        })
        .collect()
}

/// Rows of `states` whose group columns equal those of some row of `keys`.
pub fn rows_with_keys_of(states: &[RecordBatch], keys: &[RecordBatch], columns: &[usize]) -> Result<Vec<RecordBatch>> {
    let (Some(first), false) = (states.first(), keys.is_empty()) else {
        return Ok(Vec::new());
    };
    if columns.is_empty() {
        // No group columns: one group, and it changed.
        return Ok(states.to_vec());
    }
    let fields: Vec<SortField> = columns
        .iter()
        .map(|&i| SortField::new(first.schema().field(i).data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(|e| Error::Internal(e.to_string()))?;
    let pick = |batch: &RecordBatch| columns.iter().map(|&i| batch.column(i).clone()).collect::<Vec<_>>();
    let mut wanted = HashSet::new();
    for batch in keys {
        let rows = converter
            .convert_columns(&pick(batch))
            .map_err(|e| Error::Internal(e.to_string()))?;
        wanted.extend(rows.iter().map(|r| r.owned()));
    }
    let mut out = Vec::new();
    for batch in states {
        let rows = converter
            .convert_columns(&pick(batch))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let keep: BooleanArray = rows.iter().map(|r| Some(wanted.contains(&r.owned()))).collect();
        if keep.true_count() > 0 {
            out.push(filter_record_batch(batch, &keep).map_err(|e| Error::Internal(e.to_string()))?);
        }
    }
    Ok(out)
}

/// The shortest slice of event time a join runs over.
const JOIN_SLICE_MIN: i64 = 60_000_000;

/// `rows` cut into slices of `span` of event time (column `time`), in time order; `rows` whole
/// when they cover less than two slices.
fn time_slices(
    rows: &RecordBatch,
    time: usize,
    span: i64,
) -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let times = rows.column(time).as_primitive::<TimestampMicrosecondType>();
    let (Some(min), Some(max)) = (arrow::compute::min(times), arrow::compute::max(times)) else {
        return Ok(vec![rows.clone()]);
    };
    if times.null_count() > 0 || max - min < 2 * span {
        return Ok(vec![rows.clone()]);
    }
    let slice_of = |t: i64| ((t - min) / span) as usize;
    let slices = slice_of(max) + 1;
    let mut starts = vec![0usize; slices + 1];
    for t in times.values() {
        starts[slice_of(*t) + 1] += 1;
    }
    for i in 1..=slices {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; rows.num_rows()];
    for (row, t) in times.values().iter().enumerate() {
        let slice = slice_of(*t);
        order[next[slice]] = row as u32;
        next[slice] += 1;
    }
    let sorted = take_record_batch(rows, &UInt32Array::from(order))?;
    Ok((0..slices)
        .filter(|s| starts[s + 1] > starts[*s])
        .map(|s| sorted.slice(starts[s], starts[s + 1] - starts[s]))
        .collect())
}

/// The rows of `batch` whose event time (column `time`) is within `[from, to]`; the batch itself
/// when all are.
fn rows_between(batch: &RecordBatch, time: usize, from: i64, to: i64) -> RecordBatch {
    let times = batch.column(time).as_primitive::<TimestampMicrosecondType>();
    let within = |t: i64| t >= from && t <= to;
    match (arrow::compute::min(times), arrow::compute::max(times)) {
        (Some(min), Some(max)) if within(min) && within(max) => batch.clone(),
        (None, _) | (_, None) => batch.clone(),
        _ => {
            let mask: BooleanArray = times.iter().map(|t| Some(t.is_some_and(within))).collect();
            filter_record_batch(batch, &mask).expect("a mask as long as the batch")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::analysis::analyse;
    use crate::stream::pipeline::tests::{output, pipeline, rows};

    const MINUTE: i64 = 60_000_000;

    async fn query(pipeline: &StreamPipeline, sql: &str) -> Query {
        let output = output("q", sql);
        let analysis = analyse(pipeline, &output, &HashMap::new()).await.unwrap();
        Query::new(pipeline, output, analysis).unwrap()
    }

    /// A micro-batch: new rows per source, watermark = latest time - 5 minutes.
    fn batch(pipeline: &StreamPipeline, new: &[(&str, &[(&str, i64)])], latest: &[(&str, i64)]) -> BatchInput {
        let mut input = BatchInput::default();
        for (source, records) in new {
            let batch = rows(pipeline.source(source).unwrap(), records);
            input.on_time.insert(source.to_string(), batch.clone());
            input.all.insert(source.to_string(), batch);
        }
        for (source, time) in latest {
            input.watermarks.insert(source.to_string(), time - 5 * MINUTE);
        }
        input
    }

    fn text(batches: &[RecordBatch]) -> Vec<String> {
        let mut lines: Vec<String> = arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string()
            .lines()
            .filter(|l| l.starts_with('|') && !l.contains("window_start") && !l.contains("session_start"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn time_slices_keep_every_row_once_in_time_order() {
        let pipeline = pipeline(&["clicks"]);
        let source = pipeline.source("clicks").unwrap();
        let times = [7, 0, 3, 9, 1, 4, 8, 2];
        let records: Vec<(&str, i64)> = times.iter().map(|t| ("x", t * MINUTE)).collect();
        let all = rows(source, &records);
        let slices = time_slices(&all, source.event_time, 3 * MINUTE).unwrap();
        let minutes: Vec<Vec<i64>> = slices
            .iter()
            .map(|s| {
                let times = s.column(source.event_time).as_primitive::<TimestampMicrosecondType>();
                let mut m: Vec<i64> = times.values().iter().map(|t| t / MINUTE).collect();
                m.sort_unstable();
                m
            })
            .collect();
        assert_eq!(minutes, [vec![0, 1, 2], vec![3, 4], vec![7, 8], vec![9]]);
        // Less than two slices of time: the rows as they are.
        assert_eq!(time_slices(&all, source.event_time, 5 * MINUTE).unwrap().len(), 1);
    }

    #[test]
    fn joined_rows_are_pruned_to_the_bounds_inclusive() {
        let pipeline = pipeline(&["buys"]);
        let source = pipeline.source("buys").unwrap();
        let all = rows(source, &[("a", 0), ("b", MINUTE), ("c", 2 * MINUTE), ("d", 3 * MINUTE)]);
        let kept = rows_between(&all, source.event_time, MINUTE, 2 * MINUTE);
        assert_eq!(kept.num_rows(), 2);
        let times = kept
            .column(source.event_time)
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(times.values().to_vec(), [MINUTE, 2 * MINUTE]);
        assert_eq!(rows_between(&all, source.event_time, 0, 3 * MINUTE).num_rows(), 4);
        assert_eq!(
            rows_between(&all, source.event_time, 4 * MINUTE, 5 * MINUTE).num_rows(),
            0
        );
    }

    #[tokio::test]
    async fn tumbling_windows_update_while_open_and_append_once_the_watermark_passes() {
        let pipeline = pipeline(&["clicks"]);
        let sql = "SELECT window_start, window_end, count(*) AS n, count(DISTINCT value) AS d \
                   FROM TUMBLE(clicks, INTERVAL '1 minute') GROUP BY window_start, window_end";
        let mut q = query(&pipeline, sql).await;
        let none = HashMap::new();

        let first = batch(
            &pipeline,
            &[("clicks", &[("a", 10_000_000), ("b", 20_000_000), ("a", MINUTE + 5)])],
            &[("clicks", MINUTE + 5)],
        );
        let out = q.run(&pipeline, &first, &none).await.unwrap();
        assert!(out.append.is_empty());
        assert_eq!(
            text(&out.update),
            [
                "1970-01-01T00:00:00Z 1970-01-01T00:01:00Z 2 2",
                "1970-01-01T00:01:00Z 1970-01-01T00:02:00Z 1 1"
            ]
        );

        let second = batch(
            &pipeline,
            &[("clicks", &[("c", 7 * MINUTE), ("a", 30_000_000)])],
            &[("clicks", 7 * MINUTE)],
        );
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        assert_eq!(
            text(&out.append),
            [
                "1970-01-01T00:00:00Z 1970-01-01T00:01:00Z 3 2",
                "1970-01-01T00:01:00Z 1970-01-01T00:02:00Z 1 1"
            ]
        );
        assert_eq!(
            text(&out.update).len(),
            3,
            "the closed windows and the open one that changed"
        );
        assert_eq!(q.state.windows.len(), 1, "closed windows are forgotten");

        let end = BatchInput {
            end_of_input: true,
            ..Default::default()
        };
        let out = q.run(&pipeline, &end, &none).await.unwrap();
        assert_eq!(text(&out.append), ["1970-01-01T00:07:00Z 1970-01-01T00:08:00Z 1 1"]);
        assert!(q.state.windows.is_empty());
    }

    /// Clicks with the buys of the same value in the 10 minutes after, by 5-minute window of the
    /// click; a test adds its `WHERE` and `GROUP BY`.
    const CLICKS_JOINED_WITH_BUYS: &str = "SELECT c.window_start, c.window_end, count(c.id) AS clicks, \
        count(t.id) AS purchases FROM TUMBLE(clicks, INTERVAL '5 minutes') AS c LEFT JOIN buys AS t \
        ON t.value = c.value AND t.ts BETWEEN c.ts AND c.ts + INTERVAL '10 minutes'";

    #[tokio::test]
    async fn a_join_waits_for_the_joined_stream_and_then_lets_its_buffer_go() {
        let pipeline = pipeline(&["clicks", "buys"]);
        let sql = format!("{CLICKS_JOINED_WITH_BUYS} GROUP BY c.window_start, c.window_end");
        let mut q = query(&pipeline, &sql).await;
        let none = HashMap::new();
        let buy = rows(pipeline.source("buys").unwrap(), &[("a", 3 * MINUTE)]);

        let mut first = batch(
            &pipeline,
            &[("clicks", &[("a", MINUTE)]), ("buys", &[("a", 3 * MINUTE)])],
            &[("clicks", MINUTE), ("buys", 3 * MINUTE)],
        );
        first.buffers.insert("buys".into(), buy.clone());
        let out = q.run(&pipeline, &first, &none).await.unwrap();
        assert!(
            out.append.is_empty() && out.update.is_empty(),
            "the click waits: a purchase up to 0:11 may still come"
        );

        let later_buy = rows(pipeline.source("buys").unwrap(), &[("z", 20 * MINUTE)]);
        let mut second = batch(
            &pipeline,
            &[("clicks", &[("b", 30 * MINUTE)]), ("buys", &[("z", 20 * MINUTE)])],
            &[("clicks", 30 * MINUTE), ("buys", 20 * MINUTE)],
        );
        second
            .buffers
            .insert("buys".into(), concat_batches(&buy.schema(), &[buy, later_buy]).unwrap());
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        assert_eq!(text(&out.append), ["1970-01-01T00:00:00Z 1970-01-01T00:05:00Z 1 1"]);
        // Click `b` (0:30) still waits; purchases before 0:25 (the clicks' watermark) can go.
        assert_eq!(q.join_retention(&pipeline, &second), Some(("buys".into(), 25 * MINUTE)));
    }

    #[tokio::test]
    async fn rows_the_where_rejects_do_not_wait_for_the_joined_stream() {
        let pipeline = pipeline(&["clicks", "buys"]);
        let sql = format!(
            "{CLICKS_JOINED_WITH_BUYS} WHERE c.value <> 'view' AND t.value IS DISTINCT FROM 'other' \
             GROUP BY c.window_start, c.window_end"
        );
        let mut q = query(&pipeline, &sql).await;
        let condition = q
            .analysis
            .source_filter
            .as_ref()
            .expect("a condition on the clicks alone");
        assert_eq!(condition.to_string(), "value != Utf8(\"view\")");
        let none = HashMap::new();
        let first = batch(
            &pipeline,
            &[("clicks", &[("a", MINUTE), ("view", MINUTE), ("view", 2 * MINUTE)])],
            &[("clicks", MINUTE), ("buys", MINUTE)],
        );
        q.run(&pipeline, &first, &none).await.unwrap();
        assert_eq!(q.state_rows(), 1, "only the click waits");
        let mut last = batch(&pipeline, &[], &[]);
        last.end_of_input = true;
        let out = q.run(&pipeline, &last, &none).await.unwrap();
        assert_eq!(text(&out.append), ["1970-01-01T00:00:00Z 1970-01-01T00:05:00Z 1 0"]);
    }

    #[tokio::test]
    async fn an_aggregate_without_group_by_keeps_one_running_row() {
        let pipeline = pipeline(&["clicks"]);
        let sql = "SELECT CAST(count(*) AS DOUBLE) / count(DISTINCT value) AS per_value, max(ts) AS last FROM clicks";
        let mut q = query(&pipeline, sql).await;
        let none = HashMap::new();
        let first = batch(
            &pipeline,
            &[("clicks", &[("a", 1), ("b", 2), ("a", 3)])],
            &[("clicks", 3)],
        );
        let out = q.run(&pipeline, &first, &none).await.unwrap();
        assert_eq!(text(&out.update), ["1.5 1970-01-01T00:00:00.000003Z", "per_value last"]);
        let second = batch(&pipeline, &[("clicks", &[("c", 4)])], &[("clicks", 4)]);
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        assert_eq!(
            text(&out.update),
            ["1.3333333333333333 1970-01-01T00:00:00.000004Z", "per_value last"]
        );
        assert!(out.append.is_empty(), "a running aggregate is never final");
    }

    #[tokio::test]
    async fn sessions_merge_out_of_order_events_and_keep_an_event_exactly_a_gap_away() {
        let pipeline = pipeline(&["clicks"]);
        let sql = "SELECT value, session_start, session_end, count(*) AS events \
                   FROM SESSION(clicks, INTERVAL '30 minutes', value) GROUP BY value, session_start, session_end";
        let mut q = query(&pipeline, sql).await;
        let none = HashMap::new();
        let first = batch(
            &pipeline,
            &[("clicks", &[("u", 0), ("u", 20 * MINUTE)])],
            &[("clicks", 20 * MINUTE)],
        );
        assert!(q.run(&pipeline, &first, &none).await.unwrap().append.is_empty());

        let second = batch(
            &pipeline,
            &[(
                "clicks",
                &[
                    ("u", 70 * MINUTE),
                    ("u", 40 * MINUTE),
                    ("u", 101 * MINUTE),
                    ("v", 360 * MINUTE),
                ],
            )],
            &[("clicks", 360 * MINUTE)],
        );
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        let lines: Vec<String> = arrow::util::pretty::pretty_format_batches(&out.append)
            .unwrap()
            .to_string()
            .lines()
            .filter(|l| l.starts_with("| u"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            [
                "u 1970-01-01T00:00:00Z 1970-01-01T01:10:00Z 4",
                "u 1970-01-01T01:41:00Z 1970-01-01T01:41:00Z 1"
            ]
        );
    }
}
