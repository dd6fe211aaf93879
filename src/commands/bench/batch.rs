//! `bench --only batch`: the batch medallion (`full-pipeline`) on a generated data set under
//! the process's memory pool (`--memory-limit`, default 3/4 of the machine's memory): per job,
//! wall time, rows read and written, the process's peak memory and the most spill files took
//! on disk while it ran. Then the same pipeline over the same files in a child process with no
//! practical limit (the machine's memory), and every table of both lakes compared by row count
//! and checksum: spilling must not change a number.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::row::{RowConverter, SortField};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use super::{Row, lake_at, peak_rss_mb, reset_peak_rss};
use crate::catalog::{Lake, TableName};
use crate::cli::BenchArgs;
use crate::config::Settings;
use crate::config::describe_bytes;
use crate::error::Error;
use crate::error::Result;
use crate::generate::{DataSetSpec, write_to_url};
use crate::jobs::graph::{FULL_PIPELINE, plan_target};
use crate::jobs::runner::{RunContext, run_jobs};
use crate::progress::Progress;
use crate::project::ProjectLocation;
use crate::query::DateRange;

pub(super) async fn batch(
    settings: &Settings,
    work: &std::path::Path,
    args: &BenchArgs,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let lake = lake_at(&work.join("lake-batch"))?;
    let spec = DataSetSpec {
        seed: 42,
        users: args.batch_users,
        days: args.batch_days,
        start_date: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date"),
    };
    let limit = crate::query::memory::limit();
    println!(
        "batch: {} users x {} days, full pipeline under --memory-limit {} ...",
        spec.users,
        spec.days,
        describe_bytes(limit)
    );
    let started = Instant::now();
    let landing = lake.location().resolve_folder("landing")?;
    let counts = write_to_url(&lake, &landing, &spec).await?;
    println!("generated in {:.1}s: {counts}", started.elapsed().as_secs_f64());

    let registry = super::super::load_registry(settings)?;
    let jobs = plan_target(&registry, FULL_PIPELINE, false)?;
    let progress = Progress::hidden();
    let cx = RunContext {
        lake: &lake,
        registry: &registry,
        mysql_url: None,
        mongodb: None,
        progress: &progress,
        observer: None,
    };
    println!(
        "{:<24} {:>9} {:>12} {:>12} {:>10} {:>11}",
        "job", "seconds", "rows read", "rows written", "peak MiB", "spill MiB"
    );
    let (mut seconds, mut peak, mut messages, mut largest, mut spilled) = (0.0, 0, 0, (String::new(), 0), 0);
    for job in jobs {
        reset_peak_rss();
        let spill = SpillPeak::watch();
        let report = run_jobs(cx, &[job], DateRange::All).await.remove(0);
        let job_spill = spill.stop();
        report.outcome?;
        let job_peak = peak_rss_mb().unwrap_or(0);
        println!(
            "{:<24} {:>9.1} {:>12} {:>12} {:>10} {:>11}",
            report.job,
            report.elapsed.as_secs_f64(),
            report.rows_read,
            report.sink.rows,
            job_peak,
            job_spill >> 20
        );
        spilled = spilled.max(job_spill);
        seconds += report.elapsed.as_secs_f64();
        if job.name == "bronze-messages" {
            messages = report.rows_read;
        }
        if job_peak > largest.1 {
            largest = (job.name.clone(), job_peak);
        }
        peak = peak.max(job_peak);
    }
    rows.push(Row {
        phase: format!("batch: full pipeline, {} users x {} days", spec.users, spec.days),
        events: messages,
        seconds,
        latency: None,
        peak_rss_mb: Some(peak),
        note: format!(
            "--memory-limit {}; largest: {} ({} MiB); spill on disk at most {}",
            describe_bytes(limit),
            largest.0,
            largest.1,
            describe_bytes(spilled)
        ),
    });

    let reference = lake_at(&work.join("lake-unlimited"))?;
    let started = Instant::now();
    let machine = crate::query::memory::machine_memory().unwrap_or(64 << 30);
    run_unlimited(settings, &lake, &reference, machine)?;
    println!(
        "the same pipeline without a limit (--memory-limit {}): {:.1}s",
        describe_bytes(machine),
        started.elapsed().as_secs_f64()
    );
    compare_lakes(&lake, &reference).await
}

/// The most bytes the process's spill files held on disk while it was watched, sampled every
/// 20 ms (files live for a query's spill and merge, far longer than that).
struct SpillPeak {
    peak: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl SpillPeak {
    fn watch() -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let seen = peak.clone();
        let sampler = tokio::spawn(async move {
            let disk = crate::query::memory::runtime().disk_manager.clone();
            loop {
                seen.fetch_max(disk.used_disk_space(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, sampler }
    }

    fn stop(self) -> u64 {
        self.sampler.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Runs `full-pipeline` in a child process of this binary, reading `lake`'s landing files into
/// `reference`, with `machine` bytes (the whole machine's memory) as its limit.
fn run_unlimited(settings: &Settings, lake: &Lake, reference: &Lake, machine: u64) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("the running binary", e))?;
    let landing = lake.location().resolve_folder("landing")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--lake")
        .arg(reference.root().to_string())
        .arg("--memory-limit")
        .arg(machine.to_string())
        .args(["--log-level", "warn", "run", FULL_PIPELINE])
        .env("LANDING_PATH", landing.to_string())
        .env_remove("MYSQL_URL")
        .stdout(std::process::Stdio::null());
    if let ProjectLocation::Folder(dir) = &settings.project {
        command.arg("--project").arg(dir);
    }
    let status = command.status().map_err(|e| Error::io("the unlimited run", e))?;
    if !status.success() {
        return Err(Error::Internal(format!(
            "the unlimited run of {FULL_PIPELINE} failed: {status}"
        )));
    }
    Ok(())
}

/// Compares every table of the two lakes (rows and checksum); any difference is an error.
async fn compare_lakes(lake: &Lake, reference: &Lake) -> Result<()> {
    let tables = lake.list_tables().await?;
    let mut different = Vec::new();
    for table in &tables {
        let ours = checksum(lake, table).await?;
        let theirs = checksum(reference, table).await?;
        if ours != theirs {
            different.push(format!("{table} ({} rows vs {} without a limit)", ours.0, theirs.0));
        }
    }
    if !different.is_empty() {
        return Err(Error::Internal(format!(
            "tables differ from the unlimited run: {}",
            different.join(", ")
        )));
    }
    println!(
        "{} tables identical to the unlimited run (rows and checksums)",
        tables.len()
    );
    Ok(())
}

/// Rows of a table and an order-independent checksum of them: the sum of each row's xxh3 in
/// Arrow's row format. Columns starting with `_` (bronze's `_run_id`, `_ingested_at`) say
/// which run wrote a row and are left out; the run log and quarantine differ between runs
/// (run ids, times) and are compared by rows only.
async fn checksum(lake: &Lake, table: &TableName) -> Result<(u64, u64)> {
    let ctx = SessionContext::new_with_state(crate::query::new_session().state());
    let provider = crate::catalog::table_provider(lake, table, &ctx).await?;
    let failed = |e: datafusion::error::DataFusionError| Error::compute(format!("checksumming {table}"), e);
    let frame = ctx.read_table(provider).map_err(failed)?;
    let run_columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|name| name.starts_with('_'))
        .collect();
    let frame = frame
        .drop_columns(&run_columns.iter().map(String::as_str).collect::<Vec<_>>())
        .map_err(failed)?;
    let fields: Vec<SortField> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(|e| Error::compute(format!("checksumming {table}"), e))?;
    let by_rows_only = table.layer == "meta";
    let mut stream = frame.execute_stream().await.map_err(failed)?;
    let (mut rows, mut sum) = (0u64, 0u64);
    while let Some(batch) = stream.try_next().await.map_err(failed)? {
        rows += batch.num_rows() as u64;
        if by_rows_only {
            continue;
        }
        let converted = converter
            .convert_columns(batch.columns())
            .map_err(|e| Error::compute(format!("checksumming {table}"), e))?;
        for row in converted.iter() {
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_64(row.as_ref()));
        }
    }
    Ok((rows, sum))
}
