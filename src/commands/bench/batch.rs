//! `bench --only batch`: the batch medallion (`full-pipeline`) on a generated data set under
//! the process's memory pool (`--memory-limit`, default 3/4 of the machine's memory): per job,
//! wall time, rows read and written, and the process's peak memory while it ran.

use std::time::Instant;

use super::{Row, lake_at, peak_rss_mb, reset_peak_rss};
use crate::cli::BenchArgs;
use crate::config::Settings;
use crate::config::describe_bytes;
use crate::error::Result;
use crate::generate::{DataSetSpec, write_to_url};
use crate::jobs::graph::{FULL_PIPELINE, plan_target};
use crate::jobs::runner::{RunContext, run_jobs};
use crate::progress::Progress;
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
        progress: &progress,
    };
    println!(
        "{:<24} {:>9} {:>12} {:>12} {:>10}",
        "job", "seconds", "rows read", "rows written", "peak MiB"
    );
    let (mut seconds, mut peak, mut messages, mut largest) = (0.0, 0, 0, (String::new(), 0));
    for job in jobs {
        reset_peak_rss();
        let report = run_jobs(cx, &[job], DateRange::All).await.remove(0);
        report.outcome?;
        let job_peak = peak_rss_mb().unwrap_or(0);
        println!(
            "{:<24} {:>9.1} {:>12} {:>12} {:>10}",
            report.job,
            report.elapsed.as_secs_f64(),
            report.rows_read,
            report.sink.rows,
            job_peak
        );
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
            "--memory-limit {}; largest: {} ({} MiB)",
            describe_bytes(limit),
            largest.0,
            largest.1
        ),
    });
    Ok(())
}
