//! Jobs: the registry of every pipeline file of the project — parsed, `${VAR}`-expanded,
//! checked and resolved into batch [`Job`]s and [`StreamPipeline`]s, every problem of every
//! file reported at once — the dependency graph between jobs, and the batch runner.

pub mod graph;
pub mod planner;
pub mod runner;

use std::collections::{BTreeMap, HashMap};

use crate::catalog::TableName;
use crate::config::Vars;
use crate::config::job::Job;
use crate::config::pipeline::PipelineFile;
use crate::config::stream::StreamPipelineFile;
use crate::config::stream_pipeline::StreamPipeline;
use crate::config::vars::expand_toml;
use crate::error::{ConfigProblem, Error, Result};
use crate::project::{PipelineText, Project};

/// Every job of the project, by name.
#[derive(Debug, Clone)]
pub struct Registry {
    jobs: BTreeMap<String, Job>,
    streams: BTreeMap<String, StreamPipeline>,
}

impl Registry {
    /// Loads and checks every pipeline file of the project; any problem is an error.
    pub fn load(project: &Project, vars: &Vars) -> Result<Self> {
        let (registry, problems) = Self::load_reporting(project, vars)?;
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(Error::Config(problems))
        }
    }

    /// Loads what can be loaded and lists every problem: the registry holds the jobs whose
    /// files are valid (`validate` goes on to plan those). Fails only when no file is readable.
    pub fn load_reporting(project: &Project, vars: &Vars) -> Result<(Self, Vec<ConfigProblem>)> {
        let files = project.pipeline_files()?;
        if files.is_empty() {
            return Err(Error::config(format!(
                "no pipeline files found in the {}",
                project.describe()
            )));
        }
        let mut problems = Vec::new();
        let mut jobs = BTreeMap::new();
        let mut streams = BTreeMap::new();
        for file in &files {
            match load_pipeline_file(project, vars, file) {
                Ok(Loaded::Job(job)) => {
                    jobs.insert(job.name.clone(), *job);
                }
                Ok(Loaded::Stream(stream)) => {
                    streams.insert(stream.name.clone(), *stream);
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        let mut registry = Registry { jobs, streams };
        let all_files: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        problems.extend(registry.check_references(&all_files));
        // A job depending on a job that did not load cannot be planned either (transitively).
        loop {
            let loaded: Vec<String> = registry.jobs.keys().cloned().collect();
            let before = registry.jobs.len();
            registry
                .jobs
                .retain(|_, job| job.depends_on.iter().all(|d| loaded.contains(d)));
            if registry.jobs.len() == before {
                break;
            }
        }
        Ok((registry, problems))
    }

    /// Builds a registry from jobs already resolved (used by tests and the SQL test runner).
    pub fn from_jobs(jobs: impl IntoIterator<Item = Job>) -> Result<Self> {
        let registry = Registry {
            jobs: jobs.into_iter().map(|j| (j.name.clone(), j)).collect(),
            streams: BTreeMap::new(),
        };
        let names: Vec<String> = registry.jobs.keys().cloned().collect();
        let problems = registry.check_references(&names);
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(Error::Config(problems))
        }
    }

    /// All jobs, sorted by name.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// All streaming pipelines, sorted by name.
    pub fn streams(&self) -> impl Iterator<Item = &StreamPipeline> {
        self.streams.values()
    }

    /// A streaming pipeline by name.
    pub fn stream(&self, name: &str) -> Option<&StreamPipeline> {
        self.streams.get(name)
    }

    /// A job by name.
    pub fn get(&self, name: &str) -> Option<&Job> {
        self.jobs.get(name)
    }

    /// The job whose sink is the given lake table.
    pub fn producer_of(&self, table: &TableName) -> Option<&Job> {
        self.jobs.values().find(|job| job.sink_table.as_ref() == Some(table))
    }

    /// Problems that involve more than one file: unknown dependencies, cycles, two jobs
    /// writing the same table. `all_jobs` names every pipeline file, loaded or not, so a
    /// dependency on a broken file is not reported as unknown.
    fn check_references(&self, all_jobs: &[String]) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut writers: HashMap<TableName, &str> = HashMap::new();
        for job in self.jobs.values() {
            for dep in &job.depends_on {
                if !all_jobs.contains(dep) {
                    problems.push(ConfigProblem::in_file(
                        &job.pipeline_path,
                        format!(
                            "depends_on names unknown job `{dep}`{}",
                            suggestion(dep, all_jobs.iter())
                        ),
                    ));
                }
            }
            if let Some(table) = &job.sink_table
                && let Some(other) = writers.insert(table.clone(), &job.name)
            {
                problems.push(ConfigProblem::in_file(
                    &job.pipeline_path,
                    format!("sink table {table} is also written by job `{other}`"),
                ));
            }
        }
        for stream in self.streams.values() {
            let mut tables = stream.lake_tables();
            tables.sort();
            tables.dedup();
            for table in tables {
                if let Some(other) = writers.insert(table.clone(), &stream.name) {
                    problems.push(ConfigProblem::in_file(
                        &stream.pipeline_path,
                        format!("table {table} is also written by `{other}`"),
                    ));
                }
            }
        }
        if let Some(cycle) = graph::find_cycle(self) {
            problems.push(ConfigProblem::general(format!(
                "dependency cycle: {}",
                cycle.join(" -> ")
            )));
        }
        problems
    }
}

/// " (did you mean `x`?)" when a known name is close to the unknown one.
pub(crate) fn suggestion<'a>(unknown: &str, known: impl Iterator<Item = &'a String>) -> String {
    // An abbreviation (`silver-msgs`) is closest to the name it abbreviates.
    known
        .map(|k| (!is_subsequence(unknown, k), strsim::levenshtein(unknown, k), k))
        .filter(|(_, d, k)| *d <= 3.max(k.chars().count() / 3))
        .min()
        .map(|(_, _, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn is_subsequence(short: &str, long: &str) -> bool {
    let mut rest = long.chars();
    short.chars().all(|c| rest.any(|l| l == c))
}

/// What a pipeline file holds: a batch job or a streaming pipeline (`mode = "streaming"`).
pub enum Loaded {
    Job(Box<Job>),
    Stream(Box<StreamPipeline>),
}

/// Parses, expands and checks one pipeline file against the project (its SQL, descriptor and
/// columns): the one way a pipeline file's text becomes a job or a streaming pipeline.
pub fn load_pipeline_file(project: &Project, vars: &Vars, file: &PipelineText) -> Result<Loaded, Vec<ConfigProblem>> {
    let problem = |message: String| ConfigProblem::in_file(&file.path, message);
    let mut value: toml::Value = toml::from_str(&file.text).map_err(|e| vec![problem(e.to_string())])?;
    let mut expansion = Vec::new();
    expand_toml(&mut value, vars, "", &mut expansion);
    if !expansion.is_empty() {
        return Err(expansion.into_iter().map(problem).collect());
    }
    if value.get("mode").and_then(toml::Value::as_str) == Some("streaming") {
        let def: StreamPipelineFile = value
            .try_into()
            .map_err(|e: toml::de::Error| vec![problem(e.to_string())])?;
        let stream = StreamPipeline::resolve(&file.name, &file.path, def, project)?;
        return Ok(Loaded::Stream(Box::new(stream)));
    }
    let def: PipelineFile = value
        .try_into()
        .map_err(|e: toml::de::Error| vec![problem(e.to_string())])?;
    Job::resolve(&file.name, &file.path, def, project).map(|job| Loaded::Job(Box::new(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_near_names() {
        let known = ["silver-users".to_string(), "gold-daily-metrics".to_string()];
        assert_eq!(
            suggestion("silver-user", known.iter()),
            " (did you mean `silver-users`?)"
        );
        assert_eq!(suggestion("bronze-x", known.iter()), "");
        let known = ["silver-users".to_string(), "silver-messages".to_string()];
        assert_eq!(
            suggestion("silver-msgs", known.iter()),
            " (did you mean `silver-messages`?)"
        );
    }
}
