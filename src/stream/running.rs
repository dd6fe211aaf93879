//! A running aggregate: a query that aggregates without a window (`SELECT user_id, count(*) ...
//! GROUP BY user_id`). Its state is one accumulator row per group, kept for good; each
//! micro-batch folds its rows in and emits the groups that changed (its sinks are update-mode:
//! a running total is never final).

use serde::{Deserialize, Serialize};

use super::micro_batch::{Emitted, Finals, MicroBatch, QuerySql};
use super::state_batches::{StateBatches, StateSize};
use crate::error::Result;

/// A running aggregate and its groups.
#[derive(Debug, Clone, Default)]
pub struct RunningAggregate {
    state: RunningState,
}

/// What a running aggregate saves in a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunningState {
    /// One accumulator row per group seen.
    pub groups: StateBatches,
}

impl RunningAggregate {
    /// Folds one micro-batch in; emits the groups that changed.
    pub async fn run(&mut self, sql: QuerySql<'_>, batch: &MicroBatch, finals: &Finals) -> Result<Emitted> {
        let new_rows: usize = sql
            .analysis
            .reads
            .iter()
            .map(|name| match sql.pipeline.source(name) {
                Some(_) => batch.on_time.get(name).map_or(0, |b| b.num_rows()),
                None => finals
                    .get(name)
                    .map_or(0, |(_, rows)| rows.iter().map(|b| b.num_rows()).sum()),
            })
            .sum();
        if new_rows == 0 {
            return Ok(Emitted::default());
        }
        let _bound = sql.bind(batch, finals, None);
        let split = sql.split()?;
        let task = sql.task();
        let partial = split.partial(task.clone()).await.map_err(|e| sql.datafusion_error(e))?;
        let mut states = std::mem::take(&mut self.state.groups.0);
        states.extend(partial.iter().cloned());
        let reduced = split
            .reduce(states, task.clone())
            .await
            .map_err(|e| sql.datafusion_error(e))?;
        let changed = split
            .changed_groups(&reduced, &partial)
            .map_err(|e| sql.datafusion_error(e))?;
        self.state.groups = StateBatches(reduced);
        let update = split.finish(changed, task).await.map_err(|e| sql.datafusion_error(e))?;
        Ok(Emitted {
            append: Vec::new(),
            update,
        })
    }

    /// Groups held.
    pub fn size(&self) -> StateSize {
        self.state.groups.size()
    }

    /// Every accumulator row held.
    pub fn state_rows(&self) -> impl Iterator<Item = &arrow::array::RecordBatch> {
        self.state.groups.0.iter()
    }

    /// The state to save.
    pub fn state(&self) -> RunningState {
        self.state.clone()
    }

    /// Restores a saved state.
    pub fn restore(&mut self, state: RunningState) {
        self.state = state;
    }
}
