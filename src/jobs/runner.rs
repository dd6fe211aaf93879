//! Running batch jobs: sources registered as tables read (and decoded) while the query runs,
//! the job's SQL planned with the run's parameters, expectations applied on the way to the
//! sink, one atomic write, then the quarantine and run log updated. The data path of one job:
//!
//! ```text
//! sources ─▶ decode ─▶ source tables ─▶ job SQL ─▶ ExpectationsExec ─▶ Delta (one commit) / Parquet / MongoDB sink
//!              └─ unreadable records ──────────────────┴─ dropped rows ─▶ meta.quarantine
//!                                                                    └▶ meta.run_log (one row per run)
//! ```

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::simplify_expressions::{ExprSimplifier, SimplifyContext};
use datafusion::prelude::SessionContext;

use crate::catalog::Lake;
use crate::config::job::Job;
use crate::config::pipeline::{OnViolation, SinkDef};
use crate::error::{Error, Result, RuleViolation};
use crate::jobs::Registry;
use crate::meta::quarantine::{self, Entry};
use crate::meta::run_log::{self, RunRecord, RunStatus};
use crate::observe::batch_run::BatchRun;
use crate::progress::Progress;
use crate::query::expectations::{ExpectationsNode, LogicalRule, QUALITY_FAILURE_MARKER, QualityReport};
use crate::query::source_table::{SourceRead, source_table};
use crate::query::{DateRange, RunParams, new_session, plan_job};
use crate::sinks::delta::DeltaSink;
use crate::sinks::mongodb::MongoSink;
use crate::sinks::parquet::ParquetSink;
use crate::sinks::{Replace, SinkMetrics};
use crate::sources::{self, SourceContext};

/// What the runner needs from the process.
#[derive(Clone, Copy)]
pub struct RunContext<'a> {
    /// The lake.
    pub lake: &'a Lake,
    /// All jobs (for hints about which job writes a missing table).
    pub registry: &'a Registry,
    /// The MySQL URL, when configured.
    pub mysql_url: Option<&'a str>,
    /// The configured MongoDB server, if any.
    pub mongodb: Option<&'a crate::config::MongoSettings>,
    /// Where progress is shown.
    pub progress: &'a Progress,
    /// Told of each job as it starts and ends (the run's UI), if anything is.
    pub observer: Option<&'a BatchRun>,
}

/// How one job run ended, with its figures.
#[derive(Debug)]
pub struct JobReport {
    /// The job.
    pub job: String,
    /// The run id.
    pub run_id: String,
    /// `Ok` or the error that ended it.
    pub outcome: Result<()>,
    /// Rows read from external sources.
    pub rows_read: u64,
    /// Source records rejected into the quarantine.
    pub rows_rejected: u64,
    /// Rows kept out of the sink by expectations.
    pub rows_dropped: u64,
    /// Rows kept despite violating `warn` expectations.
    pub rows_warned: u64,
    /// What the sink reported.
    pub sink: SinkMetrics,
    /// Wall time of the whole job.
    pub elapsed: std::time::Duration,
}

impl JobReport {
    /// How the job ended: `ok`, `skipped` (an upstream job failed), `dq-failed` (an
    /// expectation failed) or `failed`.
    pub fn status(&self) -> &'static str {
        match &self.outcome {
            Ok(()) => "ok",
            Err(Error::UpstreamFailed { .. }) => "skipped",
            Err(Error::DataQuality { .. }) => "dq-failed",
            Err(_) => "failed",
        }
    }
}

/// Runs jobs in the given (dependency) order. A failed job's dependents in this run are
/// skipped; independent jobs still run. Returns every report, in order.
pub async fn run_jobs(cx: RunContext<'_>, jobs: &[&Job], range: DateRange) -> Vec<JobReport> {
    let mut reports: Vec<JobReport> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let failed_upstream = job
            .depends_on
            .iter()
            .find(|dep| reports.iter().any(|r| &r.job == *dep && r.outcome.is_err()));
        let report = match failed_upstream {
            Some(upstream) => {
                tracing::warn!(job = %job.name, upstream = %upstream, "skipped: an upstream job failed");
                JobReport::skipped(job, upstream)
            }
            None => run_job(cx, job, RunParams::new(range)).await,
        };
        if let Some(observer) = cx.observer {
            observer.job_finished(&report);
        }
        reports.push(report);
    }
    reports
}

impl JobReport {
    fn skipped(job: &Job, upstream: &str) -> Self {
        Self {
            job: job.name.clone(),
            run_id: String::new(),
            outcome: Err(Error::UpstreamFailed {
                job: job.name.clone(),
                upstream: upstream.to_string(),
            }),
            rows_read: 0,
            rows_rejected: 0,
            rows_dropped: 0,
            rows_warned: 0,
            sink: SinkMetrics::default(),
            elapsed: std::time::Duration::ZERO,
        }
    }
}

/// Runs one job and records it in the run log (and its quarantined records), whatever happens.
pub async fn run_job(cx: RunContext<'_>, job: &Job, params: RunParams) -> JobReport {
    let started = Instant::now();
    tracing::info!(job = %job.name, run_id = %params.run_id, dates = %params.range, sink = %job.sink_display(), "job started");
    let report = Arc::new(QualityReport::default());
    let progress = cx.progress.job(&job.name, report.rows_out.clone());
    if let Some(observer) = cx.observer {
        observer.job_started(&job.name, report.rows_out.clone());
    }
    let ctx = new_session();
    let mut state = JobState::default();
    let outcome = execute(cx, &ctx, job, &params, &report, &mut state).await;
    let outcome = state.count_streamed(&job.name, outcome);
    drop(progress);

    let counts = report.violation_counts();
    let mut violations = Vec::new();
    let mut rows_warned = 0;
    for (rule, count) in job.expectations.iter().zip(counts.iter().copied()) {
        if count > 0 {
            let level = if rule.on_violation == OnViolation::Warn {
                tracing::Level::WARN
            } else {
                tracing::Level::INFO
            };
            if level == tracing::Level::WARN {
                rows_warned += count;
                tracing::warn!(job = %job.name, rule = %rule.name, rows = count, "expectation violated (rows kept)");
            } else {
                tracing::info!(job = %job.name, rule = %rule.name, action = rule.on_violation.as_str(), rows = count, "expectation violated (rows quarantined)");
            }
        }
        violations.push((rule.name.clone(), rule.on_violation.as_str().to_string(), count));
    }
    let outcome = outcome.map_err(|e| quality_error(e, job, &violations));
    let rows_dropped: u64 = violations
        .iter()
        .filter(|(_, a, _)| a != "warn")
        .map(|(_, _, c)| c)
        .sum();

    let bookkeeping = record_run(cx, &ctx, job, &params, &report, &mut state, &outcome, &violations).await;
    let outcome = match (outcome, bookkeeping) {
        (Ok(()), Err(e)) => Err(e),
        (outcome, _) => outcome,
    };
    let elapsed = started.elapsed();
    match &outcome {
        Ok(()) => tracing::info!(
            job = %job.name,
            rows_written = state.sink.rows,
            files_added = state.sink.files_added,
            rows_read = state.rows_read,
            rows_quarantined = state.rows_rejected + rows_dropped,
            version = state.sink.version.map(|v| v.to_string()).unwrap_or_default(),
            seconds = format!("{:.2}", elapsed.as_secs_f64()),
            "job finished"
        ),
        Err(e) => {
            tracing::error!(job = %job.name, error = %e, retryable = e.is_retryable(), "job failed")
        }
    }
    JobReport {
        job: job.name.clone(),
        run_id: params.run_id,
        outcome,
        rows_read: state.rows_read,
        rows_rejected: state.rows_rejected,
        rows_dropped,
        rows_warned,
        sink: state.sink,
        elapsed,
    }
}

/// What a run gathered on the way, kept even when it fails part way.
#[derive(Default)]
struct JobState {
    rows_read: u64,
    rows_rejected: u64,
    unreadable: Vec<Entry>,
    sink: SinkMetrics,
    /// Sources read while the query ran, by name.
    streamed: Vec<(String, Arc<SourceRead>)>,
}

impl JobState {
    /// Counts what the sources read while the query ran (when it ends, whether or not it
    /// failed) and takes their rejects for the quarantine. When a source failed to read, its
    /// error (naming the file or table) replaces the query's, which only repeats its message.
    fn count_streamed(&mut self, job: &str, mut outcome: Result<()>) -> Result<()> {
        for (source, read) in std::mem::take(&mut self.streamed) {
            if let (Some(failure), Err(_)) = (read.take_failure(), &outcome) {
                outcome = Err(failure);
            }
            let rejected = read.take_rejects();
            self.rows_read += read.rows();
            self.rows_rejected += rejected.len() as u64;
            if let Some(first) = rejected.first() {
                tracing::warn!(job, source = %source, records = rejected.len(), first = %first.location, reason = %first.reason, "unreadable records quarantined");
            }
            tracing::info!(job, source = %source, rows = read.rows(), "source read");
            self.unreadable.extend(quarantine::unreadable_entries(rejected));
        }
        outcome
    }
}

async fn execute(
    cx: RunContext<'_>,
    ctx: &SessionContext,
    job: &Job,
    params: &RunParams,
    report: &Arc<QualityReport>,
    state: &mut JobState,
) -> Result<()> {
    cx.lake.register_all(ctx).await?;
    for source in &job.sources {
        let input = sources::resolve(
            source,
            SourceContext {
                lake: cx.lake,
                mysql_url: cx.mysql_url,
                mongodb: cx.mongodb,
                range: params.range,
            },
        )
        .await?;
        // Read while the query runs, a piece at a time: see `query::source_table`.
        tracing::info!(job = %job.name, source = %source.name, from = %input.describe(), "source streamed");
        let (table, read) = source_table(source, input)?;
        ctx.register_table(source.name.as_str(), Arc::new(table))
            .map_err(|e| Error::Internal(format!("registering source {}: {e}", source.name)))?;
        state.streamed.push((source.name.clone(), read));
    }

    let plan = gated_plan(ctx, job, params, cx.registry, report.clone()).await?;

    let replace = Replace::for_run(job.write_mode, job.sink.partition_by(), params.range);
    state.sink = match (&job.sink, &job.sink_table) {
        (SinkDef::Delta(def), Some(table)) => {
            DeltaSink::new(cx.lake, table.clone())
                .with_partition_columns(&def.partition_by)
                .with_table_properties(def.table_properties.clone())
                .with_replace(replace)
                .with_commit_metadata("quickchat.run_id", &params.run_id)
                .with_commit_metadata("quickchat.job", &job.name)
                .write_plan(ctx, plan)
                .await?
        }
        (SinkDef::Parquet(def), _) => {
            ParquetSink::new(cx.lake, &def.path)?
                .with_partition_columns(&def.partition_by)
                .with_replace(replace)
                .write_plan(ctx, plan)
                .await?
        }
        (SinkDef::Mongodb(def), _) => {
            let settings = cx.mongodb.ok_or_else(|| Error::Sink {
                table: job.sink_display(),
                message: crate::sinks::mongodb::NOT_CONFIGURED.into(),
                retryable: false,
                cause: None,
            })?;
            let written = MongoSink::connect(settings)
                .await?
                .write_run(ctx, plan, &job.name, &params.run_id, def, &replace)
                .await?;
            if let Some(first) = written.refused.first() {
                tracing::warn!(job = %job.name, documents = written.refused.len(), first = %first.location, reason = %first.reason, "refused documents quarantined");
            }
            state.unreadable.extend(quarantine::unreadable_entries(written.refused));
            written.metrics
        }
        (other, _) => {
            return Err(Error::Internal(format!(
                "the registry let a {} sink through for a batch job",
                other.kind()
            )));
        }
    };
    Ok(())
}

/// The job's SQL planned against what `ctx` holds, with its expectations applied on the way
/// out: the logical plan every sink (and the SQL tests) execute, optimized once with the sink.
pub async fn gated_plan(
    ctx: &SessionContext,
    job: &Job,
    params: &RunParams,
    registry: &Registry,
    report: Arc<QualityReport>,
) -> Result<LogicalPlan> {
    let df = plan_job(ctx, job, params, registry).await?;
    let rules = build_rules(job, &df)?;
    Ok(ExpectationsNode::plan(df.logical_plan().clone(), rules, report))
}

/// Runs a job against the tables `ctx` already holds and returns the rows it would write,
/// without touching any sink (the SQL tests use this).
pub async fn run_in_memory(
    ctx: &SessionContext,
    job: &Job,
    params: &RunParams,
    registry: &Registry,
) -> Result<(Vec<arrow::record_batch::RecordBatch>, Arc<QualityReport>)> {
    let report = Arc::new(QualityReport::default());
    let plan = gated_plan(ctx, job, params, registry, report.clone()).await?;
    let rows = match ctx.execute_logical_plan(plan).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    let violations: Vec<(String, String, u64)> = job
        .expectations
        .iter()
        .zip(report.violation_counts())
        .map(|(rule, count)| (rule.name.clone(), rule.on_violation.as_str().to_string(), count))
        .collect();
    let rows = rows.map_err(|e| quality_error(Error::compute(format!("job `{}`", job.name), e), job, &violations))?;
    Ok((rows, report))
}

/// The job's expectations as boolean conditions over its output, type-coerced to its schema.
pub fn build_rules(job: &Job, df: &datafusion::prelude::DataFrame) -> Result<Vec<LogicalRule>> {
    let mut rules = Vec::with_capacity(job.expectations.len());
    let mut problems = Vec::new();
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(df.schema().clone()))
            .build(),
    );
    for expectation in &job.expectations {
        let checked = df
            .parse_sql_expr(&expectation.condition)
            .and_then(|expr| simplifier.coerce(expr, df.schema()))
            .and_then(|expr| {
                let data_type = expr.get_type(df.schema())?;
                if data_type == arrow::datatypes::DataType::Boolean {
                    Ok(expr)
                } else {
                    Err(datafusion::error::DataFusionError::Plan(format!(
                        "the condition is {data_type}, not a boolean"
                    )))
                }
            });
        match checked {
            Ok(condition) => rules.push(LogicalRule {
                name: expectation.name.clone(),
                on_violation: expectation.on_violation,
                condition,
            }),
            Err(e) => problems.push(crate::error::ConfigProblem::in_file(
                &job.pipeline_path,
                format!("expectation `{}`: {e}", expectation.name),
            )),
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(Error::Config(problems))
    }
}

/// Turns the write error caused by `fail` expectations into the data-quality error.
fn quality_error(error: Error, job: &Job, violations: &[(String, String, u64)]) -> Error {
    let failed: Vec<RuleViolation> = violations
        .iter()
        .filter(|(_, action, rows)| action == "fail" && *rows > 0)
        .map(|(rule, _, rows)| RuleViolation {
            rule: rule.clone(),
            rows: *rows,
        })
        .collect();
    if !failed.is_empty() && error.to_string().contains(QUALITY_FAILURE_MARKER) {
        Error::DataQuality {
            job: job.name.clone(),
            violations: failed,
        }
    } else {
        error
    }
}

/// Writes the quarantine and the run log for a finished run.
#[allow(clippy::too_many_arguments)]
async fn record_run(
    cx: RunContext<'_>,
    ctx: &SessionContext,
    job: &Job,
    params: &RunParams,
    report: &QualityReport,
    state: &mut JobState,
    outcome: &Result<()>,
    violations: &[(String, String, u64)],
) -> Result<()> {
    let date_column = job.sink.partition_by().first().map(String::as_str);
    let mut entries = std::mem::take(&mut state.unreadable);
    entries.extend(quarantine::expectation_entries(report.take_quarantined(), date_column));
    // A run that failed before its sources were read has nothing to say about the quarantine.
    let sources_read = outcome.is_ok() || state.rows_read > 0 || !entries.is_empty();
    let now = Utc::now();
    if sources_read {
        quarantine::record(cx.lake, ctx, &job.name, params.range, &params.run_id, now, entries).await?;
    }
    let record = RunRecord {
        run_id: params.run_id.clone(),
        job: job.name.clone(),
        status: if outcome.is_ok() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        },
        range: params.range,
        started_at: params.started_at,
        finished_at: now,
        rows_read: state.rows_read,
        rows_rejected: state.rows_rejected,
        rows_written: state.sink.rows,
        rows_dropped: violations
            .iter()
            .filter(|(_, a, _)| a != "warn")
            .map(|(_, _, c)| c)
            .sum(),
        files_added: state.sink.files_added,
        files_removed: state.sink.files_removed,
        table_version: state.sink.version,
        violations: violations.to_vec(),
        error: outcome.as_ref().err().map(ToString::to_string),
    };
    run_log::append(cx.lake, ctx, &record).await
}
