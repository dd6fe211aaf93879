//! Compaction of an update table by time: the upkeep of a streaming sink that merges windows
//! on a key with a time column (`window_start`).
//!
//! A merge rewrites every file holding a row it may match. Bin-packing compaction puts closed
//! windows and the windows still open in the same files, so each merge rewrote the table's
//! history (gold.page_views: 1.1 → 10.5 ms per micro-batch over a 60-minute soak, growing
//! without bound). This compaction splits the files the open windows touch by the oldest window
//! the stream still updates (`open_from`): rows before it go to files of closed windows, sorted
//! by time and filled up to the upkeep's file size across upkeeps; rows from it on go to one
//! file of open windows. deltalake's merge skips a file whose time range ends before its
//! incoming rows begin (the early filter on their min/max), so a merge reads and rewrites the
//! open windows only, whatever the table's age.
//!
//! `open_from` is a hint, not a promise: a merge that does reach a closed window (late rows
//! within the watermark) rewrites that file like any other, and the rows stay right.

use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::kernels::cmp::lt;
use arrow::compute::{SortOptions, cast, concat_batches, filter_record_batch, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::table::config::TablePropertiesExt;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{DeltaSink, UPKEEP_FILE_BYTES, writer_properties};
use crate::error::{Error, Result};
use crate::sinks::SinkMetrics;

/// Microseconds since the Unix epoch: how times are compared here, whatever the column's type.
pub type Micros = i64;

/// The column an update sink's files are clustered by: the first key column holding a date or
/// a timestamp (`window_start`, `session_start`, `day`), if any.
pub fn time_key<'k>(schema: &SchemaRef, key: &'k [String]) -> Option<&'k str> {
    key.iter()
        .find(|k| {
            schema.field_with_name(k).is_ok_and(|f| {
                matches!(
                    f.data_type(),
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                )
            })
        })
        .map(String::as_str)
}

/// The oldest value of `column` in `rows`: the oldest window a merge of these rows updates.
pub fn oldest(rows: &[RecordBatch], column: &str) -> Option<Micros> {
    rows.iter()
        .filter_map(|batch| {
            let values = micros(batch.column_by_name(column)?).ok()?;
            arrow::compute::min(&values)
        })
        .min()
}

fn micros(values: &ArrayRef) -> std::result::Result<arrow::array::Int64Array, arrow::error::ArrowError> {
    let as_timestamp = cast(values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let as_int = cast(&as_timestamp, &DataType::Int64)?;
    Ok(as_int
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("cast to Int64")
        .clone())
}

/// A live data file and the range of the clustering column its statistics give.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FileRange {
    pub path: String,
    pub bytes: u64,
    /// `None`: no statistics for the column; the file is treated as holding every time.
    pub range: Option<(Micros, Micros)>,
}

/// Which files a clustering rewrites: those holding rows on both sides of `open_from`, and the
/// files of closed windows not yet half the target size (so closed windows are gathered into
/// full files over successive upkeeps, and a full file is never rewritten again). Empty when
/// the rewrite would change nothing: no file straddles and at most one closed file is small.
pub(super) fn files_to_rewrite(files: &[FileRange], open_from: Micros, target_bytes: u64) -> Vec<&FileRange> {
    let straddles = |f: &FileRange| f.range.is_none_or(|(min, max)| min < open_from && max >= open_from);
    let closed_small = |f: &FileRange| f.range.is_some_and(|(_, max)| max < open_from) && f.bytes < target_bytes / 2;
    let chosen: Vec<&FileRange> = files.iter().filter(|f| straddles(f) || closed_small(f)).collect();
    let any_straddles = chosen.iter().any(|f| straddles(f));
    if any_straddles || chosen.len() > 1 {
        chosen
    } else {
        Vec::new()
    }
}

/// The range of `column` in a file's Delta statistics (`minValues`/`maxValues`, timestamps in
/// RFC 3339 at millisecond precision, dates as `YYYY-MM-DD`). The maximum is rounded up to the
/// next millisecond: writers truncate it.
fn stats_range(stats: Option<&str>, column: &str) -> Option<(Micros, Micros)> {
    let stats: serde_json::Value = serde_json::from_str(stats?).ok()?;
    let value = |side: &str| stats.get(side)?.get(column)?.as_str().and_then(parse_micros);
    Some((value("minValues")?, value("maxValues")? + 999))
}

fn parse_micros(text: &str) -> Option<Micros> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp_micros());
    }
    if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(at.and_utc().timestamp_micros());
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

impl DeltaSink<'_> {
    /// Clusters the table's files by `column` around `open_from` (see the module), in one
    /// commit that changes no data. A partitioned table is compacted the usual way instead:
    /// its merges already skip the partitions their rows are not in.
    pub async fn cluster_by_time(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        column: &str,
        open_from: Micros,
    ) -> Result<SinkMetrics> {
        let started = Instant::now();
        let Some(mut table) = self.current().await? else {
            return Ok(SinkMetrics::default());
        };
        let snapshot = table.snapshot().map_err(|e| self.delta_error(e))?;
        if !snapshot.metadata().partition_columns().is_empty() {
            self.keep(&table);
            return self.upkeep_compaction(ctx).await;
        }
        let target_bytes = snapshot.table_config().target_file_size().get().min(UPKEEP_FILE_BYTES);
        let live: Vec<_> = snapshot.log_data().iter().collect();
        let files: Vec<FileRange> = live
            .iter()
            .map(|f| FileRange {
                path: f.path().to_string(),
                bytes: f.size().max(0) as u64,
                range: stats_range(f.stats().as_deref(), column),
            })
            .collect();
        let chosen = files_to_rewrite(&files, open_from, target_bytes);
        if chosen.is_empty() {
            self.keep(&table);
            return Ok(SinkMetrics::default());
        }
        let mut writer = RecordBatchWriter::for_table(&table)
            .map_err(|e| self.delta_error(e))?
            .with_target_file_size(target_bytes)
            .with_writer_properties(writer_properties());
        let schema = writer.arrow_schema();
        let mut rows = Vec::new();
        for file in &chosen {
            rows.extend(self.read_file(&table, file, &schema).await?);
        }
        let all = concat_batches(&schema, &rows).map_err(|e| self.sink_error(e.to_string()))?;
        let (closed, open) = self.split_at(&all, column, open_from)?;
        let mut adds = Vec::new();
        for part in [closed, open] {
            if part.num_rows() > 0 {
                writer.write(part).await.map_err(|e| self.delta_error(e))?;
                adds.extend(writer.flush().await.map_err(|e| self.delta_error(e))?);
            }
        }
        let chosen_paths: std::collections::HashSet<&str> = chosen.iter().map(|f| f.path.as_str()).collect();
        let mut actions: Vec<Action> = live
            .iter()
            .filter(|f| chosen_paths.contains(f.path().as_ref()))
            .map(|f| Action::Remove(f.remove_action(false)))
            .collect();
        let files_removed = actions.len() as u64;
        let files_added = adds.len() as u64;
        actions.extend(adds.into_iter().map(|mut add| {
            add.data_change = false;
            Action::Add(add)
        }));
        let operation = DeltaOperation::Optimize {
            predicate: Some(format!("clustered by {column}, open windows from {open_from} µs")),
            target_size: target_bytes as i64,
        };
        CommitBuilder::from(self.commit_properties())
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), operation)
            .await
            .map_err(|e| self.delta_error(e))?;
        table.update_incremental(None).await.map_err(|e| self.delta_error(e))?;
        self.keep(&table);
        Ok(SinkMetrics {
            rows: 0,
            files_added,
            files_removed,
            version: table.version().map(|v| v as i64),
            elapsed: started.elapsed(),
        })
    }

    /// The rows of one data file, with the table's columns (one the file predates is null) in
    /// the table's types.
    async fn read_file(&self, table: &DeltaTable, file: &FileRange, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        let failed = |e: &dyn std::fmt::Display| self.sink_error(format!("reading {} to cluster it: {e}", file.path));
        // Whole: a file clustering rewrites holds open windows or is under half the target size.
        let bytes = table
            .object_store()
            .get(&object_store::path::Path::from(file.path.as_str()))
            .await
            .map_err(|e| self.delta_error(e.into()))?
            .bytes()
            .await
            .map_err(|e| self.delta_error(e.into()))?;
        let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| failed(&e))?
            .build()
            .map_err(|e| failed(&e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| failed(&e))?;
        batches
            .into_iter()
            .map(|batch| {
                let columns = schema
                    .fields()
                    .iter()
                    .map(|field| match batch.column_by_name(field.name()) {
                        Some(values) if values.data_type() == field.data_type() => Ok(values.clone()),
                        Some(values) => cast(values, field.data_type()),
                        None => Ok(new_null_array(field.data_type(), batch.num_rows())),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| failed(&e))?;
                RecordBatch::try_new(schema.clone(), columns).map_err(|e| failed(&e))
            })
            .collect()
    }

    /// `rows` split at `open_from`: the closed windows sorted by `column`, then the open ones.
    fn split_at(&self, rows: &RecordBatch, column: &str, open_from: Micros) -> Result<(RecordBatch, RecordBatch)> {
        let failed = |e: arrow::error::ArrowError| Error::compute("clustering by time", e);
        let values = micros(
            rows.column_by_name(column)
                .ok_or_else(|| self.sink_error(format!("the clustering column {column} is not in the table")))?,
        )
        .map_err(failed)?;
        let before: BooleanArray = lt(&values, &arrow::array::Int64Array::new_scalar(open_from)).map_err(failed)?;
        // A null time belongs to no window: it stays with the open rows, which merges rewrite.
        let before = if before.null_count() > 0 {
            arrow::compute::prep_null_mask_filter(&before)
        } else {
            before
        };
        let closed = filter_record_batch(rows, &before).map_err(failed)?;
        let open = filter_record_batch(rows, &arrow::compute::not(&before).map_err(failed)?).map_err(failed)?;
        let order = sort_to_indices(
            closed.column_by_name(column).expect("the column was found above"),
            Some(SortOptions::default()),
            None,
        )
        .map_err(failed)?;
        let closed = take_record_batch(&closed, &order).map_err(failed)?;
        Ok((closed, open))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::catalog::{Lake, TableName, open, table_provider};
    use crate::query::new_session;
    use crate::sinks::delta::{Upsert, existing, incoming};

    const MINUTE: Micros = 60_000_000;

    /// Page views of minute `window`, counted up to `count`: a stream's update-mode output.
    fn page_views(window: Micros, count: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("window_start", crate::config::columns::timestamp_type(), false),
            Field::new("page", DataType::Utf8, false),
            Field::new("views", DataType::Int64, false),
        ]));
        let pages = ["/a", "/b", "/c"];
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![window * MINUTE; pages.len()]).with_timezone("UTC")),
                Arc::new(StringArray::from(pages.to_vec())),
                Arc::new(Int64Array::from(vec![count; pages.len()])),
            ],
        )
        .unwrap()
    }

    async fn merge(sink: &DeltaSink<'_>, rows: RecordBatch) -> SinkMetrics {
        let on = ["window_start", "page"]
            .iter()
            .map(|k| existing(k).eq(incoming(k)))
            .reduce(datafusion::logical_expr::Expr::and)
            .unwrap();
        let upsert = Upsert {
            on,
            delete_unmatched: None,
        };
        sink.upsert_batches(&new_session(), rows.schema(), vec![rows], upsert)
            .await
            .unwrap()
    }

    async fn sorted_rows(lake: &Lake, table: &TableName) -> Vec<RecordBatch> {
        let ctx = new_session();
        ctx.register_table("t", table_provider(lake, table, &ctx).await.unwrap())
            .unwrap();
        ctx.sql("SELECT * FROM t ORDER BY window_start, page")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    }

    async fn live_paths(lake: &Lake, table: &TableName) -> Vec<String> {
        let table = open(lake, table).await.unwrap().unwrap();
        let snapshot = table.snapshot().unwrap();
        snapshot.log_data().iter().map(|f| f.path().to_string()).collect()
    }

    #[tokio::test]
    async fn after_clustering_a_merge_of_the_open_windows_leaves_the_closed_ones_alone() {
        let (_dir, lake) = Lake::temporary();
        let table = TableName::parse("gold.page_views").unwrap();
        let sink = DeltaSink::new(&lake, table.clone());
        // Twenty minutes, each counted up over three micro-batches, then bin-packed as the
        // compaction before this one did: one file holding every window.
        for window in 0..20 {
            for count in 1..=3 {
                merge(&sink, page_views(window, count)).await;
            }
        }
        sink.compact(&new_session()).await.unwrap();
        let before = sorted_rows(&lake, &table).await;

        let clustered = sink
            .cluster_by_time(&new_session(), "window_start", 18 * MINUTE)
            .await
            .unwrap();
        assert_eq!((clustered.files_removed, clustered.files_added), (1, 2));
        assert_eq!(sorted_rows(&lake, &table).await, before, "clustering changed no row");
        let closed = live_paths(&lake, &table).await;

        let merged = merge(&sink, page_views(19, 4)).await;
        assert_eq!(
            merged.files_removed, 1,
            "only the file of the open windows was rewritten"
        );
        let after = live_paths(&lake, &table).await;
        assert_eq!(
            closed.iter().filter(|p| after.contains(p)).count(),
            1,
            "the file of closed windows outlived the merge"
        );
        let again = sink
            .cluster_by_time(&new_session(), "window_start", 19 * MINUTE)
            .await
            .unwrap();
        assert_eq!(again.files_removed, 2, "the small closed file and the straddling one");
        let rows = sorted_rows(&lake, &table).await;
        let views: i64 = rows
            .iter()
            .map(|b| {
                arrow::compute::sum(
                    b.column_by_name("views")
                        .unwrap()
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap(),
                )
                .unwrap()
            })
            .sum();
        assert_eq!(views, 19 * 3 * 3 + 3 * 4, "every window once, with its last count");
    }

    fn file(path: &str, bytes: u64, range: Option<(Micros, Micros)>) -> FileRange {
        FileRange {
            path: path.into(),
            bytes,
            range,
        }
    }

    #[test]
    fn files_holding_open_and_closed_windows_are_rewritten_with_the_small_closed_ones() {
        let files = [
            file("full-closed", 900, Some((0, 10))),
            file("small-closed", 100, Some((11, 20))),
            file("straddling", 300, Some((15, 40))),
            file("open", 50, Some((30, 40))),
            file("no-stats", 10, None),
        ];
        let chosen: Vec<&str> = files_to_rewrite(&files, 30, 1000)
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(chosen, ["small-closed", "straddling", "no-stats"]);
    }

    #[test]
    fn nothing_is_rewritten_when_the_files_are_already_clustered() {
        let files = [
            file("full-closed", 900, Some((0, 10))),
            file("small-closed", 100, Some((11, 20))),
            file("open", 50, Some((30, 40))),
        ];
        assert!(files_to_rewrite(&files, 30, 1000).is_empty());
    }

    #[test]
    fn statistics_give_a_column_range_in_microseconds_with_the_maximum_rounded_up() {
        let stats = r#"{"numRecords":2,"minValues":{"window_start":"2026-12-01T10:00:00.000Z"},
            "maxValues":{"window_start":"2026-12-01T10:05:00.123Z"}}"#;
        let min = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(stats_range(Some(stats), "window_start"), Some((min, min + 300_123_999)));
        assert_eq!(stats_range(Some(stats), "page"), None);
        assert_eq!(stats_range(None, "window_start"), None);
    }
}
