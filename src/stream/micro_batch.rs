//! One micro-batch as the outputs' queries see it: per source the rows on time, all rows kept,
//! the rows joins may use and the watermark; the rows earlier outputs emitted; and the
//! DataFusion session a query is planned in over those tables ([`QuerySql`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, SessionContext};

use super::join_buffer::joinable_rows;
use crate::config::stream_pipeline::{StreamOutput, StreamPipeline};
use crate::error::{Error, Result};
use crate::query::aggregate::SplitPlan;
use crate::query::analysis::{Analysis, QueryKind, planning_session};
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

/// A session with this micro-batch's tables for a query: the sources it reads (rows on time
/// for aggregates, every row for stateless queries, the retained rows for joins), the earlier
/// outputs' final rows, and the window functions returning `windowed` rows.
pub fn query_session(
    pipeline: &StreamPipeline,
    analysis: &Analysis,
    batch: &MicroBatch,
    finals: &Finals,
    windowed: Option<(&WindowUse, RecordBatch)>,
) -> SessionContext {
    let schemas = pipeline
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.schema.clone()))
        .collect();
    let tables = Arc::new(WindowTables::new(schemas));
    if let Some((window, rows)) = &windowed {
        tables.prepare((*window).clone(), rows.clone());
    }
    let output_schemas = finals
        .iter()
        .map(|(name, (schema, _))| (name.clone(), schema.clone()))
        .collect();
    let ctx = planning_session(pipeline, &output_schemas, &tables);
    for name in &analysis.reads {
        let (schema, rows) = match pipeline.source(name) {
            Some(source) => {
                let rows = match &analysis.kind {
                    QueryKind::Stateless => batch.all.get(name).cloned(),
                    QueryKind::Global => batch.on_time.get(name).cloned(),
                    QueryKind::Windowed { join, window } => batch.buffers.get(name).map(|rows| {
                        let driving_time = pipeline.source(&window.source).map(|s| s.event_time);
                        let windowed_rows = windowed.as_ref().map(|(_, rows)| rows).zip(driving_time);
                        joinable_rows(rows, source, join.as_ref(), windowed_rows)
                    }),
                };
                (source.schema.clone(), rows.into_iter().collect::<Vec<_>>())
            }
            None => finals
                .get(name)
                .cloned()
                .unwrap_or_else(|| (analysis.schema.clone(), Vec::new())),
        };
        let table = MemTable::try_new(schema, vec![rows]).expect("rows match their table's schema");
        let _ = ctx.deregister_table(name.as_str());
        ctx.register_table(name.as_str(), Arc::new(table))
            .expect("tables register");
    }
    ctx
}

/// One output's SQL over micro-batches: what its operator plans with, and the error naming the
/// output's SQL file when planning or running it fails.
#[derive(Clone, Copy)]
pub struct QuerySql<'a> {
    /// The pipeline.
    pub pipeline: &'a StreamPipeline,
    /// The output.
    pub output: &'a StreamOutput,
    /// What its SQL is.
    pub analysis: &'a Analysis,
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

    /// A session over this micro-batch's tables (see [`query_session`]).
    pub fn session(
        &self,
        batch: &MicroBatch,
        finals: &Finals,
        windowed: Option<(&WindowUse, RecordBatch)>,
    ) -> SessionContext {
        query_session(self.pipeline, self.analysis, batch, finals, windowed)
    }

    /// The query planned in `ctx`.
    pub async fn frame(&self, ctx: &SessionContext) -> Result<DataFrame> {
        ctx.sql(&self.output.sql).await.map_err(|e| self.datafusion_error(e))
    }

    /// The query's physical plan in `ctx`, split around its aggregate.
    pub async fn split(&self, ctx: &SessionContext) -> Result<SplitPlan> {
        let physical = self
            .frame(ctx)
            .await?
            .create_physical_plan()
            .await
            .map_err(|e| self.datafusion_error(e))?;
        tracing::trace!(output = %self.output.name, plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(true), "physical plan");
        SplitPlan::split(&physical)
            .map_err(|e| self.datafusion_error(e))?
            .ok_or_else(|| self.error("the query lost its aggregate"))
    }
}
