//! The job dependency graph: groups (`bronze-all`, ..., `full-pipeline`), `--upstream`
//! expansion and dependency order.

use std::collections::{BTreeSet, HashMap};

use crate::config::job::Job;
use crate::error::{Error, Result};
use crate::jobs::Registry;

/// The group that runs every job.
pub const FULL_PIPELINE: &str = "full-pipeline";

/// The group names the registry offers: `<layer>-all` for each layer with jobs, and
/// `full-pipeline`.
pub fn group_names(registry: &Registry) -> Vec<String> {
    let layers: BTreeSet<&str> = registry.jobs().map(|j| j.layer.as_str()).collect();
    let mut names: Vec<String> = layers.into_iter().map(|l| format!("{l}-all")).collect();
    names.push(FULL_PIPELINE.to_string());
    names
}

/// The jobs to run for a target (a job or a group), in dependency order. With `upstream`, every
/// job the target depends on, transitively, is included and runs first.
pub fn plan_target<'r>(registry: &'r Registry, target: &str, upstream: bool) -> Result<Vec<&'r Job>> {
    let mut selected: BTreeSet<&str> = if target == FULL_PIPELINE {
        registry.jobs().map(|j| j.name.as_str()).collect()
    } else if let Some(layer) = target.strip_suffix("-all") {
        registry
            .jobs()
            .filter(|j| j.layer == layer)
            .map(|j| j.name.as_str())
            .collect()
    } else if let Some(job) = registry.get(target) {
        BTreeSet::from([job.name.as_str()])
    } else {
        BTreeSet::new()
    };
    if selected.is_empty() {
        let mut known: Vec<String> = registry.jobs().map(|j| j.name.clone()).collect();
        known.extend(group_names(registry));
        return Err(Error::Usage(format!(
            "unknown job or group `{target}`{}; `quickchat-etl list` shows the jobs, groups are {}",
            super::suggestion(target, known.iter()),
            group_names(registry).join(", ")
        )));
    }
    if upstream {
        let mut stack: Vec<&str> = selected.iter().copied().collect();
        while let Some(name) = stack.pop() {
            for dep in &registry.get(name).expect("selected jobs exist").depends_on {
                if selected.insert(dep.as_str()) {
                    stack.push(dep.as_str());
                }
            }
        }
    }
    Ok(topological_order(registry, &selected))
}

/// Orders the selected jobs so each comes after the selected jobs it depends on; ties are
/// broken by layer order (bronze, silver, gold, others) and then by name, so runs are
/// repeatable.
fn topological_order<'r>(registry: &'r Registry, selected: &BTreeSet<&str>) -> Vec<&'r Job> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(selected.len());
    let mut candidates: Vec<&Job> = selected.iter().filter_map(|n| registry.get(n)).collect();
    candidates.sort_by_key(|j| (layer_rank(&j.layer), j.name.clone()));
    while order.len() < candidates.len() {
        let next = candidates
            .iter()
            .find(|job| {
                !done.contains(job.name.as_str())
                    && job
                        .depends_on
                        .iter()
                        .all(|d| done.contains(d.as_str()) || !selected.contains(d.as_str()))
            })
            .copied();
        match next {
            Some(job) => {
                done.insert(job.name.as_str());
                order.push(job);
            }
            // Cycles are rejected when the registry loads; stop rather than spin.
            None => break,
        }
    }
    order
}

fn layer_rank(layer: &str) -> u8 {
    match layer {
        "bronze" => 0,
        "silver" => 1,
        "gold" => 2,
        _ => 3,
    }
}

/// A dependency cycle, as the list of job names around it, if there is one.
pub fn find_cycle(registry: &Registry) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'r>(
        registry: &'r Registry,
        name: &'r str,
        marks: &mut HashMap<&'r str, Mark>,
        path: &mut Vec<&'r str>,
    ) -> Option<Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(name, Mark::Visiting);
        path.push(name);
        if let Some(job) = registry.get(name) {
            for dep in &job.depends_on {
                if let Some(cycle) = visit(registry, dep, marks, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for job in registry.jobs() {
        if let Some(cycle) = visit(registry, &job.name, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::pipeline::{ParquetSinkDef, SinkDef, WriteMode};

    fn job(name: &str, layer: &str, deps: &[&str]) -> Job {
        Job {
            name: name.to_string(),
            layer: layer.to_string(),
            description: String::new(),
            pipeline_path: format!("pipelines/{name}.toml"),
            sql_path: String::new(),
            sql: String::new(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            sources: vec![],
            sink: SinkDef::Parquet(ParquetSinkDef {
                path: name.to_string(),
                partition_by: vec![],
                mode: Some(WriteMode::Overwrite),
            }),
            write_mode: WriteMode::Overwrite,
            sink_table: None,
            expectations: vec![],
        }
    }

    fn registry() -> Registry {
        Registry::from_jobs([
            job("gold-a", "gold", &["silver-b", "silver-a"]),
            job("silver-a", "silver", &["bronze-a"]),
            job("silver-b", "silver", &["silver-a", "bronze-b"]),
            job("bronze-a", "bronze", &[]),
            job("bronze-b", "bronze", &[]),
        ])
        .unwrap()
    }

    fn names(jobs: Vec<&Job>) -> Vec<&str> {
        jobs.into_iter().map(|j| j.name.as_str()).collect()
    }

    #[test]
    fn full_pipeline_runs_every_job_after_its_dependencies() {
        let r = registry();
        let order = names(plan_target(&r, FULL_PIPELINE, false).unwrap());
        assert_eq!(order, ["bronze-a", "bronze-b", "silver-a", "silver-b", "gold-a"]);
    }

    #[test]
    fn upstream_adds_transitive_dependencies_only_when_asked() {
        let r = registry();
        assert_eq!(names(plan_target(&r, "silver-b", false).unwrap()), ["silver-b"]);
        assert_eq!(
            names(plan_target(&r, "silver-b", true).unwrap()),
            ["bronze-a", "bronze-b", "silver-a", "silver-b"]
        );
        assert_eq!(
            names(plan_target(&r, "silver-all", false).unwrap()),
            ["silver-a", "silver-b"]
        );
    }

    #[test]
    fn unknown_targets_are_usage_errors_with_a_suggestion() {
        let r = registry();
        let err = plan_target(&r, "silver-c", false).unwrap_err().to_string();
        assert!(err.contains("unknown job or group `silver-c`"), "{err}");
        assert!(err.contains("did you mean"), "{err}");
    }

    #[test]
    fn cycles_are_found() {
        let err = Registry::from_jobs([job("a", "x", &["b"]), job("b", "x", &["a"])]).unwrap_err();
        assert!(err.to_string().contains("dependency cycle"), "{err}");
    }
}
