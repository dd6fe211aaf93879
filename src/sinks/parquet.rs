//! Parquet sink: Parquet files for consumers without a Delta reader, written by DataFusion in
//! both modes — a batch job's Hive-partitioned export (`<col>=<value>/part-*.parquet`), and a
//! streaming output's one file per micro-batch, named after the epoch so a replay overwrites it.
//!
//! Replacing works by deleting the replaced partition folders first, then writing. Unlike a
//! Delta commit this is not atomic: a reader may briefly see a replaced partition missing.
//! Consumers that need atomic reads should read the Delta table instead.

use std::time::Instant;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use super::{Replace, SinkMetrics};
use crate::catalog::Lake;
use crate::error::{Error, Result};

/// Writes Parquet files under one folder.
#[derive(Debug, Clone)]
pub struct ParquetSink<'l> {
    lake: &'l Lake,
    url: Url,
    partition_columns: Vec<String>,
    replace: Replace,
}

impl<'l> ParquetSink<'l> {
    /// A sink writing under `path` (relative to the lake root, absolute, or a URL).
    pub fn new(lake: &'l Lake, path: &str) -> Result<Self> {
        let url = lake.location().resolve_folder(path)?;
        Ok(Self {
            lake,
            url,
            partition_columns: Vec::new(),
            replace: Replace::Nothing,
        })
    }

    /// Hive-style partition columns.
    pub fn with_partition_columns(mut self, columns: &[String]) -> Self {
        self.partition_columns = columns.to_vec();
        self
    }

    /// Which existing partitions the write replaces.
    pub fn with_replace(mut self, replace: Replace) -> Self {
        self.replace = replace;
        self
    }

    /// Where the files go.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Deletes the replaced files, runs the plan and writes its rows.
    pub async fn write_plan(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<SinkMetrics> {
        let started = Instant::now();
        let (store, prefix) = self.lake.object_store(&self.url)?;
        ctx.register_object_store(&self.url, store.clone());
        let before = self.list(&store, &prefix).await?;
        let mut removed = 0u64;
        for path in &before {
            if self.is_replaced(&prefix, path) {
                store.delete(path).await.map_err(|e| self.error(e.to_string(), true))?;
                removed += 1;
            }
        }
        let options = DataFrameWriteOptions::new().with_partition_by(self.partition_columns.clone());
        let written = DataFrame::new(ctx.state(), plan)
            .write_parquet(self.url.as_str(), options, None)
            .await
            .map_err(|e| self.error(e.to_string(), false))?;
        let rows = written
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<arrow::array::UInt64Array>())
            .map_or(0, |counts| counts.value(0));
        let after = self.list(&store, &prefix).await?;
        let kept = before.len() as u64 - removed;
        Ok(SinkMetrics {
            rows,
            files_added: after.len() as u64 - kept,
            files_removed: removed,
            version: None,
            elapsed: started.elapsed(),
        })
    }

    /// Writes `rows` as the one file `file_name` in the folder (replacing a file of that name).
    pub async fn write_file(
        &self,
        ctx: &SessionContext,
        file_name: &str,
        rows: Vec<arrow::record_batch::RecordBatch>,
    ) -> Result<SinkMetrics> {
        let started = Instant::now();
        let url = self
            .url
            .join(file_name)
            .map_err(|e| self.error(format!("file name {file_name}: {e}"), false))?;
        let (store, _) = self.lake.object_store(&url)?;
        ctx.register_object_store(&url, store);
        let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        let frame = ctx.read_batches(rows).map_err(|e| self.error(e.to_string(), false))?;
        frame
            .write_parquet(
                url.as_str(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .map_err(|e| self.error(e.to_string(), true))?;
        Ok(SinkMetrics {
            rows: count,
            files_added: 1,
            elapsed: started.elapsed(),
            ..Default::default()
        })
    }

    async fn list(&self, store: &std::sync::Arc<dyn ObjectStore>, prefix: &ObjectPath) -> Result<Vec<ObjectPath>> {
        let mut paths: Vec<ObjectPath> = store
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.error(e.to_string(), true))?;
        paths.sort();
        Ok(paths)
    }

    /// Whether an existing file belongs to what this write replaces.
    fn is_replaced(&self, prefix: &ObjectPath, path: &ObjectPath) -> bool {
        match &self.replace {
            Replace::Nothing => false,
            Replace::Everything => true,
            Replace::DateRange { column, start, end } => {
                let Some(mut parts) = path.prefix_match(prefix) else {
                    return false;
                };
                let first = parts.next().map(|p| p.as_ref().to_string()).unwrap_or_default();
                match first.strip_prefix(&format!("{column}=")) {
                    // ISO dates compare correctly as text.
                    Some(value) => value >= start.to_string().as_str() && value <= end.to_string().as_str(),
                    None => false,
                }
            }
        }
    }

    fn error(&self, message: String, retryable: bool) -> Error {
        Error::Sink {
            table: format!("parquet {}", self.url),
            message,
            retryable,
            cause: None,
        }
    }
}
