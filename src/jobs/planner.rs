//! Planning every job without data, against declared schemas: what `validate` and
//! `run --dry-run` do. External sources become empty tables of their declared columns; each
//! job's planned output becomes the (empty) lake table later jobs read, so the whole graph is
//! checked on a machine with no lake at all.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;

use crate::catalog::TableName;
use crate::catalog::layer_schema;
use crate::config::job::Job;
use crate::config::pipeline::WriteMode;
use crate::error::ConfigProblem;
use crate::jobs::Registry;
use crate::jobs::graph::{FULL_PIPELINE, plan_target};
use crate::jobs::runner::build_rules;
use crate::meta::{quarantine, run_log};
use crate::query::{DateRange, RunParams, new_session, plan_job};

/// The result of planning one job.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The job.
    pub job: String,
    /// Its output schema, when it planned.
    pub schema: Option<SchemaRef>,
    /// Lake tables its SQL reads.
    pub reads: Vec<TableName>,
    /// What is wrong with it.
    pub problems: Vec<ConfigProblem>,
    /// Set when it was not planned because a job it depends on has problems.
    pub skipped_because: Option<String>,
}

/// Plans every job of the registry in dependency order.
pub async fn plan_all(registry: &Registry) -> Vec<PlannedJob> {
    let jobs = plan_target(registry, FULL_PIPELINE, false).expect("the full pipeline always resolves");
    let mut outputs: HashMap<TableName, SchemaRef> = HashMap::from([
        (quarantine::table_name(), quarantine::schema()),
        (run_log::table_name(), run_log::schema()),
    ]);
    let mut planned: Vec<PlannedJob> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let broken_dep = job.depends_on.iter().find(|dep| {
            planned
                .iter()
                .any(|p| &p.job == *dep && (!p.problems.is_empty() || p.skipped_because.is_some()))
        });
        if let Some(dep) = broken_dep {
            planned.push(PlannedJob {
                job: job.name.clone(),
                schema: None,
                reads: vec![],
                problems: vec![],
                skipped_because: Some(dep.clone()),
            });
            continue;
        }
        let result = plan_one(registry, job, &outputs).await;
        if let (Some(schema), Some(table)) = (&result.schema, &job.sink_table) {
            outputs.insert(table.clone(), schema.clone());
        }
        planned.push(result);
    }
    planned
}

async fn plan_one(registry: &Registry, job: &Job, outputs: &HashMap<TableName, SchemaRef>) -> PlannedJob {
    let mut result = PlannedJob {
        job: job.name.clone(),
        schema: None,
        reads: vec![],
        problems: vec![],
        skipped_because: None,
    };
    let problem = |message: String| ConfigProblem::in_file(&job.pipeline_path, message);
    let ctx = new_session();
    for (table, schema) in outputs {
        let empty = MemTable::try_new(schema.clone(), vec![vec![]]).expect("empty tables are valid");
        layer_schema(&ctx, &table.layer)
            .register_table(table.table.clone(), Arc::new(empty))
            .expect("fresh schema");
    }
    for source in &job.sources {
        let empty = MemTable::try_new(source.schema.clone(), vec![vec![]]).expect("empty tables are valid");
        ctx.register_table(source.name.as_str(), Arc::new(empty))
            .expect("fresh session");
    }
    let today = chrono::Utc::now().date_naive();
    let params = RunParams::new(DateRange::Days {
        start: today,
        end: today,
    });
    let df = match plan_job(&ctx, job, &params, registry).await {
        Ok(df) => df,
        Err(e) => {
            result.problems.push(ConfigProblem::in_file(
                &job.sql_path,
                format!("does not plan: {}", sql_message(&e)),
            ));
            return result;
        }
    };
    if let Err(crate::error::Error::Config(mut problems)) = build_rules(job, &df) {
        result.problems.append(&mut problems);
    }
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());

    for (i, column) in job.sink.partition_by().iter().enumerate() {
        match schema.field_with_name(column) {
            Err(_) => result.problems.push(problem(format!(
                "partition column `{column}` is not an output column of {}",
                job.sql_path
            ))),
            Ok(field)
                if i == 0
                    && job.write_mode == WriteMode::ReplacePartitions
                    && field.data_type() != &DataType::Date32 =>
            {
                result.problems.push(problem(format!(
                    "replace_partitions needs `{column}` to be a DATE, but {} makes it {}",
                    job.sql_path,
                    field.data_type()
                )))
            }
            Ok(_) => {}
        }
    }

    result.reads = tables_read(df.logical_plan());
    let upstream = upstream_jobs(registry, job);
    for table in &result.reads {
        match registry.producer_of(table) {
            Some(producer) if upstream.contains(producer.name.as_str()) => {}
            Some(producer) => result.problems.push(problem(format!(
                "{} reads {table}, written by job `{}`: add \"{}\" to depends_on",
                job.sql_path, producer.name, producer.name
            ))),
            None if table.layer == "meta" => {}
            None => result
                .problems
                .push(problem(format!("{} reads {table}, which no job writes", job.sql_path))),
        }
    }
    result.schema = Some(schema);
    result
}

fn sql_message(error: &crate::error::Error) -> String {
    match error {
        crate::error::Error::Sql { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Lake tables (`layer.table` scans) a plan reads.
fn tables_read(plan: &LogicalPlan) -> Vec<TableName> {
    let mut tables = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(schema) = scan.table_name.schema()
            && let Ok(name) = TableName::parse(&format!("{schema}.{}", scan.table_name.table()))
        {
            tables.insert(name);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("visiting a plan does not fail");
    tables.into_iter().collect()
}

/// Names of the jobs a job depends on, transitively.
fn upstream_jobs<'r>(registry: &'r Registry, job: &'r Job) -> BTreeSet<&'r str> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = job.depends_on.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if seen.insert(name)
            && let Some(dep) = registry.get(name)
        {
            stack.extend(dep.depends_on.iter().map(String::as_str));
        }
    }
    seen
}
