//! SQL tests as data: every `tests/slt/*.slt` file runs in its own session holding an empty
//! table for every source and lake table, with the exact schemas the pipelines declare or
//! produce. Files fill them with `INSERT` and run the project's real SQL with two extension
//! statements:
//!
//! - `RUN JOB <job> [FOR <day> | FROM <day> TO <day>]`: a batch job's SQL and expectations; the
//!   rows it would write are registered as its sink table (a Parquet export's as
//!   `<layer>.<folder>`), and `last_run_violations(rule,
//!   on_violation, violations)` holds what its expectations found;
//! - `RUN OUTPUT <pipeline> <output>`: a streaming pipeline's outputs over the rows of its source
//!   tables as one micro-batch that ends the input (every window closes, every join completes);
//!   the output's final rows (for an aggregate without a window: its groups after the batch) are
//!   registered as a table named after the output. The Kafka columns of a source row are filled
//!   in: its topic, partition 0, its position as offset.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use quickchat_etl::catalog::{TableName, layer_schema};
use quickchat_etl::config::pipeline::SinkDef;
use quickchat_etl::config::stream_pipeline::StreamSource;
use quickchat_etl::jobs::Registry;
use quickchat_etl::jobs::planner::plan_all;
use quickchat_etl::jobs::runner::run_in_memory;
use quickchat_etl::metrics::RunReport;
use quickchat_etl::query::analysis::QueryKind;
use quickchat_etl::query::{DateRange, RunParams, new_session};
use quickchat_etl::stream::micro_batch::MicroBatch;
use quickchat_etl::stream::outputs::{plan, run_outputs};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::support::{registry, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_files_behave_as_their_slt_tests_say() {
    let registry = Arc::new(registry());
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for file in &files {
        let registry = registry.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let registry = registry.clone();
            async move { Ok(JobDb::new(registry).await) }
        });
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// Every batch job and every streaming output is run by some `.slt` file.
#[test]
fn every_sql_file_has_an_slt_test() {
    let registry = registry();
    let slt: String = std::fs::read_dir(repo_root().join("tests/slt"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let mut untested: Vec<String> = registry
        .jobs()
        .filter(|job| {
            !slt.contains(&format!("RUN JOB {}\n", job.name)) && !slt.contains(&format!("RUN JOB {} ", job.name))
        })
        .map(|job| job.sql_path.clone())
        .collect();
    for pipeline in registry.streams() {
        for output in &pipeline.outputs {
            if !slt.contains(&format!("RUN OUTPUT {} {}\n", pipeline.name, output.name)) {
                untested.push(output.sql_path.clone());
            }
        }
    }
    assert!(untested.is_empty(), "SQL files without an .slt test: {untested:?}");
}

/// A session with every table of the project, empty, plus `RUN JOB` and `RUN OUTPUT`.
struct JobDb {
    ctx: SessionContext,
    registry: Arc<Registry>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DbError(String);

impl JobDb {
    async fn new(registry: Arc<Registry>) -> Self {
        let ctx = new_session();
        for planned in plan_all(&registry).await {
            let job = registry.get(&planned.job).unwrap();
            let (Some(schema), Some(table)) = (planned.schema, &job.sink_table) else {
                continue;
            };
            register(&ctx, table, vec![], nullable(&schema));
        }
        for job in registry.jobs() {
            for source in &job.sources {
                let empty = MemTable::try_new(nullable(&source.schema), vec![vec![]]).unwrap();
                ctx.register_table(source.name.as_str(), Arc::new(empty)).unwrap();
            }
        }
        for pipeline in registry.streams() {
            for source in &pipeline.sources {
                let empty = MemTable::try_new(nullable(&source.schema), vec![vec![]]).unwrap();
                ctx.register_table(source.name.as_str(), Arc::new(empty)).unwrap();
            }
        }
        Self { ctx, registry }
    }

    async fn run_output(&mut self, statement: &str) -> Result<(), DbError> {
        let error = |e: &dyn std::fmt::Display| DbError(e.to_string());
        let [_, _, pipeline, output] = statement.split_whitespace().collect::<Vec<_>>()[..] else {
            return Err(DbError(format!(
                "expected RUN OUTPUT <pipeline> <output>, got `{statement}`"
            )));
        };
        let pipeline = self
            .registry
            .stream(pipeline)
            .ok_or_else(|| DbError(format!("unknown streaming pipeline {pipeline}")))?
            .clone();
        let mut batch = MicroBatch {
            end_of_input: true,
            ..Default::default()
        };
        for source in &pipeline.sources {
            let inserted = self
                .ctx
                .table(source.name.as_str())
                .await
                .map_err(|e| error(&e))?
                .collect()
                .await
                .map_err(|e| error(&e))?;
            let rows = source_rows(source, &inserted).map_err(|e| error(&e))?;
            batch.on_time.insert(source.name.clone(), rows.clone());
            batch.all.insert(source.name.clone(), rows.clone());
            batch.buffers.insert(source.name.clone(), rows);
        }
        let (mut queries, _) = plan(&pipeline)
            .await
            .map_err(|problems| DbError(format!("{problems:?}")))?;
        let emitted = run_outputs(
            &mut queries,
            &Arc::new(pipeline.clone()),
            &Arc::new(batch),
            false,
            &mut RunReport::default(),
        )
        .await
        .map_err(|e| error(&e))?;
        let (query, emitted) = queries
            .iter()
            .zip(emitted)
            .find(|(q, _)| q.output.name == output)
            .ok_or_else(|| DbError(format!("no output {output} in {}", pipeline.name)))?;
        let rows = match query.analysis.kind {
            QueryKind::Global => emitted.update,
            _ => emitted.append,
        };
        let schema = rows.first().map_or(query.analysis.schema.clone(), |b| b.schema());
        let _ = self.ctx.deregister_table(output);
        let table = MemTable::try_new(schema, vec![rows]).map_err(|e| error(&e))?;
        self.ctx
            .register_table(output, Arc::new(table))
            .map_err(|e| error(&e))?;
        Ok(())
    }

    async fn run_job(&mut self, statement: &str) -> Result<(), DbError> {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let range = match words.as_slice() {
            [_, _, _] => DateRange::All,
            [_, _, _, "FOR", day] => DateRange::Days {
                start: parse_day(day)?,
                end: parse_day(day)?,
            },
            [_, _, _, "FROM", start, "TO", end] => DateRange::Days {
                start: parse_day(start)?,
                end: parse_day(end)?,
            },
            _ => {
                return Err(DbError(format!(
                    "expected RUN JOB <job> [FOR <day> | FROM <day> TO <day>], got `{statement}`"
                )));
            }
        };
        let job = self
            .registry
            .get(words[2])
            .ok_or_else(|| DbError(format!("unknown job {}", words[2])))?;
        let (rows, report) = run_in_memory(&self.ctx, job, &RunParams::new(range), &self.registry)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        let parquet_table = match &job.sink {
            SinkDef::Parquet(def) => Some(TableName {
                layer: job.layer.clone(),
                table: def.path.rsplit('/').next().unwrap_or_default().to_string(),
            }),
            _ => None,
        };
        if let Some(table) = job.sink_table.as_ref().or(parquet_table.as_ref()) {
            let schema = match rows.first() {
                Some(batch) => batch.schema(),
                None => self
                    .ctx
                    .table_provider(table.to_string())
                    .await
                    .map_err(|e| DbError(e.to_string()))?
                    .schema(),
            };
            register(&self.ctx, table, rows, schema);
        }
        let violations = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("rule", DataType::Utf8, false),
                Field::new("on_violation", DataType::Utf8, false),
                Field::new("violations", DataType::Int64, false),
            ])),
            vec![
                Arc::new(arrow::array::StringArray::from_iter_values(
                    job.expectations.iter().map(|e| e.name.clone()),
                )),
                Arc::new(arrow::array::StringArray::from_iter_values(
                    job.expectations.iter().map(|e| e.on_violation.as_str()),
                )),
                Arc::new(arrow::array::Int64Array::from_iter_values(
                    report.violation_counts().iter().map(|c| *c as i64),
                )),
            ],
        )
        .unwrap();
        let _ = self.ctx.deregister_table("last_run_violations");
        let table = MemTable::try_new(violations.schema(), vec![vec![violations]]).unwrap();
        self.ctx.register_table("last_run_violations", Arc::new(table)).unwrap();
        Ok(())
    }
}

fn parse_day(text: &str) -> Result<NaiveDate, DbError> {
    text.parse()
        .map_err(|_| DbError(format!("`{text}` is not a YYYY-MM-DD day")))
}

/// The rows inserted into a stream source's table, as the source's batch: Kafka columns filled
/// in (the topic, partition 0, the row's position as offset), every column of its declared type.
fn source_rows(source: &StreamSource, inserted: &[RecordBatch]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let all = arrow::compute::concat_batches(&nullable(&source.schema), inserted)?;
    let rows = all.num_rows();
    let columns = source
        .schema
        .fields()
        .iter()
        .map(|field| -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
            Ok(match field.name().as_str() {
                "_kafka_topic" => Arc::new(arrow::array::StringArray::from(vec![source.topic.as_str(); rows])),
                "_kafka_partition" => Arc::new(arrow::array::Int32Array::from(vec![0; rows])),
                "_kafka_offset" => Arc::new(arrow::array::Int64Array::from_iter_values(0..rows as i64)),
                name => arrow::compute::cast(all.column_by_name(name).expect("declared column"), field.data_type())?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(source.schema.clone(), columns)
}

/// Tests insert only the columns they care about; the rest stay NULL.
fn nullable(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn register(ctx: &SessionContext, table: &TableName, rows: Vec<RecordBatch>, schema: arrow::datatypes::SchemaRef) {
    let provider = MemTable::try_new(schema, vec![rows]).unwrap();
    let layer = layer_schema(ctx, &table.layer);
    let _ = layer.deregister_table(&table.table);
    layer.register_table(table.table.clone(), Arc::new(provider)).unwrap();
}

#[async_trait]
impl AsyncDB for JobDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        if sql.trim_start().to_ascii_uppercase().starts_with("RUN JOB ") {
            self.run_job(sql.trim()).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if sql.trim_start().to_ascii_uppercase().starts_with("RUN OUTPUT ") {
            self.run_output(sql.trim()).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let df = self.ctx.sql(sql).await.map_err(|e| DbError(e.to_string()))?;
        let is_statement = matches!(
            df.logical_plan(),
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)
        );
        let batches = df.collect().await.map_err(|e| DbError(e.to_string()))?;
        if is_statement {
            return Ok(DBOutput::StatementComplete(0));
        }
        let columns = batches.first().map_or(0, |b| b.num_columns());
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows: format_rows(&batches),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "quickchat-etl"
    }
}

/// Values as sqllogictest expects them: NULL, `(empty)` for empty strings.
fn format_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(
                        |(column, formatter)| match (column.is_null(row), formatter.value(row).to_string()) {
                            (true, _) => "NULL".to_string(),
                            (false, text) if text.is_empty() => "(empty)".to_string(),
                            (false, text) => text,
                        },
                    )
                    .collect(),
            );
        }
    }
    rows
}
