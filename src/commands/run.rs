//! `quickchat-etl run <job|group>`: run jobs in dependency order for a date or range, or show
//! what would run with `--dry-run`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::catalog::Lake;
use crate::cli::{RunArgs, StreamRunArgs};
use crate::config::Settings;
use crate::config::job::Job;
use crate::config::pipeline::SourceDef;
use crate::error::{Error, Result};
use crate::http::Server;
use crate::jobs::Registry;
use crate::jobs::graph::plan_target;
use crate::jobs::planner::plan_all;
use crate::jobs::runner::{JobReport, RunContext, run_jobs};
use crate::observe::batch_run::{self, BatchRun};
use crate::observe::job_metrics::{JobFigures, JobMetrics};
use crate::progress::Progress;
use crate::query::DateRange;
use crate::sinks::Replace;

/// Runs the target; the first failure decides the exit code.
pub async fn run(settings: &Settings, args: RunArgs, progress: &Progress) -> Result<()> {
    let registry = super::load_registry(settings)?;
    if let Some(pipeline) = registry.stream(&args.target) {
        if args.metrics_push.is_some() || args.metrics_file.is_some() {
            return Err(Error::Usage(format!(
                "`{}` is a streaming pipeline: --metrics-push and --metrics-file are for batch runs, which end \
                 before a scraper comes by; scrape its live UI's /metrics instead",
                args.target
            )));
        }
        return super::run_stream::run(settings, pipeline, args).await;
    }
    let stream = &args.stream;
    if stream.from_files.is_some() || stream.from_generator || stream.until_caught_up || stream.max_epochs.is_some() {
        return Err(Error::Usage(format!(
            "`{}` is a batch job: --from-files, --from-generator, --until-caught-up and --max-epochs are for \
             streaming pipelines ({})",
            args.target,
            registry
                .streams()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let range = date_range(&args)?;
    let jobs = plan_target(&registry, &args.target, args.upstream)?;
    if args.dry_run {
        return dry_run(settings, &registry, &jobs, range).await;
    }
    let lake = Lake::new(settings.lake.clone());
    tracing::info!(target = %args.target, jobs = jobs.len(), dates = %range, lake = %lake.root(), "run started");
    let batch = Arc::new(BatchRun::new(
        &args.target,
        jobs.iter().map(|j| j.name.clone()).collect(),
    ));
    // Kept until the run ends: dropping the server stops it.
    let _ui = start_ui(&args.stream, settings, &args.target, |listen| {
        batch_run::serve(listen, batch.clone())
    })
    .await?;
    let cx = RunContext {
        lake: &lake,
        registry: &registry,
        mysql_url: settings.mysql_url.as_deref(),
        mongodb: settings.mongodb.as_ref(),
        progress,
        observer: Some(&batch),
    };
    let reports = until_interrupted(run_jobs(cx, &jobs, range)).await?;
    print_summary(&reports);
    report_metrics(&args, settings, &reports).await;
    first_failure(reports)
}

/// Starts the run's UI with `start` on `--ui`, else `[ui] listen` (none with `--no-ui`); the
/// returned server stops when dropped. An address asked for on the command line must work; the
/// configured (or default) one is a convenience that a run does not stop for.
pub async fn start_ui<F, Served>(
    stream: &StreamRunArgs,
    settings: &Settings,
    run: &str,
    start: F,
) -> Result<Option<Server>>
where
    F: FnOnce(SocketAddr) -> Served,
    Served: std::future::Future<Output = Result<Server>>,
{
    if stream.no_ui {
        return Ok(None);
    }
    match start(stream.ui.unwrap_or(settings.ui_listen)).await {
        Ok(ui) => {
            tracing::info!(run, url = %format!("http://{}/", ui.address), "live UI");
            Ok(Some(ui))
        }
        Err(e) if stream.ui.is_some() => Err(Error::Usage(format!("{e} (with --ui ADDR, or --no-ui)"))),
        Err(e) => {
            tracing::warn!(run, error = %e, "running without the live UI");
            Ok(None)
        }
    }
}

/// Pushes the run's metrics to the Pushgateway and writes them to the metrics file, where
/// asked; a failure is logged and leaves the exit code to the jobs (see [`JobMetrics`]).
async fn report_metrics(args: &RunArgs, settings: &Settings, reports: &[JobReport]) {
    let gateway = args.metrics_push.as_ref().or(settings.metrics_push_url.as_ref());
    if gateway.is_none() && args.metrics_file.is_none() {
        return;
    }
    let figures: Vec<JobFigures> = reports.iter().map(JobFigures::from).collect();
    let metrics = JobMetrics::of(&args.target, &figures);
    if let Some(gateway) = gateway {
        match metrics.push(gateway).await {
            Ok(()) => tracing::info!(gateway = %gateway, "metrics pushed"),
            Err(e) => tracing::error!(error = %e, "the run's metrics were not pushed"),
        }
    }
    if let Some(path) = &args.metrics_file {
        match metrics.write_file(path) {
            Ok(()) => tracing::info!(path = %path.display(), "metrics written"),
            Err(e) => tracing::error!(error = %e, "the run's metrics were not written"),
        }
    }
}

/// Runs a future unless Ctrl-C or SIGTERM comes first. Sinks commit atomically, so an
/// interrupted job leaves its table as it was.
pub async fn until_interrupted<T>(work: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::select! {
        result = work => Ok(result),
        () = shutdown_signal() => {
            tracing::warn!("interrupted: the job in progress was not committed");
            Err(Error::Interrupted)
        }
    }
}

/// Resolves when Ctrl-C or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The dates of a run from `--date`, or `--from`/`--to`, or every date.
pub fn date_range(args: &RunArgs) -> Result<DateRange> {
    match (args.date, args.from, args.to) {
        (Some(day), _, _) => Ok(DateRange::Days { start: day, end: day }),
        (None, Some(start), Some(end)) if start <= end => Ok(DateRange::Days { start, end }),
        (None, Some(start), Some(end)) => Err(Error::Usage(format!("--from {start} is after --to {end}"))),
        _ => Ok(DateRange::All),
    }
}

fn first_failure(reports: Vec<JobReport>) -> Result<()> {
    reports
        .into_iter()
        .map(|r| r.outcome)
        .find(Result::is_err)
        .unwrap_or(Ok(()))
}

fn print_summary(reports: &[JobReport]) {
    println!(
        "{:<24} {:<9} {:>10} {:>6} {:>11} {:>8}",
        "job", "status", "rows", "files", "quarantined", "seconds"
    );
    for r in reports {
        let status = r.status();
        println!(
            "{:<24} {:<9} {:>10} {:>6} {:>11} {:>8.2}",
            r.job,
            status,
            r.sink.rows,
            r.sink.files_added,
            r.rows_rejected + r.rows_dropped,
            r.elapsed.as_secs_f64()
        );
    }
}

async fn dry_run(settings: &Settings, registry: &Registry, jobs: &[&Job], range: DateRange) -> Result<()> {
    let planned = plan_all(registry).await;
    let lake = Lake::new(settings.lake.clone());
    println!(
        "dry run of {} job(s) for {range} on lake {}: nothing is read or written",
        jobs.len(),
        lake.root()
    );
    let mut problems = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        println!("\n{}. {} [{}] {}", i + 1, job.name, job.layer, job.sql_path);
        for source in &job.sources {
            let file = |path: &str| {
                lake.location()
                    .resolve(path)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| path.to_string())
            };
            let shown = match &source.def {
                SourceDef::MongoExport(d) | SourceDef::JsonLines(d) | SourceDef::Csv(d) => file(&d.path),
                SourceDef::Kafka(d) => format!("kafka topic {}", d.topic),
                SourceDef::Mysql(d) => match (&settings.mysql_url, &d.csv_export) {
                    (Some(url), _) => {
                        format!("{} table {}", crate::config::redact_url(url), d.table)
                    }
                    (None, Some(export)) => format!("{} (CSV export; MYSQL_URL is not set)", file(export)),
                    (None, None) => format!("table {} (MYSQL_URL is not set!)", d.table),
                },
                SourceDef::Mongodb(d) => match (&settings.mongodb, &d.export) {
                    (Some(mongo), _) => format!("{} collection {}.{}", mongo.shown(), mongo.database, d.collection),
                    (None, Some(export)) => format!("{} (mongoexport file; MONGODB_URI is not set)", file(export)),
                    (None, None) => format!("collection {} (MONGODB_URI is not set!)", d.collection),
                },
            };
            println!("   reads   {} <- {} {}", source.name, source.def.kind(), shown);
        }
        let plan = planned.iter().find(|p| p.job == job.name);
        for table in plan.map(|p| p.reads.as_slice()).unwrap_or_default() {
            println!("   reads   {table}");
        }
        let replace = Replace::for_run(job.write_mode, job.sink.partition_by(), range);
        println!("   writes  {} ({replace})", job.sink_display());
        for rule in &job.expectations {
            println!(
                "   expects {} ({}): {}",
                rule.name,
                rule.on_violation.as_str(),
                rule.condition
            );
        }
        match plan {
            Some(p) if !p.problems.is_empty() => problems.extend(p.problems.iter().cloned()),
            Some(p) => {
                if let Some(schema) = &p.schema {
                    let columns: Vec<String> = schema
                        .fields()
                        .iter()
                        .map(|f| format!("{} {}", f.name(), f.data_type()))
                        .collect();
                    println!("   output  {}", columns.join(", "));
                }
            }
            None => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(problems))
    }
}
