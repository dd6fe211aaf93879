//! `quickchat-etl maintain [all|<layer>|<layer>.<table>]`: the lake's Delta upkeep, for a daily
//! Airflow task or by hand. Compaction (bin-packing to the table's target file size) or Z-order
//! where a pipeline file declares `zorder_by` on the table's sink, VACUUM with Delta's retention
//! check, a log checkpoint, and expiry of log entries past `delta.logRetentionDuration`. With
//! no operation flag it does all four. It prints what each table went through and records one
//! `meta.run_log` row per table (job `maintain <table>`).
//!
//! Safe beside running jobs and streams: compaction and checkpoints change no rows, a stream
//! notices the new commits before its next write (see `sinks::delta::OpenTables`), and VACUUM
//! keeps every file a version within the retention needs.

use std::collections::HashMap;

use chrono::Utc;

use crate::catalog::{Lake, TableName};
use crate::cli::MaintainArgs;
use crate::config::Settings;
use crate::config::pipeline::SinkDef;
use crate::error::{Error, Result};
use crate::meta::run_log::{self, RunRecord, RunStatus};
use crate::query::{DateRange, RunParams};
use crate::sinks::delta::{DeltaSink, TableStats};

/// Runs the chosen upkeep on every table the target names.
pub async fn run(settings: &Settings, args: MaintainArgs) -> Result<()> {
    let registry = super::load_registry(settings)?;
    let lake = Lake::new(settings.lake.clone());
    let zorder = declared_zorder(&registry);
    let tables = targets(&lake, &args.target).await?;
    let everything = !(args.optimize || args.vacuum || args.checkpoint || args.expire_logs);
    let ctx = crate::query::new_session();
    let params = RunParams::new(DateRange::All);
    println!(
        "{:<28} {:>13} {:>13} {:>21} {:>11}  done",
        "table", "version", "files", "bytes", "log entries"
    );
    for table in tables {
        let started_at = Utc::now();
        let name = table.to_string();
        let sink = DeltaSink::new(&lake, table.clone())
            .with_commit_metadata("quickchat.job", "maintain")
            .with_commit_metadata("quickchat.run_id", &params.run_id);
        let before = sink.stats().await?;
        let mut done = Vec::new();
        let (mut added, mut removed) = (0, 0);
        if everything || args.optimize {
            let columns = args
                .zorder_by
                .clone()
                .or_else(|| zorder.get(&name).cloned())
                .unwrap_or_default();
            let how = if columns.is_empty() {
                "optimize".to_string()
            } else {
                format!("z-order by {}", columns.join(", "))
            };
            if args.dry_run {
                done.push(format!("would {how} {} files", before.files));
            } else {
                let metrics = sink.optimize(&ctx, &columns).await?;
                (added, removed) = (metrics.files_added, metrics.files_removed);
                done.push(format!("{how}: {removed} files into {added}"));
            }
        }
        if everything || args.vacuum {
            let deleted = sink.vacuum(args.retain, args.force, args.dry_run).await?;
            let verb = if args.dry_run { "would delete" } else { "deleted" };
            done.push(format!(
                "vacuum (retain {}): {verb} {} files",
                humantime::format_duration(args.retain),
                deleted.len()
            ));
        }
        if (everything || args.checkpoint) && !args.dry_run {
            sink.checkpoint().await?;
            done.push("checkpoint".to_string());
        }
        if (everything || args.expire_logs) && !args.dry_run {
            let expired = sink.expire_logs().await?;
            done.push(format!("expired {expired} log entries"));
        }
        let after = if args.dry_run { before } else { sink.stats().await? };
        println!(
            "{name:<28} {:>13} {:>13} {:>21} {:>11}  {}",
            change(
                before.version.map_or(0, |v| v as u64),
                after.version.map_or(0, |v| v as u64)
            ),
            change(before.files, after.files),
            change(before.bytes, after.bytes),
            change(before.log_entries, after.log_entries),
            done.join("; ")
        );
        if !args.dry_run {
            record(&lake, &ctx, &params, &name, started_at, (added, removed), &after).await?;
        }
    }
    Ok(())
}

fn change(before: u64, after: u64) -> String {
    if before == after {
        before.to_string()
    } else {
        format!("{before}→{after}")
    }
}

/// The tables `target` names: `all`, a layer, or one `<layer>.<table>`.
async fn targets(lake: &Lake, target: &str) -> Result<Vec<TableName>> {
    let tables = lake.list_tables().await?;
    let chosen: Vec<TableName> = match target {
        "all" => tables.clone(),
        layer if !layer.contains('.') => tables.iter().filter(|t| t.layer == layer).cloned().collect(),
        table => tables.iter().filter(|t| t.to_string() == table).cloned().collect(),
    };
    if chosen.is_empty() {
        let known: Vec<String> = tables.iter().map(TableName::to_string).collect();
        return Err(Error::Usage(format!(
            "no Delta table matches `{target}` in {} (tables: {})",
            lake.location().root,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(chosen)
}

/// `zorder_by` of every Delta sink the pipeline files declare, by table.
fn declared_zorder(registry: &crate::jobs::Registry) -> HashMap<String, Vec<String>> {
    let batch = registry.jobs().map(|job| &job.sink);
    let streaming = registry.streams().flat_map(|p| p.sinks().map(|(_, sink)| sink));
    batch
        .chain(streaming)
        .filter_map(|sink| match sink {
            SinkDef::Delta(def) if !def.zorder_by.is_empty() => Some((def.table.clone(), def.zorder_by.clone())),
            _ => None,
        })
        .collect()
}

async fn record(
    lake: &Lake,
    ctx: &datafusion::prelude::SessionContext,
    params: &RunParams,
    table: &str,
    started_at: chrono::DateTime<Utc>,
    (files_added, files_removed): (u64, u64),
    after: &TableStats,
) -> Result<()> {
    let record = RunRecord {
        run_id: params.run_id.clone(),
        job: format!("maintain {table}"),
        status: RunStatus::Succeeded,
        range: params.range,
        started_at,
        finished_at: Utc::now(),
        rows_read: 0,
        rows_rejected: 0,
        rows_written: 0,
        rows_dropped: 0,
        files_added,
        files_removed,
        table_version: after.version,
        violations: Vec::new(),
        error: None,
    };
    run_log::append(lake, ctx, &record).await
}
