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
//! after the next `compact_every` commits: the rows are written either way. An append table
//! whose upkeep beside the stream failed is kept up at its next commit, between two commits:
//! a stream committing many times a second can take every version the upkeep beside it tries
//! (deltalake's 15 retries), and its small files would then pile up for as long as it keeps
//! that pace.

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
        let beside_failed = self.collect_finished(&key, table).await;
        let commits = self.commits.entry(key.clone()).or_default();
        *commits += 1;
        if def.compact_every == 0 || (*commits < def.compact_every && !beside_failed) {
            return;
        }
        if self.running.contains_key(&key) {
            return;
        }
        *commits = 0;
        let (job, output) = (owner.0.to_string(), owner.1.to_string());
        if mode == WriteMode::Update || beside_failed {
            let sink = DeltaSink::new(lake, table.clone())
                .with_open_tables(open_tables)
                .with_commit_metadata("quickchat.job", &job)
                .with_commit_metadata("quickchat.output", &output);
            let upkept = match self.oldest_merged.remove(&key) {
                Some((column, open_from)) => sink.upkeep_clustered(ctx, &column, open_from).await,
                None => sink.upkeep(ctx).await,
            };
            log_upkeep(table, Ok(upkept), OnFailure::Later);
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

    /// Logs how the upkeep beside the stream of `table` ended, if it did; true when it failed.
    async fn collect_finished(&mut self, key: &str, table: &TableName) -> bool {
        if !self.running.get(key).is_some_and(JoinHandle::is_finished) {
            return false;
        }
        let done = self.running.remove(key).expect("finished above").await;
        let failed = !matches!(done, Ok(Ok(_)));
        log_upkeep(table, done, OnFailure::AtNextCommit);
        failed
    }

    /// Waits for the upkeep running beside the stream.
    pub async fn settle(&mut self) {
        for (key, task) in self.running.drain() {
            let table = TableName::parse(&key).expect("kept under its parsed name");
            log_upkeep(&table, task.await, OnFailure::Later);
        }
    }
}

/// What follows an upkeep that failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    /// It runs again at the next commit, between two commits (an append table's upkeep beside
    /// the stream, while the run goes on).
    AtNextCommit,
    /// It runs again after the next `compact_every` commits, or in the next run.
    Later,
}

fn log_upkeep(
    table: &TableName,
    done: std::result::Result<Result<SinkMetrics>, tokio::task::JoinError>,
    on_failure: OnFailure,
) {
    match done {
        // Expected of a stream committing many times a second: it took every version the
        // upkeep tried. Not a warning: the upkeep runs at the next commit instead.
        Ok(Err(e)) if on_failure == OnFailure::AtNextCommit => tracing::info!(
            table = %table,
            error = %e,
            "upkeep beside the stream did not commit; it runs between the next two commits instead"
        ),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::error::Error;
    use crate::query::new_session;

    fn append_table(table: &str) -> DeltaSinkDef {
        DeltaSinkDef {
            table: table.into(),
            partition_by: vec![],
            mode: Some(WriteMode::Append),
            key: vec![],
            compact_every: 100,
            zorder_by: vec![],
            table_properties: Default::default(),
        }
    }

    /// Appends `files` commits of one small file each.
    async fn append_files(lake: &Lake, table: &TableName, files: i64) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        for id in 0..files {
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![id; 10]))]).unwrap();
            DeltaSink::new(lake, table.clone())
                .write_batches(&new_session(), schema.clone(), vec![batch])
                .await
                .unwrap();
        }
    }

    /// An upkeep beside the stream of `table` that has already failed.
    async fn failed_beside(upkeep: &mut Upkeep, table: &TableName) {
        let task = tokio::spawn(async {
            Err(Error::Sink {
                table: "bronze.events".into(),
                message: "lost the race for every version".into(),
                retryable: true,
                cause: None,
            })
        });
        while !task.is_finished() {
            tokio::task::yield_now().await;
        }
        upkeep.running.insert(table.to_string(), task);
    }

    async fn files_after_one_commit(upkeep: &mut Upkeep, lake: &Lake, table: &TableName) -> u64 {
        let def = append_table(&table.to_string());
        let open_tables = OpenTables::default();
        upkeep
            .after_commit(
                lake,
                &open_tables,
                &new_session(),
                ("p", "o"),
                table,
                &def,
                WriteMode::Append,
                None,
            )
            .await;
        assert!(upkeep.running.is_empty(), "nothing was left running beside the stream");
        DeltaSink::new(lake, table.clone()).stats().await.unwrap().files
    }

    #[tokio::test]
    async fn an_append_table_whose_upkeep_beside_the_stream_failed_is_kept_up_at_its_next_commit() {
        let (_dir, lake) = Lake::temporary();
        let table = TableName::parse("bronze.events").unwrap();
        append_files(&lake, &table, 8).await;

        let mut upkeep = Upkeep::default();
        assert_eq!(
            files_after_one_commit(&mut upkeep, &lake, &table).await,
            8,
            "one commit of a hundred: no upkeep yet"
        );
        failed_beside(&mut upkeep, &table).await;
        assert_eq!(
            files_after_one_commit(&mut upkeep, &lake, &table).await,
            1,
            "compacted between two commits"
        );
        assert_eq!(upkeep.commits[&table.to_string()], 0, "the count starts again");
    }
}
