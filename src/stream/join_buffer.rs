//! Stream-stream joins bounded in event time (`t.ts BETWEEN c.ts AND c.ts + INTERVAL '10
//! minutes'`, see `query::analysis`):
//!
//! - a [`JoinBuffer`] keeps the joined source's rows until no windowed row can match them any
//!   more (older than the lower bound behind the slowest windowed row of every query joining it);
//! - a [`JoinWait`] holds a query's windowed rows back until the joined stream's watermark passes
//!   their upper bound, so every match has arrived before they are aggregated; the rows waiting
//!   are part of the query operator's state;
//! - a join runs over slices of the windowed rows by event time ([`time_slices`]), each against
//!   the joined rows its bounds can reach ([`joinable_rows`]).

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};

use super::state_batches::{StateBatches, StateSize};
use crate::config::stream_pipeline::StreamSource;
use crate::error::{Error, Result};
use crate::query::analysis::JoinBound;
use crate::query::new_session;

/// The shortest slice of event time a join runs over.
const JOIN_SLICE_MIN: i64 = 60_000_000;

/// A joined source's rows, kept for joins.
#[derive(Debug, Clone, Default)]
pub struct JoinBuffer {
    state: JoinBufferState,
}

/// What a join buffer saves in a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinBufferState {
    /// The rows retained.
    pub rows: StateBatches,
}

impl JoinBuffer {
    /// Adds a micro-batch's on-time rows; returns every row retained, these included.
    pub fn add(&mut self, source: &StreamSource, rows: &RecordBatch) -> Result<RecordBatch> {
        let mut held = std::mem::take(&mut self.state.rows.0);
        held.push(rows.clone());
        let all = concat_batches(&source.schema, &held)
            .map_err(|e| Error::compute(format!("join buffer of {}", source.name), e))?;
        self.state.rows = StateBatches(vec![all.clone()]);
        Ok(all)
    }

    /// Lets go of rows older than `keep_from` (event time, microseconds).
    pub fn evict(&mut self, source: &StreamSource, keep_from: i64) -> Result<()> {
        let Some(rows) = self.state.rows.0.first() else {
            return Ok(());
        };
        let times = rows
            .column(source.event_time)
            .as_primitive::<TimestampMicrosecondType>();
        let keep: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t >= keep_from))).collect();
        if keep.true_count() < rows.num_rows() {
            let kept = filter_record_batch(rows, &keep)
                .map_err(|e| Error::compute(format!("join buffer of {}", source.name), e))?;
            self.state.rows = StateBatches(vec![kept]);
        }
        Ok(())
    }

    /// The rows retained.
    pub fn rows(&self) -> &[RecordBatch] {
        &self.state.rows.0
    }

    /// Rows held.
    pub fn size(&self) -> StateSize {
        self.state.rows.size()
    }

    /// The state to save.
    pub fn state(&self) -> JoinBufferState {
        self.state.clone()
    }

    /// Restores a saved state.
    pub fn restore(&mut self, state: JoinBufferState) {
        self.state = state;
    }
}

/// A query's side of a join: its bounds, and the query's own conditions on the windowed source
/// (its `WHERE`), evaluated before rows wait.
#[derive(Debug, Clone)]
pub struct JoinWait {
    /// The joined source and the time bounds.
    pub join: JoinBound,
    source_filter: Option<Arc<dyn PhysicalExpr>>,
}

impl JoinWait {
    /// A join of `source` (windowed) within `join`; `source_filter` is the analysis' condition on
    /// the windowed source alone.
    pub fn new(
        join: JoinBound,
        source: &StreamSource,
        source_filter: Option<&Expr>,
    ) -> datafusion::error::Result<Self> {
        let source_filter = match source_filter {
            Some(condition) => {
                let schema = DFSchema::try_from(source.schema.as_ref().clone())?;
                Some(new_session().create_physical_expr(condition.clone(), &schema)?)
            }
            None => None,
        };
        Ok(Self { join, source_filter })
    }

    /// The rows of the windowed source the query's own conditions on it accept.
    fn accepted(&self, rows: RecordBatch) -> Result<RecordBatch> {
        let Some(filter) = &self.source_filter else {
            return Ok(rows);
        };
        let mask = filter
            .evaluate(&rows)
            .and_then(|v| v.into_array(rows.num_rows()))
            .map_err(|e| Error::compute("the WHERE on the windowed source", e))?;
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| Error::Internal("the WHERE on the windowed source is not a condition".into()))?;
        filter_record_batch(&rows, mask).map_err(|e| Error::compute("the WHERE on the windowed source", e))
    }

    /// Adds new windowed rows to those waiting and takes out the ones the joined stream's
    /// watermark completed: returns them, and the watermark of the query's results (the driving
    /// source's, held back by the oldest row still waiting).
    pub fn release(
        &self,
        waiting: &mut StateBatches,
        source: &StreamSource,
        new_rows: RecordBatch,
        driving_watermark: i64,
        joined_watermark: i64,
    ) -> Result<(RecordBatch, i64)> {
        // Only rows the query's WHERE accepts wait for the joined stream.
        let new_rows = self.accepted(new_rows)?;
        if new_rows.num_rows() > 0 {
            waiting.0.push(new_rows);
        }
        let error = |e| Error::compute(format!("rows of {} waiting for {}", source.name, self.join.source), e);
        // Each waiting batch is split only when the watermark cuts through it: a batch wholly
        // waiting stays as it is, so waiting rows are not copied every epoch.
        let mut ready_batches = Vec::new();
        let mut still_waiting = Vec::new();
        let mut oldest_waiting: Option<i64> = None;
        let earliest = |a: Option<i64>, b: Option<i64>| a.into_iter().chain(b).min();
        let is_ready = |t: i64| t.saturating_add(self.join.upper) <= joined_watermark;
        for batch in std::mem::take(&mut waiting.0) {
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
                still_waiting.push(batch);
            } else {
                let waiting_min = times.values().iter().copied().filter(|t| !is_ready(*t)).min();
                oldest_waiting = earliest(oldest_waiting, waiting_min);
                let mask: BooleanArray = times.values().iter().map(|t| Some(is_ready(*t))).collect();
                ready_batches.push(filter_record_batch(&batch, &mask).map_err(error)?);
                let not = arrow::compute::not(&mask).map_err(error)?;
                still_waiting.push(filter_record_batch(&batch, &not).map_err(error)?);
            }
        }
        let ready = concat_batches(&source.schema, &ready_batches).map_err(error)?;
        waiting.0 = still_waiting;
        Ok((ready, driving_watermark.min(oldest_waiting.unwrap_or(i64::MAX))))
    }

    /// The joined source and the event time below which its rows can no longer match a row of
    /// this query: the lower bound behind the oldest windowed row still to come.
    pub fn retention(&self, waiting: &StateBatches, source: &StreamSource, driving_watermark: i64) -> (String, i64) {
        let oldest_waiting = waiting
            .0
            .iter()
            .filter_map(|b| arrow::compute::min(b.column(source.event_time).as_primitive::<TimestampMicrosecondType>()))
            .min();
        let driving = driving_watermark.min(oldest_waiting.unwrap_or(i64::MAX));
        (self.join.source.clone(), driving.saturating_add(self.join.lower))
    }

    /// The span of event time one slice of windowed rows covers.
    pub fn slice_span(&self) -> i64 {
        ((self.join.upper - self.join.lower) / 4).max(JOIN_SLICE_MIN)
    }
}

/// The rows of a joined source a query may join now: with the windowed rows of this planning
/// known (`windowed`, with their event-time column), only those inside the time bounds of some
/// windowed row can match.
pub fn joinable_rows(
    rows: &RecordBatch,
    joined: &StreamSource,
    join: Option<&JoinBound>,
    windowed: Option<(&RecordBatch, usize)>,
) -> RecordBatch {
    let (Some(join), Some((windowed, time))) = (join, windowed) else {
        return rows.clone();
    };
    if join.source != joined.name {
        return rows.clone();
    }
    let times = windowed.column(time).as_primitive::<TimestampMicrosecondType>();
    match arrow::compute::min(times).zip(arrow::compute::max(times)) {
        Some((min, max)) => rows_between(
            rows,
            joined.event_time,
            min.saturating_add(join.lower),
            max.saturating_add(join.upper),
        ),
        None => rows.clone(),
    }
}

/// The rows of `batch` whose event time (column `time`) is within `[from, to]`; the batch itself
/// when all are.
pub fn rows_between(batch: &RecordBatch, time: usize, from: i64, to: i64) -> RecordBatch {
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

/// `rows` cut into slices of `span` of event time (column `time`), in time order; `rows` whole
/// when they cover less than two slices.
pub fn time_slices(
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
