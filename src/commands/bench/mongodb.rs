//! `bench --only mongodb`: `bronze-messages` reading its collection from the MongoDB server
//! (`MONGODB_URI`), against the same job reading the export file: rows per second and the
//! process's peak memory of each, on a generated data set loaded into a database of the bench's
//! own (dropped at the end). The source reads the collection in chunks, so the peak must not
//! grow with the collection.

use std::time::Instant;

use super::{Row, lake_at, peak_rss_mb, reset_peak_rss};
use crate::cli::BenchArgs;
use crate::config::{MongoSettings, Settings};
use crate::error::{Error, Result};
use crate::generate::mongo_load::load_collection;
use crate::generate::{DataSetSpec, write_to_url};
use crate::jobs::graph::plan_target;
use crate::jobs::runner::{RunContext, run_jobs};
use crate::progress::Progress;
use crate::query::DateRange;

const JOB: &str = "bronze-messages";

pub(super) async fn mongodb(
    settings: &Settings,
    work: &std::path::Path,
    args: &BenchArgs,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let Some(server) = &settings.mongodb else {
        println!("mongodb: skipped (no --mongodb-uri or MONGODB_URI)");
        return Ok(());
    };
    let mongodb = MongoSettings {
        database: format!("quickchat_bench_{}", std::process::id()),
        ..server.clone()
    };
    let lake = lake_at(&work.join("lake-mongodb"))?;
    let spec = DataSetSpec {
        seed: 42,
        users: args.mongodb_users,
        days: args.batch_days,
        start_date: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date"),
    };
    println!(
        "mongodb: {} users x {} days into {} database {} ...",
        spec.users,
        spec.days,
        mongodb.shown(),
        mongodb.database
    );
    let landing = lake.location().resolve_folder("landing")?;
    let counts = write_to_url(&lake, &landing, &spec).await?;
    let export = landing
        .join("mongo/messages.json")
        .map_err(|e| Error::Internal(e.to_string()))?
        .to_file_path()
        .map_err(|()| Error::Internal("the bench lake is a local folder".into()))?;
    let started = Instant::now();
    let contents = std::fs::read(&export).map_err(|e| Error::io(export.display().to_string(), e))?;
    let loaded = load_collection(&mongodb, "messages", &contents).await?;
    drop(contents);
    println!(
        "generated {counts}; loaded {} message documents in {:.1}s",
        loaded.documents,
        started.elapsed().as_secs_f64()
    );

    let registry = super::super::load_registry(settings)?;
    let jobs = plan_target(&registry, JOB, false)?;
    let progress = Progress::hidden();
    let result = async {
        for (from, server) in [("the export file", None), ("MongoDB", Some(&mongodb))] {
            let cx = RunContext {
                lake: &lake,
                registry: &registry,
                mysql_url: None,
                mongodb: server,
                progress: &progress,
                observer: None,
            };
            reset_peak_rss();
            let report = run_jobs(cx, &jobs, DateRange::All).await.remove(0);
            report.outcome?;
            let seconds = report.elapsed.as_secs_f64();
            println!(
                "{JOB} from {from}: {} documents read, {} rows written in {seconds:.1}s ({:.0} rows/s), peak {} MiB",
                report.rows_read,
                report.sink.rows,
                report.rows_read as f64 / seconds.max(1e-9),
                peak_rss_mb().unwrap_or(0)
            );
            rows.push(Row {
                phase: format!("mongodb: {JOB} from {from}"),
                events: report.rows_read,
                seconds,
                latency: None,
                peak_rss_mb: peak_rss_mb(),
                note: format!("{} users x {} days", spec.users, spec.days),
            });
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Ok(client) = crate::mongo::client(&mongodb).await {
        let _ = client.database(&mongodb.database).drop().await;
    }
    result
}
