//! SQL tests as data: every `tests/slt/*.slt` file runs in its own session holding an empty
//! table for every source and lake table, with the exact schemas the pipelines declare or
//! produce. Files fill them with `INSERT`, run a job's real SQL and expectations with the one
//! extension statement `RUN JOB <job> [FOR <day> | FROM <day> TO <day>]`, and check the rows it
//! would write (registered as its sink table) and `last_run_violations(rule, on_violation,
//! violations)`.

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
use quickchat_etl::jobs::Registry;
use quickchat_etl::jobs::planner::plan_all;
use quickchat_etl::jobs::runner::run_in_memory;
use quickchat_etl::query::{DateRange, RunParams, new_session};
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

/// A session with every table of the project, empty, plus `RUN JOB`.
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
        Self { ctx, registry }
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
        if let Some(table) = &job.sink_table {
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
