//! One micro-batch as the outputs' queries see it: per source the rows on time, all rows kept,
//! the rows joins may use and the watermark; the rows earlier outputs emitted. An output's SQL
//! is planned once ([`PlannedQuery`]) over tables each micro-batch binds its rows to
//! ([`QuerySql::bind`]); the plan then runs again, reset, over the new rows.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;

use super::join_buffer::joinable_rows;
use crate::config::stream_pipeline::{StreamOutput, StreamPipeline};
use crate::error::{Error, Result};
use crate::query::aggregate::SplitPlan;
use crate::query::analysis::{Analysis, QueryKind};
use crate::query::bound_table::{Binding, BoundTable};
use crate::query::new_session;
use crate::query::window::{WindowTables, WindowUse};

/// Everything one micro-batch brings, shared by all outputs.
#[derive(Debug, Default)]
pub struct MicroBatch {
    /// Per source: rows at or after the watermark (they feed aggregates).
    pub on_time: HashMap<String, RecordBatch>,
    /// Per source: every row kept, late ones too (stateless queries see these).
    pub all: HashMap<String, RecordBatch>,
    /// Per joined source: every row retained for joins, this batch's included.
    pub buffers: HashMap<String, RecordBatch>,
    /// Per source: the watermark after this batch (microseconds; `i64::MIN` before any row).
    pub watermarks: HashMap<String, i64>,
    /// The input is over: every window closes.
    pub end_of_input: bool,
}

impl MicroBatch {
    /// A source's watermark: `i64::MAX` once the input is over.
    pub fn watermark(&self, source: &str) -> i64 {
        if self.end_of_input {
            i64::MAX
        } else {
            self.watermarks.get(source).copied().unwrap_or(i64::MIN)
        }
    }
}

/// What an output emits in one micro-batch.
#[derive(Debug, Default, Clone)]
pub struct Emitted {
    /// Final rows: for append sinks (and later outputs reading this one).
    pub append: Vec<RecordBatch>,
    /// Changed rows, final ones included: for update sinks.
    pub update: Vec<RecordBatch>,
}

/// The final rows earlier outputs emitted in this micro-batch, with their schemas, by output.
pub type Finals = HashMap<String, (SchemaRef, Vec<RecordBatch>)>;

/// An output's SQL planned once, over tables its micro-batches bind their rows to: the sources
/// it reads, the earlier outputs it reads, and its window function's table.
pub struct PlannedQuery {
    ctx: SessionContext,
    windows: Arc<WindowTables>,
    tables: HashMap<String, Binding>,
    plan: Arc<dyn ExecutionPlan>,
    split: Option<SplitPlan>,
}

impl std::fmt::Debug for PlannedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlannedQuery({:?})", self.tables.keys().collect::<Vec<_>>())
    }
}

impl PlannedQuery {
    /// Plans `output` of `pipeline` (what `analysis` found it is); `outputs` are the schemas
    /// of the outputs before it.
    pub async fn new(
        pipeline: &StreamPipeline,
        output: &StreamOutput,
        analysis: &Analysis,
        outputs: &HashMap<String, SchemaRef>,
    ) -> Result<Self> {
        let error = |e| Error::sql(&pipeline.name, &output.sql_path, e);
        let schemas = pipeline
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.schema.clone()))
            .collect();
        let windows = Arc::new(WindowTables::new(schemas));
        let ctx = new_session();
        // A plan run again with new rows must not carry filters derived from the rows of an
        // earlier run (`reset_plan_states` cannot reset them).
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .optimizer
            .enable_dynamic_filter_pushdown = false;
        windows.register(&ctx);
        let mut tables = HashMap::new();
        for name in &analysis.reads {
            let schema = match pipeline.source(name) {
                Some(source) => source.schema.clone(),
                None => match outputs.get(name) {
                    Some(schema) => schema.clone(),
                    None => continue,
                },
            };
            let binding = Binding::default();
            ctx.register_table(name.as_str(), Arc::new(BoundTable::new(schema, binding.clone())))
                .map_err(error)?;
            tables.insert(name.clone(), binding);
        }
        let plan = ctx
            .sql(&output.sql)
            .await
            .map_err(error)?
            .create_physical_plan()
            .await
            .map_err(error)?;
        tracing::trace!(output = %output.name, plan = %datafusion::physical_plan::displayable(plan.as_ref()).indent(true), "physical plan");
        let split = match analysis.kind {
            QueryKind::Stateless => None,
            _ => Some(SplitPlan::split(&plan).map_err(error)?.ok_or_else(|| Error::Sql {
                job: pipeline.name.clone(),
                file: output.sql_path.clone(),
                message: "the query lost its aggregate".into(),
                cause: None,
            })?),
        };
        Ok(Self {
            ctx,
            windows,
            tables,
            plan,
            split,
        })
    }
}

impl PlannedQuery {
    /// The columns of the query's rows.
    pub fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }
}

/// Rows bound to a planned query's tables, until dropped.
pub struct Bound<'a>(&'a PlannedQuery);

impl Drop for Bound<'_> {
    fn drop(&mut self) {
        for binding in self.0.tables.values() {
            binding.bind(Vec::new());
        }
        self.0.windows.release();
    }
}

/// One output's SQL over micro-batches: its plan, the tables to bind each micro-batch's rows to,
/// and the error naming the output's SQL file when running it fails.
#[derive(Clone, Copy)]
pub struct QuerySql<'a> {
    /// The pipeline.
    pub pipeline: &'a StreamPipeline,
    /// The output.
    pub output: &'a StreamOutput,
    /// What its SQL is.
    pub analysis: &'a Analysis,
    /// Its plan.
    pub planned: &'a PlannedQuery,
}

impl QuerySql<'_> {
    /// The error of this output's SQL.
    pub fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Sql {
            job: self.pipeline.name.clone(),
            file: self.output.sql_path.clone(),
            message: e.to_string(),
            cause: None,
        }
    }

    /// The error of this output's SQL, keeping DataFusion's.
    pub fn datafusion_error(&self, e: DataFusionError) -> Error {
        Error::sql(&self.pipeline.name, &self.output.sql_path, e)
    }

    /// Binds this micro-batch's rows to the query's tables: the sources it reads (rows on time
    /// for aggregates, every row for stateless queries, the retained rows for joins — only
    /// those the `windowed` rows' bounds can reach), the earlier outputs' final rows, and the
    /// `windowed` rows to its window function's table. The tables let go of the rows when the
    /// returned guard is dropped, so state is all a query keeps between micro-batches.
    #[must_use = "the rows are unbound when the guard is dropped"]
    pub fn bind(&self, batch: &MicroBatch, finals: &Finals, windowed: Option<(&WindowUse, RecordBatch)>) -> Bound<'_> {
        let (pipeline, analysis) = (self.pipeline, self.analysis);
        for (name, binding) in &self.planned.tables {
            let rows = match pipeline.source(name) {
                Some(source) => match &analysis.kind {
                    QueryKind::Stateless => batch.all.get(name).cloned(),
                    QueryKind::Global => batch.on_time.get(name).cloned(),
                    QueryKind::Windowed { join, window } => batch.buffers.get(name).map(|rows| {
                        let driving_time = pipeline.source(&window.source).map(|s| s.event_time);
                        let windowed_rows = windowed.as_ref().map(|(_, rows)| rows).zip(driving_time);
                        joinable_rows(rows, source, join.as_ref(), windowed_rows)
                    }),
                }
                .into_iter()
                .collect(),
                None => finals.get(name).map(|(_, rows)| rows.clone()).unwrap_or_default(),
            };
            binding.bind(rows);
        }
        if let Some((window, rows)) = windowed {
            self.planned.windows.prepare(window.clone(), rows);
        }
        Bound(self.planned)
    }

    /// The task context queries run in.
    pub fn task(&self) -> Arc<TaskContext> {
        self.planned.ctx.task_ctx()
    }

    /// Runs a stateless query over the rows bound.
    pub async fn collect(&self) -> Result<Vec<RecordBatch>> {
        let plan = reset_plan_states(self.planned.plan.clone()).map_err(|e| self.datafusion_error(e))?;
        collect(plan, self.task()).await.map_err(|e| self.datafusion_error(e))
    }

    /// An aggregate query's plan split around its aggregate, ready to run over the rows bound.
    pub fn split(&self) -> Result<SplitPlan> {
        let split = self
            .planned
            .split
            .as_ref()
            .ok_or_else(|| self.error("the query has no aggregate"))?;
        split.reset().map_err(|e| self.datafusion_error(e))
    }
}
