//! `quickchat-etl demo`: generate the sample data set into the lake's landing folder, run the
//! full pipeline, and summarise the gold tables.

use crate::catalog::Lake;
use crate::cli::DemoArgs;
use crate::config::Settings;
use crate::error::Result;
use crate::generate;
use crate::jobs::graph::{FULL_PIPELINE, plan_target};
use crate::jobs::runner::{RunContext, run_jobs};
use crate::progress::Progress;
use crate::query::DateRange;
use crate::repl::exec::{execute_text, lake_session};

const SUMMARY_SQL: &str = include_str!("demo_summary.sql");

/// Runs the demo end to end.
pub async fn run(settings: &Settings, args: DemoArgs, progress: &Progress) -> Result<()> {
    let lake = Lake::new(settings.lake.clone());
    let landing = lake.location().resolve_folder(&landing_path(settings))?;
    tracing::info!(landing = %landing, seed = args.data.seed, users = args.data.users, days = args.data.days, "generating sample data");
    let counts = generate::write_to_url(&lake, &landing, &args.data.to_spec()).await?;
    tracing::info!(%counts, "sample data written");

    let registry = super::load_registry(settings)?;
    let jobs = plan_target(&registry, FULL_PIPELINE, false)?;
    // The demo has no MySQL: bronze-users reads the CSV export instead.
    let cx = RunContext {
        lake: &lake,
        registry: &registry,
        mysql_url: None,
        mongodb: None,
        progress,
        observer: None,
    };
    let reports = super::run::until_interrupted(run_jobs(cx, &jobs, DateRange::All)).await?;
    if let Some(error) = reports.into_iter().find_map(|r| r.outcome.err()) {
        return Err(error);
    }

    let ctx = lake_session(&lake).await?;
    println!("\nquickchat-etl demo: {} jobs ran into {}\n", jobs.len(), lake.root());
    let mut out = std::io::stdout().lock();
    execute_text(
        &ctx,
        SUMMARY_SQL,
        "demo summary",
        crate::cli::OutputFormat::Table,
        &mut out,
    )
    .await?;
    println!(
        "Try next:\n  quickchat-etl sql --lake {lake}            # explore bronze.*, silver.*, gold.*, meta.*\n  \
         quickchat-etl run gold-all --date {last} --lake {lake}   # rerun one day (idempotent)\n  \
         quickchat-etl list                               # every job, its sources and sink\n  \
         quickchat-etl run clickstream-analytics --from-generator --duration 30s --lake {lake}   # streaming, no broker\n  \
         quickchat-etl serve --lake {lake}          # dashboards over these tables: http://127.0.0.1:8501/",
        lake = settings.vars.get("DATA_LAKE_PATH").unwrap_or("./lake"),
        last = args.data.start_date + chrono::Days::new(u64::from(args.data.days.saturating_sub(1))),
    );
    Ok(())
}

/// Where pipelines read landing files from: `LANDING_PATH`, else `landing` under the lake.
fn landing_path(settings: &Settings) -> String {
    settings.vars.non_empty("LANDING_PATH").unwrap_or("landing").to_string()
}
