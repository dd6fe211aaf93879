//! Delta Lake writes: [`DeltaSink`], the builder that writes a logical plan into a table with a
//! partition-range replace (`replaceWhere`), a full overwrite, an append or a merge, in one
//! commit, and keeps a table up (compaction, log expiry, VACUUM, checkpoints). Every deltalake
//! call of the project lives in this folder: [`OpenTables`] holds the snapshots a long-running
//! writer keeps between commits, `maintenance` the upkeep operations (OPTIMIZE, VACUUM, log
//! checkpoints and expiry), `clustering` the compaction of update tables by time,
//! `local_store` the object store of tables in a local folder and `replay_engine` the log store
//! every table is opened through (a bounded log replay).

mod clustering;
pub mod local_store;
mod maintenance;
mod open_tables;
mod replay_engine;

pub use clustering::{Micros, oldest, time_key};
pub use maintenance::{TableStats, UPKEEP_FILE_BYTES};
pub use open_tables::OpenTables;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Transaction};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableError};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{Replace, SinkMetrics};
use crate::catalog::{Lake, TableName, open};
use crate::error::{Error, Result};

/// Makes deltalake open tables through the project's stores (`local_store`, `replay_engine`);
/// once per process, before the first table is opened.
pub fn register_stores() {
    local_store::register();
    replay_engine::register();
}

/// The session a write runs in: the caller's (its tables, the project's extension nodes such as
/// expectations) with deltalake's planner added, for the logical nodes (row metrics, data
/// validation) its write builders plant in the plans they run.
fn writer_session(ctx: &SessionContext) -> Arc<SessionState> {
    let planner = crate::query::planner_with(vec![deltalake::delta_datafusion::planner::DeltaExtensionPlanner::new()]);
    Arc::new(
        SessionStateBuilder::new_from_existing(ctx.state())
            .with_query_planner(planner)
            .build(),
    )
}

/// Encoded bytes past which a data file's open row group is closed and flushed.
///
/// A write keeps one open row group per partition it writes into until the row group is full
/// or the write ends, outside the memory pool. With Parquet's default of a million rows per
/// row group, bronze-messages over a 5.8 GB export (14.7 M rows, 30 daily partitions) held
/// nearly every row in open row groups and peaked at 2.2 GB RSS. Closing them at this size
/// bounds a write's buffers at partitions x this, whatever its row count.
const ROW_GROUP_BYTES: usize = 8 << 20;

/// The Parquet settings of the data files every write and merge adds: deltalake's (Snappy),
/// with row groups bounded by [`ROW_GROUP_BYTES`].
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(concat!("quickchat-etl ", env!("CARGO_PKG_VERSION")).to_string())
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .build()
}

/// Writes into one Delta table of the lake.
#[derive(Debug, Clone)]
pub struct DeltaSink<'l> {
    lake: &'l Lake,
    table: TableName,
    partition_columns: Vec<String>,
    replace: Replace,
    commit_metadata: HashMap<String, serde_json::Value>,
    app_transaction: Option<(String, i64)>,
    open_tables: Option<&'l OpenTables>,
    table_properties: BTreeMap<String, String>,
}

impl<'l> DeltaSink<'l> {
    /// A sink appending to `table` with no partitioning.
    pub fn new(lake: &'l Lake, table: TableName) -> Self {
        Self {
            lake,
            table,
            partition_columns: Vec::new(),
            replace: Replace::Nothing,
            commit_metadata: HashMap::new(),
            app_transaction: None,
            open_tables: None,
            table_properties: BTreeMap::new(),
        }
    }

    /// Starts from the snapshot kept in `open_tables` and keeps the one the commit leaves
    /// there. Expired log entries are then not cleaned after every commit (deltalake's default,
    /// which lists the whole log each time): the writer's upkeep does it now and then.
    pub fn with_open_tables(mut self, open_tables: &'l OpenTables) -> Self {
        self.open_tables = Some(open_tables);
        self
    }

    /// The table to write: the kept snapshot brought up to date if a commit landed since, else
    /// the table opened (`None`: no table yet).
    async fn current(&self) -> Result<Option<DeltaTable>> {
        let kept = self.open_tables.and_then(|open| open.take(&self.table));
        let Some(mut table) = kept else {
            return open(self.lake, &self.table).await;
        };
        let next = table.version().map_or(0, |v| v + 1);
        let landed = table
            .log_store()
            .read_commit_entry(next)
            .await
            .map_err(|e| self.delta_error(e))?;
        if landed.is_some() {
            table.update_incremental(None).await.map_err(|e| self.delta_error(e))?;
        }
        Ok(Some(table))
    }

    /// Keeps the snapshot `written` left, except right after a commit deltalake checkpointed:
    /// each commit appends its files to the kept snapshot as a batch of its own, and walking a
    /// thousand such batches cost more per commit than reading the log again (measured with
    /// `bench --only commits`), so the next write opens the table from the new checkpoint.
    fn keep(&self, written: &DeltaTable) {
        let Some(open) = self.open_tables else {
            return;
        };
        let checkpointed = match (written.version(), written.snapshot()) {
            (Some(version), Ok(snapshot)) => (version + 1) % snapshot.table_config().checkpoint_interval().get() == 0,
            _ => true,
        };
        if !checkpointed {
            open.keep(&self.table, written.clone());
        }
    }

    /// Records `version` for application `app_id` in the commit (Delta's `txn` action), so the
    /// same write can be recognised and skipped when it is replayed (see
    /// [`app_transaction_version`]).
    pub fn with_app_transaction(mut self, app_id: &str, version: i64) -> Self {
        self.app_transaction = Some((app_id.to_string(), version));
        self
    }

    fn commit_properties(&self) -> CommitProperties {
        let properties = CommitProperties::default()
            .with_metadata(self.commit_metadata.clone())
            .with_cleanup_expired_logs(self.open_tables.map(|_| false));
        match &self.app_transaction {
            Some((app_id, version)) => properties.with_application_transaction(Transaction::new(app_id, *version)),
            None => properties,
        }
    }

    /// Partition columns (used when the table is created).
    pub fn with_partition_columns(mut self, columns: &[String]) -> Self {
        self.partition_columns = columns.to_vec();
        self
    }

    /// Delta table properties (used when the table is created).
    pub fn with_table_properties(mut self, properties: BTreeMap<String, String>) -> Self {
        self.table_properties = properties;
        self
    }

    /// Which existing rows the write replaces.
    pub fn with_replace(mut self, replace: Replace) -> Self {
        self.replace = replace;
        self
    }

    /// Adds a key to the commit's metadata (`quickchat.run_id`, `quickchat.job`), visible in
    /// the table history.
    pub fn with_commit_metadata(mut self, key: &str, value: &str) -> Self {
        self.commit_metadata
            .insert(key.to_string(), serde_json::Value::String(value.to_string()));
        self
    }

    /// Writes record batches (small tables: run log, quarantine). With no rows, a replacing
    /// write still removes the rows it replaces.
    pub async fn write_batches(
        &self,
        ctx: &SessionContext,
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<SinkMetrics> {
        let provider = MemTable::try_new(schema, vec![batches]).map_err(|e| self.sink_error(e.to_string()))?;
        let plan = LogicalPlanBuilder::scan(
            "batches",
            datafusion::datasource::provider_as_source(Arc::new(provider)),
            None,
        )
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| self.sink_error(e.to_string()))?;
        self.write_plan(ctx, plan).await
    }

    /// Merges record batches into the table in one commit: rows matching `upsert.on` are
    /// updated, others inserted, and target rows no source row matched are deleted when they
    /// satisfy `upsert.delete_unmatched`. Creates the table on first use.
    pub async fn upsert_batches(
        &self,
        ctx: &SessionContext,
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
        upsert: Upsert,
    ) -> Result<SinkMetrics> {
        let started = Instant::now();
        let Some(table) = self.current().await? else {
            return self.write_batches(ctx, schema, batches).await;
        };
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let source = ctx.read_batches(batches).map_err(|e| self.sink_error(e.to_string()))?;
        let source = if source.schema().fields().is_empty() {
            ctx.read_empty().map_err(|e| self.sink_error(e.to_string()))?
        } else {
            source
        };
        let mut builder = table
            .merge(source, upsert.on)
            .with_source_alias("incoming")
            .with_target_alias("existing")
            .with_session_state(writer_session(ctx))
            .with_writer_properties(writer_properties())
            .with_commit_properties(self.commit_properties())
            .when_matched_update(|u| columns.iter().fold(u, |u, c| u.update(c.as_str(), incoming(c))))
            .and_then(|b| b.when_not_matched_insert(|i| columns.iter().fold(i, |i, c| i.set(c.as_str(), incoming(c)))))
            .map_err(|e| self.delta_error(e))?;
        if let Some(predicate) = upsert.delete_unmatched {
            builder = builder
                .when_not_matched_by_source_delete(|d| d.predicate(predicate))
                .map_err(|e| self.delta_error(e))?;
        }
        let (written, metrics) = builder.await.map_err(|e| self.delta_error(e))?;
        self.keep(&written);
        Ok(SinkMetrics {
            rows: (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64,
            files_added: metrics.num_target_files_added as u64,
            files_removed: metrics.num_target_files_removed as u64,
            version: written.version().map(|v| v as i64),
            elapsed: started.elapsed(),
        })
    }

    /// Runs the logical plan and writes its rows, in one Delta commit.
    pub async fn write_plan(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<SinkMetrics> {
        let started = Instant::now();
        let table = match self.current().await? {
            Some(table) => table,
            None => {
                let url = self.lake.table_url(&self.table);
                if self.lake.location().is_local() {
                    let path = url
                        .to_file_path()
                        .map_err(|()| self.sink_error("not a local path".into()))?;
                    std::fs::create_dir_all(&path).map_err(|e| Error::io(path.display(), e))?;
                }
                DeltaTable::try_from_url_with_storage_options(url, self.lake.location().storage_options.clone())
                    .await
                    .map_err(|e| self.delta_error(e))?
            }
        };
        let opened = started.elapsed();
        let (save_mode, schema_mode) = match &self.replace {
            Replace::Nothing => (SaveMode::Append, SchemaMode::Merge),
            Replace::Everything => (SaveMode::Overwrite, SchemaMode::Overwrite),
            Replace::DateRange { .. } => (SaveMode::Overwrite, SchemaMode::Merge),
        };
        let mut builder = table
            .write(Vec::new())
            .with_input_plan(plan)
            .with_session_state(writer_session(ctx))
            .with_writer_properties(writer_properties())
            .with_save_mode(save_mode)
            .with_schema_mode(schema_mode)
            .with_commit_properties(self.commit_properties());
        if !self.partition_columns.is_empty() {
            builder = builder.with_partition_columns(self.partition_columns.clone());
        }
        if !self.table_properties.is_empty() {
            // Applied only when this write creates the table.
            builder =
                builder.with_configuration(self.table_properties.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
        }
        match &self.replace {
            Replace::DateRange { column, start, end } => {
                let day = |date: chrono::NaiveDate| {
                    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
                    lit(ScalarValue::Date32(Some((date - epoch).num_days() as i32)))
                };
                let predicate = col(column.as_str())
                    .gt_eq(day(*start))
                    .and(col(column.as_str()).lt_eq(day(*end)));
                builder = builder.with_replace_where(predicate);
            }
            Replace::Nothing | Replace::Everything => {}
        }
        let written = builder.await.map_err(|e| self.delta_error(e))?;
        let committed = started.elapsed();
        self.keep(&written);
        let mut metrics = last_commit_metrics(&written).await;
        metrics.version = written.version().map(|v| v as i64);
        metrics.elapsed = started.elapsed();
        // Where a commit's time goes, to find what grows with a table's age.
        tracing::debug!(
            table = %self.table,
            version = metrics.version,
            live_files = written.snapshot().map_or(0, |s| s.log_data().num_files()),
            open_ms = opened.as_secs_f64() * 1e3,
            write_ms = (committed - opened).as_secs_f64() * 1e3,
            after_ms = (metrics.elapsed - committed).as_secs_f64() * 1e3,
            "delta commit"
        );
        Ok(metrics)
    }

    fn sink_error(&self, message: String) -> Error {
        Error::Sink {
            table: self.table.to_string(),
            message,
            retryable: false,
            cause: None,
        }
    }

    /// A failure of deltalake, with the table's location; retryable when the storage failed
    /// in a way that passes (a server away, a full disk), however deep in the cause.
    fn delta_error(&self, e: DeltaTableError) -> Error {
        let retryable = matches!(e, DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. })
            || crate::error::is_transient(&e);
        Error::Sink {
            table: self.table.to_string(),
            message: format!("{e} (table at {})", self.lake.table_url(&self.table)),
            retryable,
            cause: Some(Box::new(e)),
        }
    }
}

/// How [`DeltaSink::upsert_batches`] matches rows: `existing` is the table's row, `incoming`
/// the new one (not `source`/`target`, which are common column names).
#[derive(Debug, Clone)]
pub struct Upsert {
    /// The match condition, e.g. `existing.id = incoming.id` (see [`existing`], [`incoming`]).
    pub on: Expr,
    /// Target rows matched by no source row are deleted when they satisfy this.
    pub delete_unmatched: Option<Expr>,
}

/// A column of the table's row in an [`Upsert`].
pub fn existing(column: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new(Some("existing"), column))
}

/// A column of the new row in an [`Upsert`].
pub fn incoming(column: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new(Some("incoming"), column))
}

/// Rows and files of the table's last commit, from the `operationMetrics` deltalake records in
/// its commit info. Reads that one commit file by its version (the history API lists the whole
/// log first, a cost that grows with every commit of a streaming table).
async fn last_commit_metrics(table: &DeltaTable) -> SinkMetrics {
    let Some(version) = table.version() else {
        return SinkMetrics::default();
    };
    let Ok(Some(bytes)) = table.log_store().read_commit_entry(version).await else {
        return SinkMetrics::default();
    };
    let Ok(actions) = deltalake::logstore::get_actions(version, &bytes) else {
        return SinkMetrics::default();
    };
    let metrics = actions.into_iter().find_map(|action| match action {
        Action::CommitInfo(info) => info.info.get("operationMetrics").cloned(),
        _ => None,
    });
    let metric = |name: &str| {
        metrics
            .as_ref()
            .and_then(|m| m.get(name))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    SinkMetrics {
        rows: metric("num_added_rows"),
        files_added: metric("num_added_files"),
        files_removed: metric("num_removed_files"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::query::new_session;

    fn ids(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    #[tokio::test]
    async fn each_write_reports_its_own_commit() {
        let (_dir, lake) = Lake::temporary();
        let table = TableName::parse("gold.commits").unwrap();
        let ctx = new_session();
        for (values, version) in [(&[1i64, 2][..], 0), (&[3, 4, 5][..], 1)] {
            let batch = ids(values);
            let metrics = DeltaSink::new(&lake, table.clone())
                .write_batches(&ctx, batch.schema(), vec![batch])
                .await
                .unwrap();
            assert_eq!(
                (metrics.rows, metrics.files_added, metrics.version),
                (values.len() as u64, 1, Some(version))
            );
        }
    }
}
