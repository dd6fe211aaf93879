//! Tables whose rows are bound anew before each run of a plan: a streaming output's SQL is
//! planned once, over [`BoundTable`]s, and each micro-batch binds its rows to them
//! ([`Binding::bind`]) before the plan runs again (`reset_plan_states` first, so operators that
//! keep what they built — a hash join's build side — build it again from the new rows).
//!
//! A bound table reports no statistics: the plan must not be shaped by the rows of the
//! micro-batch it happened to be planned with.

use std::fmt;
use std::sync::{Arc, RwLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// The rows a bound table holds now.
#[derive(Debug, Clone, Default)]
pub struct Binding(Arc<RwLock<Vec<RecordBatch>>>);

impl Binding {
    /// Puts `rows` in, in place of what was there.
    pub fn bind(&self, rows: Vec<RecordBatch>) {
        *self.0.write().expect("binding lock") = rows;
    }

    fn rows(&self) -> Vec<RecordBatch> {
        self.0.read().expect("binding lock").clone()
    }
}

/// A table reading whatever its binding holds when a plan over it runs.
#[derive(Debug)]
pub struct BoundTable {
    schema: SchemaRef,
    binding: Binding,
}

impl BoundTable {
    /// A table of `schema` reading `binding`.
    pub fn new(schema: SchemaRef, binding: Binding) -> Self {
        Self { schema, binding }
    }
}

#[async_trait]
impl TableProvider for BoundTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => self.schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(BoundScanExec {
            binding: self.binding.clone(),
            projection: projection.cloned(),
            schema,
            properties: Arc::new(properties),
        }))
    }
}

/// The scan of a [`BoundTable`]: the binding's rows at the time it runs.
#[derive(Debug)]
pub struct BoundScanExec {
    binding: Binding,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for BoundScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "BoundScanExec: projection={:?}", self.projection)
    }
}

impl ExecutionPlan for BoundScanExec {
    fn name(&self) -> &str {
        "BoundScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let rows = self.binding.rows();
        let rows = match &self.projection {
            Some(columns) => rows.iter().map(|b| b.project(columns)).collect::<Result<Vec<_>, _>>()?,
            None => rows,
        };
        Ok(Box::pin(MemoryStream::try_new(rows, self.schema.clone(), None)?))
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema)))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::{collect, execution_plan::reset_plan_states};

    use super::*;
    use crate::query::new_session;

    fn numbers(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    #[tokio::test]
    async fn a_plan_made_once_reads_the_rows_bound_before_each_run() {
        let ctx = new_session();
        let (left, right) = (Binding::default(), Binding::default());
        ctx.register_table("l", Arc::new(BoundTable::new(numbers(&[]).schema(), left.clone())))
            .unwrap();
        ctx.register_table("r", Arc::new(BoundTable::new(numbers(&[]).schema(), right.clone())))
            .unwrap();
        let plan = ctx
            .sql("SELECT count(*) AS c, sum(l.n) AS s FROM l JOIN r ON l.n = r.n")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let run = |plan: Arc<dyn ExecutionPlan>| {
            let task = ctx.task_ctx();
            async move {
                let batches = collect(reset_plan_states(plan).unwrap(), task).await.unwrap();
                arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
            }
        };
        left.bind(vec![numbers(&[1, 2, 3])]);
        right.bind(vec![numbers(&[2, 3, 4])]);
        assert!(run(plan.clone()).await.contains("| 2 | 5 |"));
        // New rows on both sides, the join's build side included: the same plan sees them.
        left.bind(vec![numbers(&[7, 8])]);
        right.bind(vec![numbers(&[7, 7, 9])]);
        assert!(run(plan.clone()).await.contains("| 2 | 14 |"));
    }
}
