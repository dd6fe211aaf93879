//! Session windows: per key, events at most `gap` apart belong to one session, from its first
//! event to its last (exactly `gap` apart stays in the session, as in Spark's
//! `session_window`).
//!
//! The state holds one accumulator row per open session, grouped by the key columns and
//! `session_start`/`session_end`. When new events fall within `gap` of a session (or bridge two
//! sessions, events arriving out of order), the sessions merge: the stored rows get the merged
//! start and end, and reducing the state combines them. A session is final, emitted and
//! forgotten once the watermark is past its end plus the gap. Because a session's start can
//! still move while it is open, session outputs go to append sinks only.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::execution::TaskContext;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use serde::{Deserialize, Serialize};

use super::join_buffer::JoinWait;
use super::micro_batch::{Emitted, Finals, MicroBatch, QuerySql};
use super::state_batches::{StateBatches, StateSize};
use crate::error::{Error, Result};
use crate::query::aggregate::SplitPlan;
use crate::query::window::{WindowSpec, WindowUse, with_window_columns};

/// A session-window aggregate and its open sessions.
#[derive(Debug, Clone)]
pub struct SessionAggregate {
    window: WindowUse,
    sessions: SessionWindows,
    join: Option<JoinWait>,
    state: SessionState,
}

/// What a session aggregate saves in a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionState {
    /// One accumulator row per open session (its key columns, `session_start`, `session_end`).
    pub sessions: StateBatches,
    /// In a join: windowed rows waiting for the joined stream's watermark.
    pub waiting: StateBatches,
}

impl SessionAggregate {
    /// An aggregate over `window` (a `SESSION`), joined as `join` says.
    pub fn new(window: WindowUse, join: Option<JoinWait>) -> Self {
        let WindowSpec::Session { gap, keys } = &window.spec else {
            panic!("a session aggregate is over SESSION(...)")
        };
        let sessions = SessionWindows::new(*gap, keys.clone());
        Self {
            window,
            sessions,
            join,
            state: SessionState::default(),
        }
    }

    /// Folds one micro-batch in; emits the sessions that closed.
    pub async fn run(&mut self, sql: QuerySql<'_>, batch: &MicroBatch, finals: &Finals) -> Result<Emitted> {
        let source = sql
            .pipeline
            .source(&self.window.source)
            .expect("analysed windows name sources");
        let new_rows = batch
            .on_time
            .get(&self.window.source)
            .cloned()
            .unwrap_or_else(|| RecordBatch::new_empty(source.schema.clone()));
        let driving_watermark = batch.watermark(&self.window.source);
        let (ready, watermark) = match &self.join {
            None => (new_rows, driving_watermark),
            Some(join) => join.release(
                &mut self.state.waiting,
                source,
                new_rows,
                driving_watermark,
                batch.watermark(&join.join.source),
            )?,
        };
        let windowed = self
            .sessions
            .assign(&ready, source.event_time, &mut self.state.sessions, &self.window.spec)?;
        if windowed.num_rows() == 0 && !self.sessions.any_closing(&self.state.sessions, watermark) {
            return Ok(Emitted::default());
        }
        let _bound = sql.bind(batch, finals, Some((&self.window, windowed.clone())));
        let split = sql.split()?;
        let task = sql.task();
        let partial = if windowed.num_rows() > 0 {
            split.partial(task.clone()).await.map_err(|e| sql.datafusion_error(e))?
        } else {
            Vec::new()
        };
        let closed = self
            .sessions
            .fold(&split, partial, &mut self.state.sessions, watermark, task.clone())
            .await?;
        let mut emitted = Emitted::default();
        if !closed.is_empty() {
            emitted.append = split.finish(closed, task).await.map_err(|e| sql.datafusion_error(e))?;
        }
        emitted.update = emitted.append.clone();
        Ok(emitted)
    }

    /// The join this aggregate is part of, with its waiting rows.
    pub fn join(&self) -> Option<(&JoinWait, &StateBatches)> {
        self.join.as_ref().map(|join| (join, &self.state.waiting))
    }

    /// Held: open sessions and rows waiting.
    pub fn size(&self) -> StateSize {
        self.state.sessions.size() + self.state.waiting.size()
    }

    /// The state to save.
    pub fn state(&self) -> SessionState {
        self.state.clone()
    }

    /// Restores a saved state.
    pub fn restore(&mut self, state: SessionState) {
        self.state = state;
    }

    /// Every accumulator row held, for checking a saved state against the query.
    pub fn state_rows(&self) -> impl Iterator<Item = &RecordBatch> {
        self.state.sessions.0.iter()
    }
}

/// Session windows over some key columns.
#[derive(Debug, Clone)]
pub struct SessionWindows {
    gap: i64,
    keys: Vec<String>,
}

fn internal(e: impl Into<crate::error::Cause>) -> Error {
    Error::compute("session windows", e)
}

/// A column of a batch by name, accepting a qualified name (`c.user_id`).
fn column_index(batch: &RecordBatch, name: &str) -> Result<usize> {
    batch
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == name || f.name().ends_with(&format!(".{name}")))
        .ok_or_else(|| internal(format!("no column {name}")))
}

impl SessionWindows {
    /// Sessions with the largest inner gap `gap` (microseconds), per `keys`.
    pub fn new(gap: i64, keys: Vec<String>) -> Self {
        Self { gap, keys }
    }

    fn key_columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.keys
            .iter()
            .map(|k| column_index(batch, k).map(|i| batch.column(i).clone()))
            .collect()
    }

    /// Gives every ready row its session (merging with the stored sessions of its key) and
    /// moves stored sessions that merged to their new bounds. Returns the rows with
    /// `session_start`/`session_end`.
    pub fn assign(
        &self,
        ready: &RecordBatch,
        event_time: usize,
        state: &mut StateBatches,
        spec: &WindowSpec,
    ) -> Result<RecordBatch> {
        let times = ready.column(event_time).as_primitive::<TimestampMicrosecondType>();
        let ready_columns = self.key_columns(ready)?;
        let fields = ready_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        // One converter for the new rows and the stored ones, so equal keys encode equally.
        let converter = RowConverter::new(fields).map_err(internal)?;
        let ready_keys = converter.convert_columns(&ready_columns).map_err(internal)?;
        let stored = state.0.clone();

        // Every key of the new rows numbered, with its new events and stored sessions as
        // intervals; a key allocates once, not each row.
        let mut key_number: HashMap<&[u8], usize, Xxh3DefaultBuilder> = HashMap::default();
        let mut intervals: Vec<Vec<(i64, i64)>> = Vec::new();
        let mut row_keys = Vec::with_capacity(ready.num_rows());
        for (row, key) in ready_keys.iter().enumerate() {
            let number = *key_number.entry(key.data()).or_insert_with(|| {
                intervals.push(Vec::new());
                intervals.len() - 1
            });
            let t = times.value(row);
            intervals[number].push((t, t));
            row_keys.push(number);
        }
        let mut stored_keys: Vec<Vec<Option<usize>>> = Vec::with_capacity(stored.len());
        for batch in &stored {
            let keys = converter.convert_columns(&self.key_columns(batch)?).map_err(internal)?;
            let (starts, ends) = self.bounds(batch)?;
            let numbers: Vec<Option<usize>> = keys.iter().map(|k| key_number.get(k.data()).copied()).collect();
            for (i, number) in numbers.iter().enumerate() {
                if let Some(number) = number {
                    intervals[*number].push((starts.value(i), ends.value(i)));
                }
            }
            stored_keys.push(numbers);
        }
        // Merge: sorted by start, an interval within `gap` of the current session joins it.
        let merged: Vec<Vec<(i64, i64)>> = intervals
            .into_iter()
            .map(|mut list| {
                list.sort_unstable();
                let mut sessions: Vec<(i64, i64)> = Vec::new();
                for (start, end) in list {
                    match sessions.last_mut() {
                        Some(current) if start - current.1 <= self.gap => current.1 = current.1.max(end),
                        _ => sessions.push((start, end)),
                    }
                }
                sessions
            })
            .collect();
        // Merged sessions are sorted and disjoint: a point's is the last one starting at or before it.
        let session_of = |number: usize, t: i64| {
            let sessions = &merged[number];
            let found = sessions[sessions.partition_point(|(s, _)| *s <= t) - 1];
            debug_assert!(found.0 <= t && t <= found.1, "every point lies in its merged session");
            found
        };

        // Stored sessions take their merged bounds.
        let mut moved = Vec::with_capacity(stored.len());
        for (batch, numbers) in stored.iter().zip(&stored_keys) {
            let (starts, ends) = self.bounds(batch)?;
            let (new_starts, new_ends): (Vec<i64>, Vec<i64>) = numbers
                .iter()
                .enumerate()
                .map(|(i, number)| match number {
                    Some(number) => session_of(*number, starts.value(i)),
                    None => (starts.value(i), ends.value(i)),
                })
                .unzip();
            moved.push(self.with_bounds(batch, new_starts, new_ends)?);
        }
        state.0 = moved;

        let (starts, ends): (Vec<i64>, Vec<i64>) = row_keys
            .iter()
            .enumerate()
            .map(|(row, number)| session_of(*number, times.value(row)))
            .unzip();
        Ok(with_window_columns(ready, None, starts, ends, spec))
    }

    fn bounds(
        &self,
        batch: &RecordBatch,
    ) -> Result<(
        arrow::array::TimestampMicrosecondArray,
        arrow::array::TimestampMicrosecondArray,
    )> {
        let start = batch
            .column(column_index(batch, "session_start")?)
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let end = batch
            .column(column_index(batch, "session_end")?)
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        Ok((start, end))
    }

    fn with_bounds(&self, batch: &RecordBatch, starts: Vec<i64>, ends: Vec<i64>) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        columns[column_index(batch, "session_start")?] =
            Arc::new(TimestampMicrosecondArray::from(starts).with_timezone("UTC"));
        columns[column_index(batch, "session_end")?] =
            Arc::new(TimestampMicrosecondArray::from(ends).with_timezone("UTC"));
        RecordBatch::try_new(batch.schema(), columns).map_err(internal)
    }

    /// Whether some stored session is final at this watermark.
    pub fn any_closing(&self, state: &StateBatches, watermark: i64) -> bool {
        state.0.iter().any(|batch| {
            self.bounds(batch)
                .is_ok_and(|(_, ends)| ends.values().iter().any(|e| e.saturating_add(self.gap) < watermark))
        })
    }

    /// Folds this batch's accumulator states into the sessions and returns the states of the
    /// sessions now final (removed from the state).
    pub async fn fold(
        &self,
        split: &SplitPlan,
        partial: Vec<RecordBatch>,
        state: &mut StateBatches,
        watermark: i64,
        task: Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        let mut states = std::mem::take(&mut state.0);
        states.extend(partial);
        let reduced = if states.is_empty() {
            Vec::new()
        } else {
            split.reduce(states, task).await.map_err(internal)?
        };
        let (mut closed, mut open) = (Vec::new(), Vec::new());
        for batch in reduced {
            let (_, ends) = self.bounds(&batch)?;
            let is_closed: BooleanArray = ends
                .values()
                .iter()
                .map(|e| Some(e.saturating_add(self.gap) < watermark))
                .collect();
            closed.push(filter_record_batch(&batch, &is_closed).map_err(internal)?);
            open.push(
                filter_record_batch(&batch, &arrow::compute::not(&is_closed).map_err(internal)?).map_err(internal)?,
            );
        }
        closed.retain(|b| b.num_rows() > 0);
        open.retain(|b| b.num_rows() > 0);
        state.0 = open;
        Ok(closed)
    }
}
