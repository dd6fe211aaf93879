//! The outputs of a streaming pipeline as a whole: their queries planned together (each
//! output's SQL, its sinks, then the alert rules), and run over each micro-batch side by side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::alerts::Alerts;
use super::micro_batch::{Emitted, Finals, MicroBatch, PlannedQuery};
use super::operator::Query;
use crate::config::pipeline::{SinkDef, WriteMode};
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::{Error, Result};
use crate::metrics::RunReport;
use crate::query::analysis::{QueryKind, analyse};

/// Runs every query over an epoch: per output, what it emitted, in file order. With
/// `only_needed` (no sinks), stateless outputs no other output reads are skipped: their rows
/// would go nowhere.
///
/// Outputs that do not read one another run at the same time, each on its own task: most
/// plans over one micro-batch are single-partition, so this is what keeps both cores busy.
/// An output reading an earlier one waits for it (it sees its final rows of the epoch).
pub async fn run_outputs(
    queries: &mut Vec<Query>,
    pipeline: &Arc<StreamPipeline>,
    input: &Arc<MicroBatch>,
    only_needed: bool,
    report: &mut RunReport,
) -> Result<Vec<Emitted>> {
    let read: HashSet<String> = queries.iter().flat_map(|q| q.analysis.reads.iter().cloned()).collect();
    let mut finals: Finals = HashMap::new();
    let mut emitted = Vec::with_capacity(queries.len());
    let mut waiting = std::mem::take(queries).into_iter().peekable();
    let mut failure = None;
    while waiting.peek().is_some() {
        let mut wave: Vec<Query> = Vec::new();
        while let Some(query) = waiting.next_if(|q| {
            !wave
                .iter()
                .any(|earlier| q.analysis.reads.contains(&earlier.output.name))
        }) {
            wave.push(query);
        }
        let finals_so_far = Arc::new(finals.clone());
        let runs: Vec<QueryRun> = wave
            .into_iter()
            .map(|mut query| {
                if only_needed && query.analysis.kind == QueryKind::Stateless && !read.contains(&query.output.name) {
                    return QueryRun::Skipped(Box::new(query));
                }
                let (pipeline, input, finals) = (pipeline.clone(), input.clone(), finals_so_far.clone());
                QueryRun::Task(tokio::spawn(async move {
                    let stage = Instant::now();
                    let out = query.run(&pipeline, &input, &finals).await;
                    (query, out, stage.elapsed())
                }))
            })
            .collect();
        for run in runs {
            let (query, out) = match run {
                QueryRun::Skipped(query) => (*query, Ok(Emitted::default())),
                QueryRun::Task(task) => {
                    let (query, out, elapsed) = task
                        .await
                        .map_err(|e| Error::Internal(format!("a query task failed: {e}")))?;
                    *report
                        .stage_times
                        .entry(format!("query {}", query.output.name))
                        .or_default() += elapsed;
                    (query, out)
                }
            };
            let schema = query.analysis.schema.clone();
            let conformed = out.and_then(|out| {
                Ok(Emitted {
                    append: conform(&schema, out.append)?,
                    update: conform(&schema, out.update)?,
                })
            });
            match conformed {
                Ok(out) => {
                    finals.insert(query.output.name.clone(), (schema, out.append.clone()));
                    emitted.push(out);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
            queries.push(query);
        }
        if failure.is_some() {
            break;
        }
    }
    queries.extend(waiting);
    match failure {
        Some(e) => Err(e),
        None => Ok(emitted),
    }
}

/// One output's query in an epoch: running on its own task, or skipped.
enum QueryRun {
    Task(tokio::task::JoinHandle<(Query, Result<Emitted>, Duration)>),
    Skipped(Box<Query>),
}

/// Rows with the output's declared schema (names and nullability as analysed).
fn conform(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .filter(|b| b.num_rows() > 0)
        .map(|batch| {
            if batch.schema() == *schema {
                return Ok(batch);
            }
            let columns = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| {
                    if column.data_type() == field.data_type() {
                        Ok(column.clone())
                    } else {
                        arrow::compute::cast(column, field.data_type())
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::compute("an output's rows", e))?;
            let relaxed = Arc::new(arrow::datatypes::Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            ));
            RecordBatch::try_new(schema.clone(), columns.clone())
                .or_else(|_| RecordBatch::try_new(relaxed, columns))
                .map_err(|e| Error::compute("conforming an output's rows to its schema", e))
        })
        .collect()
}

/// Analyses every output's SQL in file order and checks its sinks, then the alert rules; every
/// problem found is returned (an output whose SQL fails is left out of the later ones' tables).
pub async fn plan(pipeline: &StreamPipeline) -> std::result::Result<(Vec<Query>, Alerts), Vec<Error>> {
    let mut queries = Vec::new();
    let mut problems = Vec::new();
    let mut schemas: HashMap<String, SchemaRef> = HashMap::new();
    for output in &pipeline.outputs {
        let analysis = match analyse(pipeline, output, &schemas).await {
            Ok(analysis) => analysis,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if let Err(e) = check_sinks(pipeline, &output.name, &analysis.kind, &output.sinks) {
            problems.push(e);
        }
        let planned = match PlannedQuery::new(pipeline, output, &analysis, &schemas).await {
            Ok(planned) => planned,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        schemas.insert(output.name.clone(), analysis.schema.clone());
        match Query::new(pipeline, output.clone(), analysis, planned) {
            Ok(query) => queries.push(query),
            Err(e) => problems.push(e),
        }
    }
    match Alerts::new(pipeline, &schemas) {
        Ok(alerts) if problems.is_empty() => Ok((queries, alerts)),
        Ok(_) => Err(problems),
        Err(e) => {
            problems.push(e);
            Err(problems)
        }
    }
}

/// Checks an output's sinks against what its query is.
fn check_sinks(pipeline: &StreamPipeline, output: &str, kind: &QueryKind, sinks: &[SinkDef]) -> Result<()> {
    for sink in sinks {
        let problem = |message: String| {
            Err(Error::config_in(
                &pipeline.pipeline_path,
                format!("outputs.{output}: sink {}: {message}", sink.display()),
            ))
        };
        if *kind == QueryKind::Global && sink.mode() == WriteMode::Append {
            return problem(
                "the query aggregates without a window, so its rows never become final: use mode = \"update\"".into(),
            );
        }
        if let SinkDef::Delta(delta) = sink
            && delta.mode == Some(WriteMode::Update)
            && delta.key.is_empty()
            && *kind != QueryKind::Global
        {
            return problem(
                "update mode needs `key` (the columns to merge on); only a one-row aggregate may leave it out".into(),
            );
        }
    }
    Ok(())
}
