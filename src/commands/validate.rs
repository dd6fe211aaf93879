//! `quickchat-etl validate`: parse every pipeline and dashboard file and plan every SQL file
//! and chart query against the declared schemas; report every problem at once, with file names.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;

use crate::catalog::TableName;
use crate::config::Settings;
use crate::config::pipeline::SinkDef;
use crate::error::{ConfigProblem, Error, Result};
use crate::jobs::Registry;
use crate::jobs::planner::plan_all;
use crate::meta::{quarantine, run_log};
use crate::project::Project;
use crate::stream::outputs::plan;

/// Validates the project; exit code 3 with the list of problems when anything is wrong.
pub async fn run(settings: &Settings) -> Result<()> {
    let (registry, mut problems) = Registry::load_reporting(&Project::new(settings.project.clone()), &settings.vars)?;
    let planned = plan_all(&registry).await;
    // The lake's tables as the jobs and pipelines write them: what dashboards are planned over.
    let mut tables: HashMap<TableName, SchemaRef> = HashMap::from([
        (quarantine::table_name(), quarantine::schema()),
        (run_log::table_name(), run_log::schema()),
    ]);
    for job in &planned {
        let table = registry
            .jobs()
            .find(|j| j.name == job.job)
            .and_then(|j| j.sink_table.clone());
        if let (Some(table), Some(schema)) = (table, &job.schema) {
            tables.insert(table, schema.clone());
        }
        match (&job.schema, &job.skipped_because) {
            (_, Some(dep)) => println!("skip  {:<24} (depends on `{dep}`, which has problems)", job.job),
            (Some(schema), None) if job.problems.is_empty() => {
                println!("ok    {:<24} {} columns", job.job, schema.fields().len())
            }
            _ => println!("FAIL  {:<24} {} problem(s)", job.job, job.problems.len()),
        }
        problems.extend(job.problems.iter().cloned());
    }
    let mut streams = 0;
    for pipeline in registry.streams() {
        streams += 1;
        match plan(pipeline).await {
            Ok((queries, _)) => {
                println!("ok    {:<24} streaming: {} outputs", pipeline.name, queries.len());
                let alert_sinks = pipeline.alerts.iter().flat_map(|a| a.sinks.iter());
                for sink in alert_sinks {
                    if let SinkDef::Delta(delta) = sink
                        && let Ok(table) = TableName::parse(&delta.table)
                    {
                        tables.insert(table, crate::stream::alerts::alert_schema());
                    }
                }
                tables.extend(crate::query::mysql_mirror::mirrored_by(&queries));
                for query in &queries {
                    for sink in &query.output.sinks {
                        if let SinkDef::Delta(delta) = sink
                            && let Ok(table) = TableName::parse(&delta.table)
                        {
                            tables.insert(table, query.analysis.schema.clone());
                        }
                    }
                }
            }
            Err(errors) => {
                println!("FAIL  {:<24} {} problem(s)", pipeline.name, errors.len());
                problems.extend(errors.into_iter().flat_map(as_problems));
            }
        }
    }
    let (dashboards, mut dashboard_problems) = crate::dashboards::load(&Project::new(settings.project.clone()))?;
    dashboard_problems.extend(crate::dashboards::check_against(&dashboards, &tables).await);
    for dashboard in &dashboards {
        let failed = dashboard_problems
            .iter()
            .filter(|p| p.file.as_deref() == Some(dashboard.path.as_str()))
            .count();
        match failed {
            0 => println!(
                "ok    {:<24} dashboard: {} charts",
                dashboard.name,
                dashboard.file.charts.len()
            ),
            n => println!("FAIL  {:<24} dashboard: {n} problem(s)", dashboard.name),
        }
    }
    problems.extend(dashboard_problems);
    if problems.is_empty() {
        println!(
            "{} jobs, {streams} streaming pipelines and {} dashboards valid",
            planned.len(),
            dashboards.len()
        );
        Ok(())
    } else {
        Err(Error::Config(problems))
    }
}

/// An error found planning a streaming pipeline, as configuration problems naming their file.
fn as_problems(error: Error) -> Vec<ConfigProblem> {
    match error {
        Error::Config(problems) => problems,
        Error::Sql { file, message, .. } => vec![ConfigProblem::in_file(file, message)],
        other => vec![ConfigProblem::general(other.to_string())],
    }
}
