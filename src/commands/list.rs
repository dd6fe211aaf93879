//! `quickchat-etl list`: every job with its layer, sources, sink, dependencies and SQL file.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::cli::ListArgs;
use crate::config::Settings;
use crate::error::Result;
use crate::jobs::graph::{FULL_PIPELINE, plan_target};
use crate::jobs::planner::plan_all;
use crate::output::write_batches;

/// Prints the job table in dependency order; the lake tables a job reads come from planning
/// its SQL.
pub async fn run(settings: &Settings, args: ListArgs) -> Result<()> {
    let registry = super::load_registry(settings)?;
    let jobs = plan_target(&registry, FULL_PIPELINE, false)?;
    let planned = plan_all(&registry).await;
    let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    let names = ["job", "layer", "sources", "sink", "depends_on", "sql", "description"];
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let sources = |job: &crate::config::job::Job| {
        let external = job.sources.iter().map(|s| format!("{} ({})", s.name, s.def.kind()));
        let read = planned
            .iter()
            .filter(|p| p.job == job.name)
            .flat_map(|p| p.reads.iter().map(ToString::to_string));
        external.chain(read).collect::<Vec<_>>().join(", ")
    };
    let mut rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                j.layer.clone(),
                sources(j),
                j.sink_display(),
                j.depends_on.join(", "),
                j.sql_path.clone(),
                j.description.clone(),
            ]
        })
        .collect();
    // Streaming pipelines: one row per pipeline, its sources' topics and every output's sinks.
    for pipeline in registry.streams() {
        let sources = pipeline
            .sources
            .iter()
            .map(|s| format!("{} (topic {}, {:?})", s.name, s.topic, s.format).to_lowercase())
            .collect::<Vec<_>>()
            .join(", ");
        let sinks = pipeline
            .outputs
            .iter()
            .flat_map(|o| o.sinks.iter().map(|s| s.display()))
            .chain(pipeline.alerts.iter().flat_map(|a| a.sinks.iter().map(|s| s.display())))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = pipeline
            .outputs
            .iter()
            .map(|o| o.sql_path.clone())
            .collect::<Vec<_>>()
            .join(", ");
        rows.push([
            pipeline.name.clone(),
            "streaming".into(),
            sources,
            sinks,
            String::new(),
            sql,
            pipeline.description.clone(),
        ]);
    }
    let columns = (0..names.len())
        .map(|i| column(rows.iter().map(|r| r[i].clone()).collect()))
        .collect();
    let batch = RecordBatch::try_new(schema, columns).expect("columns match the schema");
    write_batches(&mut std::io::stdout().lock(), &[batch], args.format)
}
