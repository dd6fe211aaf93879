//! A windowed aggregate over `TUMBLE` or `HOP` windows: each micro-batch folds the rows that
//! are ready into per-window accumulator state, emits the windows whose end the watermark passed
//! (final rows, for append and update sinks) and the groups that changed in windows still open
//! (for update sinks), then forgets the closed windows. In a join, windowed rows wait (see
//! [`JoinWait`]) until the joined stream's watermark passes their upper time bound.

use std::collections::BTreeMap;

use arrow::array::{AsArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::join_buffer::{JoinWait, time_slices};
use super::micro_batch::{Emitted, Finals, MicroBatch, QuerySql};
use super::state_batches::{StateBatches, StateSize};
use crate::error::{Error, Result};
use crate::query::window::{WindowUse, assign_windows};

/// A window `(end, start)`, microseconds: windows sort by end, the order they close in.
pub type WindowKey = (i64, i64);

/// A windowed aggregate and its open windows.
#[derive(Debug, Clone)]
pub struct WindowedAggregate {
    window: WindowUse,
    join: Option<JoinWait>,
    state: WindowedState,
}

/// What a windowed aggregate saves in a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowedState {
    /// Per open window: one accumulator row per group.
    pub windows: BTreeMap<WindowKey, StateBatches>,
    /// In a join: windowed rows waiting for the joined stream's watermark.
    pub waiting: StateBatches,
}

impl WindowedAggregate {
    /// An aggregate over `window`, joined as `join` says.
    pub fn new(window: WindowUse, join: Option<JoinWait>) -> Self {
        Self {
            window,
            join,
            state: WindowedState::default(),
        }
    }

    /// Folds one micro-batch in; emits final and changed rows.
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
        // Rows that may be aggregated now, and the watermark of this query's results.
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
        let windowed = assign_windows(&ready, source.event_time, &self.window.spec);
        let closing = self.state.windows.keys().any(|(end, _)| *end <= watermark);
        if windowed.num_rows() == 0 && !closing {
            return Ok(Emitted::default());
        }

        // A join runs over slices of the windowed rows by event time, each against the joined
        // rows its bounds can reach: fewer candidate pairs, and a large catch-up (the end of the
        // input, a restart after a pause) streams through in pieces instead of at once.
        let chunks = match &self.join {
            Some(join) => time_slices(&windowed, source.event_time, join.slice_span())
                .map_err(|e| Error::compute(format!("output {}", sql.output.name), e))?,
            None => vec![windowed.clone()],
        };
        let mut partial = Vec::new();
        let mut planned = None;
        for chunk in chunks {
            let _bound = sql.bind(batch, finals, Some((&self.window, chunk.clone())));
            let split = sql.split()?;
            let task = sql.task();
            if chunk.num_rows() > 0 {
                partial.extend(split.partial(task.clone()).await.map_err(|e| sql.datafusion_error(e))?);
            }
            planned.get_or_insert((split, task));
        }
        let (split, task) = planned.expect("at least one slice");

        // Fold the new states into their windows.
        let (start, end) = self.window.spec.columns();
        let mut touched = Vec::new();
        for states in &partial {
            for (window, rows) in split_by_window(states, start, end)? {
                self.state.windows.entry(window).or_default().0.push(rows);
                touched.push(window);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for window in &touched {
            let held = self.state.windows.get_mut(window).expect("touched windows exist");
            let reduced = split
                .reduce(std::mem::take(&mut held.0), task.clone())
                .await
                .map_err(|e| sql.datafusion_error(e))?;
            held.0 = reduced;
        }

        // Windows the watermark passed are final; open windows that changed emit their changed groups.
        let mut emitted = Emitted::default();
        let closed: Vec<WindowKey> = self
            .state
            .windows
            .keys()
            .filter(|(end, _)| *end <= watermark)
            .copied()
            .collect();
        let closed_states: Vec<RecordBatch> = closed
            .iter()
            .flat_map(|w| self.state.windows.remove(w).map(|s| s.0).unwrap_or_default())
            .collect();
        if !closed_states.is_empty() {
            emitted.append = split
                .finish(closed_states, task.clone())
                .await
                .map_err(|e| sql.datafusion_error(e))?;
        }
        let open_states: Vec<RecordBatch> = touched
            .iter()
            .filter_map(|w| self.state.windows.get(w))
            .flat_map(|s| s.0.iter().cloned())
            .collect();
        if !open_states.is_empty() {
            let changed = split
                .changed_groups(&open_states, &partial)
                .map_err(|e| sql.datafusion_error(e))?;
            emitted.update = split.finish(changed, task).await.map_err(|e| sql.datafusion_error(e))?;
        }
        emitted.update.extend(emitted.append.iter().cloned());
        Ok(emitted)
    }

    /// The join this aggregate is part of, with its waiting rows.
    pub fn join(&self) -> Option<(&JoinWait, &StateBatches)> {
        self.join.as_ref().map(|join| (join, &self.state.waiting))
    }

    /// Held: accumulator rows of open windows and rows waiting.
    pub fn size(&self) -> StateSize {
        self.state.windows.values().map(StateBatches::size).sum::<StateSize>() + self.state.waiting.size()
    }

    /// The state to save.
    pub fn state(&self) -> WindowedState {
        self.state.clone()
    }

    /// Restores a saved state.
    pub fn restore(&mut self, state: WindowedState) {
        self.state = state;
    }

    /// Every accumulator row held, for checking a saved state against the query.
    pub fn state_rows(&self) -> impl Iterator<Item = &RecordBatch> {
        self.state.windows.values().flat_map(|s| s.0.iter())
    }
}

/// Splits accumulator states by their window `(end, start)`.
fn split_by_window(states: &RecordBatch, start: &str, end: &str) -> Result<Vec<(WindowKey, RecordBatch)>> {
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
    let mut rows: BTreeMap<WindowKey, Vec<u32>> = BTreeMap::new();
    for row in 0..states.num_rows() {
        rows.entry((ends.value(row), starts.value(row)))
            .or_default()
            .push(row as u32);
    }
    rows.into_iter()
        .map(|(window, indices)| {
            let rows = take_record_batch(states, &UInt32Array::from(indices))
                .map_err(|e| Error::compute("splitting aggregate states by window", e))?;
            Ok((window, rows))
        })
        .collect()
}
