//! `quickchat-etl validate`: parse every pipeline file and plan every SQL file against the
//! declared schemas; report every problem at once, with file names.

use crate::config::Settings;
use crate::error::{ConfigProblem, Error, Result};
use crate::jobs::Registry;
use crate::jobs::planner::plan_all;
use crate::project::Project;
use crate::stream::outputs::plan;

/// Validates the project; exit code 3 with the list of problems when anything is wrong.
pub async fn run(settings: &Settings) -> Result<()> {
    let (registry, mut problems) = Registry::load_reporting(&Project::new(settings.project.clone()), &settings.vars)?;
    let planned = plan_all(&registry).await;
    for job in &planned {
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
            Ok((queries, _)) => println!("ok    {:<24} streaming: {} outputs", pipeline.name, queries.len()),
            Err(errors) => {
                println!("FAIL  {:<24} {} problem(s)", pipeline.name, errors.len());
                problems.extend(errors.into_iter().flat_map(as_problems));
            }
        }
    }
    if problems.is_empty() {
        println!("{} jobs and {streams} streaming pipelines valid", planned.len());
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
