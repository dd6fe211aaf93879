//! `quickchat-etl serve`: dashboards over the lake, the Streamlit/Kibana replacement.
//! Dashboards are data — [`file`], the `dashboards/<name>.toml` format; [`charts`] runs a
//! chart's query read-only; [`server`] serves the page (`web/dashboards/`) and the charts' rows
//! as JSON. `validate` plans every chart against the lake tables' declared schemas
//! ([`check_against`]).

pub mod charts;
pub mod file;
pub mod server;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;

use crate::catalog::{TableName, layer_schema};
use crate::error::{ConfigProblem, Result};
use crate::project::Project;
use charts::ChartParams;
use file::Dashboard;

/// Every dashboard file of the project that parses, and the problems of those that do not.
pub fn load(project: &Project) -> Result<(Vec<Dashboard>, Vec<ConfigProblem>)> {
    let mut dashboards = Vec::new();
    let mut problems = Vec::new();
    for file in project.dashboard_files()? {
        match Dashboard::parse(&file.name, &file.path, &file.text) {
            Ok(dashboard) => dashboards.push(dashboard),
            Err(mut found) => problems.append(&mut found),
        }
    }
    Ok((dashboards, problems))
}

/// Plans every chart of `dashboards` over empty tables of the given schemas (what the jobs and
/// streaming pipelines write): a query that does not plan, or lacks a column its chart draws,
/// is a problem naming the dashboard file and the chart.
pub async fn check_against(dashboards: &[Dashboard], tables: &HashMap<TableName, SchemaRef>) -> Vec<ConfigProblem> {
    let ctx = crate::query::new_session();
    for (table, schema) in tables {
        let empty = MemTable::try_new(schema.clone(), vec![vec![]]).expect("empty tables are valid");
        layer_schema(&ctx, &table.layer)
            .register_table(table.table.clone(), Arc::new(empty))
            .expect("fresh schema");
    }
    let params = ChartParams {
        from: None,
        to: None,
        top: 1,
    };
    let mut problems = Vec::new();
    for dashboard in dashboards {
        for chart in &dashboard.file.charts {
            if let Err(message) = charts::plan(&ctx, chart, &params).await {
                problems.push(ConfigProblem::in_file(
                    &dashboard.path,
                    format!("chart `{}` does not plan: {message}", chart.name),
                ));
            }
        }
    }
    problems
}
