//! `bench --only commits`: a streaming Delta sink fast-forwarded through many micro-batch
//! commits to one table (a day of a 1 s trigger is 86,400), to show whether the cost of a
//! commit grows with the table's age. Two tables, written the way a stream writes them: an
//! append sink (a bronze copy) and an update sink (a windowed count merged on its key). For
//! each tenth of the run it prints the commit time (mean and p99), the `_delta_log` entries
//! and the process's memory.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Row, lake_at, log_retention_properties, peak_rss_mb, reset_peak_rss, rss_mb};
use crate::cli::{BenchArgs, CommitTable};
use crate::config::columns::timestamp_type;
use crate::config::pipeline::{DEFAULT_COMPACT_EVERY, DeltaSinkDef, SinkDef, WriteMode};
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::{Error, Result};
use crate::metrics::Latencies;
use crate::sinks::epoch::SinkWriter;

/// Micro-batches per minute of event time (a 1 s trigger).
const EPOCHS_PER_WINDOW: u64 = 60;

/// Writes `commits` micro-batches to an append and to an update table, printing each tenth.
pub async fn commits(
    pipeline: &StreamPipeline,
    work: &std::path::Path,
    args: &BenchArgs,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let (commits, pages) = (args.commits, args.commit_rows);
    let lake = lake_at(&work.join("lake-commits"))?;
    let schema = page_schema();
    for (kind, name, mode, key) in [
        (CommitTable::Append, "append", WriteMode::Append, vec![]),
        (
            CommitTable::Update,
            "update",
            WriteMode::Update,
            vec!["window_start".to_string(), "page".to_string()],
        ),
    ] {
        if !args.commit_tables.is_empty() && !args.commit_tables.contains(&kind) {
            continue;
        }
        let table = format!("gold.commits_{name}");
        let sink = SinkDef::Delta(DeltaSinkDef {
            table: table.clone(),
            partition_by: Vec::new(),
            mode: Some(mode),
            key,
            compact_every: DEFAULT_COMPACT_EVERY,
            zorder_by: Vec::new(),
            table_properties: log_retention_properties(args.commit_log_retention),
        });
        println!("commits: {commits} micro-batches of {pages} rows to {table} ({name} mode) ...");
        if let Some(retention) = args.commit_log_retention {
            println!(
                "commits: Delta log entries and tombstones kept {}",
                humantime::format_duration(retention)
            );
        }
        println!(
            "{:>9} {:>13} {:>12} {:>16} {:>8}",
            "commits", "mean ms", "p99 ms", "_delta_log files", "RSS MiB"
        );
        let mut writer = SinkWriter::new(&lake, pipeline, "generator", "bench", Default::default());
        let log_dir = lake.table_url(&crate::catalog::TableName::parse(&table).map_err(Error::Internal)?);
        let log_dir = log_dir
            .to_file_path()
            .map_err(|()| Error::Internal("the bench lake is a local folder".into()))?
            .join("_delta_log");
        reset_peak_rss();
        let started = Instant::now();
        let tenth = (commits / 10).max(1);
        let mut slice = Latencies::default();
        let mut all = Latencies::default();
        let mut slice_ms = 0.0;
        for epoch in 1..=commits {
            let batch = page_counts(&schema, epoch, pages)?;
            let commit = Instant::now();
            writer.write("bench", &sink, epoch, &schema, &[batch], false).await?;
            let elapsed = commit.elapsed();
            slice.record(elapsed);
            all.record(elapsed);
            slice_ms += elapsed.as_secs_f64() * 1000.0;
            if epoch % tenth == 0 || epoch == commits {
                let entries = std::fs::read_dir(&log_dir).map(|d| d.count()).unwrap_or(0);
                println!(
                    "{:>9} {:>13.1} {:>12} {:>16} {:>8}",
                    epoch,
                    slice_ms / slice.len().max(1) as f64,
                    slice.quantile(0.99).as_millis(),
                    entries,
                    rss_mb().unwrap_or(0)
                );
                slice = Latencies::default();
                slice_ms = 0.0;
            }
        }
        writer.settle().await;
        rows.push(Row {
            phase: format!("commits: {name} table"),
            events: commits,
            seconds: started.elapsed().as_secs_f64(),
            latency: Some((all.quantile(0.5), all.quantile(0.99))),
            peak_rss_mb: peak_rss_mb(),
            note: "events = commits; p50/p99: one commit".to_string(),
        });
    }
    Ok(())
}

fn page_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("window_start", timestamp_type(), false),
        Field::new("page", DataType::Utf8, false),
        Field::new("views", DataType::Int64, false),
    ]))
}

/// The page counts of micro-batch `epoch`: each of `pages` pages of its minute, counts growing through
/// the minute as an update-mode window's would.
fn page_counts(schema: &SchemaRef, epoch: u64, pages: usize) -> Result<RecordBatch> {
    let window = (epoch / EPOCHS_PER_WINDOW) as i64 * 60_000_000;
    let views: Vec<i64> = (0..pages)
        .map(|p| (epoch % EPOCHS_PER_WINDOW + 1) as i64 * (p as i64 + 1))
        .collect();
    let pages: Vec<String> = (0..pages).map(|p| format!("/page/{p}")).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![window; pages.len()]).with_timezone("UTC")),
            Arc::new(StringArray::from(pages)),
            Arc::new(Int64Array::from(views)),
        ],
    )
    .map_err(|e| Error::compute("bench page counts", e))
}
