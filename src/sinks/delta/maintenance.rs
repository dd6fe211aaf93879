//! Keeping a Delta table up: compaction (bin-packing or Z-order), VACUUM, log checkpoints
//! and log expiry, and the upkeep a streaming sink runs every `compact_every` commits.

use std::time::Instant;

use datafusion::prelude::SessionContext;
use deltalake::operations::optimize::OptimizeType;
use deltalake::table::config::TablePropertiesExt;
use futures::TryStreamExt;

use super::{DeltaSink, Micros, writer_session};
use crate::catalog::open;
use crate::error::{Error, Result};
use crate::sinks::SinkMetrics;

/// The largest file a streaming sink's upkeep (every `compact_every` commits) compacts to.
///
/// Bin-packing rewrites every file under the target size: with Delta's 100 MiB default, each
/// upkeep of a table smaller than that rewrote the whole table, a cost growing with the
/// table's age (a gold table of closed windows gains a little every minute for days). Capped
/// at this, an upkeep rewrites at most this much per bin, and a file that reached it is never
/// rewritten by the stream again; `maintain --optimize` packs to the table's own target.
pub const UPKEEP_FILE_BYTES: u64 = 32 << 20;

/// What [`DeltaSink::stats`] reports of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// The current version (`None`: no table).
    pub version: Option<i64>,
    /// Live data files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Entries of `_delta_log` (commits, checkpoints).
    pub log_entries: u64,
}

impl DeltaSink<'_> {
    /// Compacts the table's small files into files of the table's target size (Delta OPTIMIZE,
    /// bin-packing): one commit that changes no data, so readers and replays see the same rows.
    pub async fn compact(&self, ctx: &SessionContext) -> Result<SinkMetrics> {
        self.optimize(ctx, &[]).await
    }

    /// [`compact`](Self::compact), or with `zorder_by` columns a Z-order rewrite of the table's
    /// files by them (rows near in those columns end up in the same files).
    pub async fn optimize(&self, ctx: &SessionContext, zorder_by: &[String]) -> Result<SinkMetrics> {
        self.optimize_to(ctx, zorder_by, None).await
    }

    /// [`optimize`](Self::optimize) into files of the table's target size, at most `cap`:
    /// files past it are left alone, so no bin rewrites more than it.
    async fn optimize_to(&self, ctx: &SessionContext, zorder_by: &[String], cap: Option<u64>) -> Result<SinkMetrics> {
        let started = Instant::now();
        let Some(table) = self.current().await? else {
            return Ok(SinkMetrics::default());
        };
        let kind = if zorder_by.is_empty() {
            OptimizeType::Compact
        } else {
            OptimizeType::ZOrder(zorder_by.to_vec())
        };
        let target = table
            .snapshot()
            .map_err(|e| self.delta_error(e))?
            .table_config()
            .target_file_size();
        let mut optimize = table
            .optimize()
            .with_type(kind)
            .with_session_state(writer_session(ctx))
            .with_commit_properties(self.commit_properties());
        if let Some(cap) = cap.and_then(std::num::NonZeroU64::new) {
            optimize = optimize.with_target_size(target.min(cap));
        }
        let (compacted, metrics) = optimize.await.map_err(|e| self.delta_error(e))?;
        self.keep(&compacted);
        Ok(SinkMetrics {
            rows: 0,
            files_added: metrics.num_files_added,
            files_removed: metrics.num_files_removed,
            version: compacted.version().map(|v| v as i64),
            elapsed: started.elapsed(),
        })
    }

    /// Expires log entries older than the table's `delta.logRetentionDuration` (30 days unless
    /// set) that a checkpoint makes unneeded; returns how many were deleted.
    pub async fn expire_logs(&self) -> Result<usize> {
        let Some(table) = open(self.lake, &self.table).await? else {
            return Ok(0);
        };
        deltalake::protocol::checkpoints::cleanup_metadata(&table, None)
            .await
            .map_err(|e| self.delta_error(e))
    }

    /// Deletes the files no version within `retain` references (Delta VACUUM); returns them.
    /// A retention under the table's `delta.deletedFileRetentionDuration` (7 days unless set)
    /// is refused unless `force`: a reader of an older version could lose its files.
    pub async fn vacuum(&self, retain: std::time::Duration, force: bool, dry_run: bool) -> Result<Vec<String>> {
        let Some(table) = open(self.lake, &self.table).await? else {
            return Ok(Vec::new());
        };
        let minimum = table
            .snapshot()
            .map_err(|e| self.delta_error(e))?
            .table_config()
            .deleted_file_retention_duration();
        if retain < minimum && !force {
            return Err(Error::Usage(format!(
                "{}: a VACUUM retention of {} is under the table's delta.deletedFileRetentionDuration \
                 ({}): readers of older versions could lose their files; give --retain {} or more, \
                 or --force",
                self.table,
                humantime::format_duration(retain),
                humantime::format_duration(minimum),
                humantime::format_duration(minimum),
            )));
        }
        let retain = chrono::Duration::from_std(retain).map_err(|e| self.sink_error(e.to_string()))?;
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(retain)
            .with_enforce_retention_duration(false)
            .with_dry_run(dry_run)
            .with_commit_properties(self.commit_properties())
            .await
            .map_err(|e| self.delta_error(e))?;
        Ok(metrics.files_deleted)
    }

    /// Writes a log checkpoint at the current version, so that readers start from it instead of
    /// replaying the commits since the last one.
    pub async fn checkpoint(&self) -> Result<()> {
        let Some(table) = open(self.lake, &self.table).await? else {
            return Ok(());
        };
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(|e| self.delta_error(e))
    }

    /// The table's version, live files and their bytes, and the entries of its `_delta_log`.
    pub async fn stats(&self) -> Result<TableStats> {
        let Some(table) = open(self.lake, &self.table).await? else {
            return Ok(TableStats::default());
        };
        let snapshot = table.snapshot().map_err(|e| self.delta_error(e))?;
        let files = snapshot.log_data();
        let bytes = files.iter().map(|f| f.size().max(0) as u64).sum();
        let log = table.log_store();
        let log_entries = log
            .object_store(None)
            .list(Some(&log.log_path().clone()))
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.delta_error(e.into()))?
            .len();
        Ok(TableStats {
            version: table.version().map(|v| v as i64),
            files: files.num_files() as u64,
            bytes,
            log_entries: log_entries as u64,
        })
    }

    /// A streaming table's upkeep: [`upkeep_compaction`](Self::upkeep_compaction), then
    /// [`expire_logs`](Self::expire_logs). Returns the compaction's metrics.
    pub async fn upkeep(&self, ctx: &SessionContext) -> Result<SinkMetrics> {
        let compacted = self.upkeep_compaction(ctx).await?;
        self.expire_logs_after(compacted).await
    }

    /// [`compact`](Self::compact) into files of the table's target size, at most
    /// [`UPKEEP_FILE_BYTES`].
    pub async fn upkeep_compaction(&self, ctx: &SessionContext) -> Result<SinkMetrics> {
        self.optimize_to(ctx, &[], Some(UPKEEP_FILE_BYTES)).await
    }

    /// The upkeep of an update table whose merges touch times from `open_from` on:
    /// [`cluster_by_time`](Self::cluster_by_time) by `column`, then
    /// [`expire_logs`](Self::expire_logs).
    pub async fn upkeep_clustered(&self, ctx: &SessionContext, column: &str, open_from: Micros) -> Result<SinkMetrics> {
        let clustered = self.cluster_by_time(ctx, column, open_from).await?;
        self.expire_logs_after(clustered).await
    }

    async fn expire_logs_after(&self, compacted: SinkMetrics) -> Result<SinkMetrics> {
        let expired = self.expire_logs().await?;
        if expired > 0 {
            tracing::debug!(table = %self.table, expired, "expired log entries");
        }
        Ok(compacted)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::catalog::{Lake, TableName};
    use crate::query::new_session;

    async fn append_files(sink: &DeltaSink<'_>, files: i64) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        for id in 0..files {
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![id; 100]))]).unwrap();
            sink.write_batches(&new_session(), schema.clone(), vec![batch])
                .await
                .unwrap();
        }
    }

    async fn live_files(lake: &Lake, table: &TableName) -> Vec<(String, u64)> {
        let table = open(lake, table).await.unwrap().unwrap();
        let snapshot = table.snapshot().unwrap();
        snapshot
            .log_data()
            .iter()
            .map(|f| (f.path().to_string(), f.size() as u64))
            .collect()
    }

    #[tokio::test]
    async fn a_file_compacted_to_the_upkeep_size_is_not_rewritten_by_the_next_upkeep() {
        let (_dir, lake) = Lake::temporary();
        let table = TableName::parse("gold.closed_windows").unwrap();
        let sink = DeltaSink::new(&lake, table.clone());
        append_files(&sink, 10).await;
        let cap: u64 = live_files(&lake, &table).await.iter().map(|(_, bytes)| bytes).sum();
        let first = sink.optimize_to(&new_session(), &[], Some(cap)).await.unwrap();
        assert_eq!((first.files_removed, first.files_added), (10, 1));
        let compacted = live_files(&lake, &table).await;

        append_files(&sink, 10).await;
        let second = sink.optimize_to(&new_session(), &[], Some(cap)).await.unwrap();
        assert_eq!(
            (second.files_removed, second.files_added),
            (10, 1),
            "only the new small files were packed"
        );
        let live = live_files(&lake, &table).await;
        assert!(
            live.contains(&compacted[0]),
            "{compacted:?} outlived the second upkeep: {live:?}"
        );
    }
}
