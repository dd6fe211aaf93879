//! Upkeep of a streaming pipeline's Delta tables, every `compact_every` commits of a run:
//! compaction (Delta OPTIMIZE, bin-packing) and expiry of log entries older than the table's
//! `delta.logRetentionDuration` (deltalake writes the log checkpoint itself, every
//! `delta.checkpointInterval` commits).
//!
//! An append table is kept up beside the stream, on a task of its own: a compaction removes
//! only files it rewrote with the same rows, which an append never touches. An update table is
//! compacted between its merges, stalling the micro-batch: deltalake 1.1 lets a merge and a
//! compaction that replaced the same file both commit, which would count the file's rows
//! twice. An update table keyed by a time column is clustered by it instead of bin-packed
//! (`delta::clustering`), around the oldest window its merges since the last upkeep updated,
//! so that a merge rewrites the open windows only. A failed upkeep is logged and tried again
//! after the next `compact_every` commits: the rows are written either way.

use std::collections::HashMap;

use datafusion::prelude::SessionContext;
use tokio::task::JoinHandle;

use super::SinkMetrics;
use super::delta::{DeltaSink, Micros, OpenTables};
use crate::catalog::{Lake, TableName};
use crate::config::pipeline::{DeltaSinkDef, WriteMode};
use crate::error::Result;

/// The upkeep of the tables one writer commits to.
#[derive(Default)]
pub struct Upkeep {
    /// Per table: commits since this run last kept it up.
    commits: HashMap<String, u64>,
    /// Per append table: the upkeep running beside the stream.
    running: HashMap<String, JoinHandle<Result<SinkMetrics>>>,
    /// Per update table clustered by time: its column and the oldest time merged since the
    /// last upkeep.
    oldest_merged: HashMap<String, (String, Micros)>,
}

impl Upkeep {
    /// Counts a commit of `owner` (pipeline, output) to `table`, and keeps the table up when
    /// its sink's `compact_every` commits are reached. `merged` is, for a merge into an update
    /// table keyed by a time column, that column and the oldest time of the merged rows.
    #[allow(clippy::too_many_arguments)]
    pub async fn after_commit(
        &mut self,
        lake: &Lake,
        open_tables: &OpenTables,
        ctx: &SessionContext,
        owner: (&str, &str),
        table: &TableName,
        def: &DeltaSinkDef,
        mode: WriteMode,
        merged: Option<(&str, Micros)>,
    ) {
        let key = table.to_string();
        if let Some((column, oldest)) = merged {
            let seen = self
                .oldest_merged
                .entry(key.clone())
                .or_insert_with(|| (column.to_string(), oldest));
            seen.1 = seen.1.min(oldest);
        }
        let commits = self.commits.entry(key.clone()).or_default();
        *commits += 1;
        if def.compact_every == 0 || *commits < def.compact_every {
            return;
        }
        if let Some(running) = self.running.get(&key)
            && !running.is_finished()
        {
            return;
        }
        *commits = 0;
        if let Some(done) = self.running.remove(&key) {
            log_upkeep(table, done.await);
        }
        let (job, output) = (owner.0.to_string(), owner.1.to_string());
        if mode == WriteMode::Update {
            let sink = DeltaSink::new(lake, table.clone())
                .with_open_tables(open_tables)
                .with_commit_metadata("quickchat.job", &job)
                .with_commit_metadata("quickchat.output", &output);
            let upkept = match self.oldest_merged.remove(&key) {
                Some((column, open_from)) => sink.upkeep_clustered(ctx, &column, open_from).await,
                None => sink.upkeep(ctx).await,
            };
            log_upkeep(table, Ok(upkept));
            return;
        }
        let location = lake.location().clone();
        let table = table.clone();
        let task = tokio::spawn(async move {
            let lake = Lake::new(location);
            DeltaSink::new(&lake, table)
                .with_commit_metadata("quickchat.job", &job)
                .with_commit_metadata("quickchat.output", &output)
                .upkeep(&crate::query::new_session())
                .await
        });
        self.running.insert(key, task);
    }

    /// Waits for the upkeep running beside the stream.
    pub async fn settle(&mut self) {
        for (key, task) in self.running.drain() {
            let table = TableName::parse(&key).expect("kept under its parsed name");
            log_upkeep(&table, task.await);
        }
    }
}

fn log_upkeep(table: &TableName, done: std::result::Result<Result<SinkMetrics>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(metrics)) => tracing::debug!(
            table = %table,
            files_removed = metrics.files_removed,
            files_added = metrics.files_added,
            elapsed_ms = metrics.elapsed.as_millis() as u64,
            "compacted"
        ),
        Ok(Err(e)) => tracing::warn!(table = %table, error = %e, "upkeep failed; trying again later"),
        Err(e) => tracing::warn!(table = %table, error = %e, "upkeep task ended abnormally"),
    }
}
