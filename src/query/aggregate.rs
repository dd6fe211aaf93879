//! Incremental aggregation with DataFusion's own accumulators.
//!
//! A streaming query with a `GROUP BY` is planned as usual, then split around its aggregate:
//! the operators below it (`pre`), the aggregate's expressions, and the operators above it
//! (`above`, e.g. the projection computing `purchases / clicks`). Each micro-batch runs `pre`
//! over its new rows and a *Partial* aggregate over that, giving accumulator states (a count, a
//! sum, the distinct values seen, the values for an exact percentile...). States of the same
//! group are merged with *PartialReduce*, so the state holds one row per group, not the rows
//! seen. When a group is due (its window closed, or it changed and a sink wants updates), a
//! *Final* aggregate turns its state into values and `above` runs on top.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions, reset_plan_states};
use datafusion::physical_plan::{ExecutionPlan, collect};

/// A query's physical plan split around its aggregate.
#[derive(Debug, Clone)]
pub struct SplitPlan {
    /// The plan below the aggregate: it yields the rows to aggregate.
    pub pre: Arc<dyn ExecutionPlan>,
    group_by: Arc<PhysicalGroupBy>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    input_schema: SchemaRef,
    /// Operators from the root down to the aggregate (exclusive), root first.
    above: Vec<Arc<dyn ExecutionPlan>>,
}

impl SplitPlan {
    /// Splits a plan at its aggregate. `Ok(None)` when the plan has no aggregate; an error when
    /// it has one that cannot be computed incrementally (below a join or union, or a second
    /// aggregate above the first: use a second output reading the first instead).
    pub fn split(plan: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Self>> {
        let mut above = Vec::new();
        let mut node = plan.clone();
        loop {
            if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
                let first_phase = lowest_aggregate(aggregate)?;
                if contains_aggregate(first_phase.input()) {
                    return Err(DataFusionError::Plan(
                        "a streaming query can aggregate once; aggregate the rows of another output instead".into(),
                    ));
                }
                return Ok(Some(SplitPlan {
                    pre: first_phase.input().clone(),
                    group_by: Arc::new(first_phase.group_expr().clone()),
                    aggregates: first_phase.aggr_expr().to_vec(),
                    filters: first_phase.filter_expr().to_vec(),
                    input_schema: first_phase.input_schema(),
                    above,
                }));
            }
            let children = node.children();
            match children.as_slice() {
                [] => return Ok(None),
                [child] => {
                    let child = (*child).clone();
                    above.push(node);
                    node = child;
                }
                _ if contains_aggregate(&node) => {
                    return Err(DataFusionError::Plan(format!(
                        "a streaming query cannot combine an aggregate with a {} above it; \
                         aggregate in one output and read its rows in another",
                        node.name()
                    )));
                }
                _ => return Ok(None),
            }
        }
    }

    /// The same split with `pre` ready to run again (its operators' run state cleared).
    pub fn reset(&self) -> DfResult<Self> {
        Ok(Self {
            pre: reset_plan_states(self.pre.clone())?,
            ..self.clone()
        })
    }

    /// Accumulator states of `pre`'s rows, one row per group of this batch.
    pub async fn partial(&self, task: Arc<TaskContext>) -> DfResult<Vec<RecordBatch>> {
        let partial = self.aggregate(AggregateMode::Partial, self.group_by.clone(), self.pre.clone())?;
        collect(partial, task).await
    }

    /// The schema of accumulator states.
    pub fn state_schema(&self) -> DfResult<SchemaRef> {
        Ok(self
            .aggregate(AggregateMode::Partial, self.group_by.clone(), self.pre.clone())?
            .schema())
    }

    /// Merges states of the same group into one row per group.
    pub async fn reduce(&self, states: Vec<RecordBatch>, task: Arc<TaskContext>) -> DfResult<Vec<RecordBatch>> {
        let input = self.state_source(states)?;
        let reduce = self.aggregate(AggregateMode::PartialReduce, Arc::new(self.group_by.as_final()), input)?;
        collect(reduce, task).await
    }

    /// Turns states into the query's result rows: the Final aggregate, then the operators above.
    pub async fn finish(&self, states: Vec<RecordBatch>, task: Arc<TaskContext>) -> DfResult<Vec<RecordBatch>> {
        let input = self.state_source(states)?;
        let mut plan = self.aggregate(AggregateMode::Final, Arc::new(self.group_by.as_final()), input)?;
        for operator in self.above.iter().rev() {
            let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            plan = operator.clone().replace_children(vec![plan], recompute)?;
        }
        collect(plan, task).await
    }

    /// Names of the group columns in the state schema, in order.
    pub fn group_columns(&self) -> Vec<String> {
        self.group_by.expr().iter().map(|(_, name)| name.clone()).collect()
    }

    /// The rows of `states` whose groups some row of `partial` (this micro-batch's states) has:
    /// the groups that changed.
    pub fn changed_groups(&self, states: &[RecordBatch], partial: &[RecordBatch]) -> DfResult<Vec<RecordBatch>> {
        let (Some(first), false) = (states.first(), partial.is_empty()) else {
            return Ok(Vec::new());
        };
        let columns: Vec<usize> = self
            .group_columns()
            .iter()
            .filter_map(|name| first.schema().index_of(name).ok())
            .collect();
        if columns.is_empty() {
            // No group columns: one group, and it changed.
            return Ok(states.to_vec());
        }
        let fields: Vec<SortField> = columns
            .iter()
            .map(|&i| SortField::new(first.schema().field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let pick = |batch: &RecordBatch| columns.iter().map(|&i| batch.column(i).clone()).collect::<Vec<_>>();
        let mut wanted = HashSet::new();
        for batch in partial {
            wanted.extend(converter.convert_columns(&pick(batch))?.iter().map(|r| r.owned()));
        }
        let mut out = Vec::new();
        for batch in states {
            let rows = converter.convert_columns(&pick(batch))?;
            let keep: BooleanArray = rows.iter().map(|r| Some(wanted.contains(&r.owned()))).collect();
            if keep.true_count() > 0 {
                out.push(filter_record_batch(batch, &keep)?);
            }
        }
        Ok(out)
    }

    fn state_source(&self, states: Vec<RecordBatch>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.state_schema()?;
        Ok(MemorySourceConfig::try_new_exec(&[states], schema, None)?)
    }

    fn aggregate(
        &self,
        mode: AggregateMode,
        group_by: Arc<PhysicalGroupBy>,
        input: Arc<dyn ExecutionPlan>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(AggregateExec::try_new(
            mode,
            group_by,
            self.aggregates.clone(),
            self.filters.clone(),
            input,
            self.input_schema.clone(),
        )?))
    }
}

/// The first-phase aggregate under `top` (itself when it is single-phase).
fn lowest_aggregate(top: &AggregateExec) -> DfResult<&AggregateExec> {
    match top.mode() {
        AggregateMode::Single | AggregateMode::SinglePartitioned | AggregateMode::Partial => Ok(top),
        _ => {
            let mut node = top.input();
            loop {
                if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
                    return lowest_aggregate(aggregate);
                }
                match node.children().as_slice() {
                    [child] => node = child,
                    _ => {
                        return Err(DataFusionError::Internal(
                            "no partial aggregate under the final one".into(),
                        ));
                    }
                }
            }
        }
    }
}

fn contains_aggregate(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<AggregateExec>().is_some() || plan.children().iter().any(|c| contains_aggregate(c))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn plan_over(rows: Vec<(&str, i64)>, sql: &str) -> (SessionContext, SplitPlan) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()))
            .unwrap();
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        (ctx.clone(), SplitPlan::split(&plan).unwrap().unwrap())
    }

    #[tokio::test]
    async fn partial_states_of_two_batches_merge_into_the_same_results_as_one_batch() {
        let sql = "SELECT k, count(*) AS n, count(DISTINCT v) AS d, sum(v) * 10 AS s FROM t GROUP BY k ORDER BY k";
        let (ctx, first) = plan_over(vec![("a", 1), ("a", 2), ("b", 5)], sql).await;
        let (_, second) = plan_over(vec![("a", 2), ("a", 3), ("c", 7)], sql).await;
        let mut states = first.partial(ctx.task_ctx()).await.unwrap();
        states.extend(second.partial(ctx.task_ctx()).await.unwrap());
        let reduced = second.reduce(states, ctx.task_ctx()).await.unwrap();
        assert_eq!(
            reduced.iter().map(|b| b.num_rows()).sum::<usize>(),
            3,
            "one state row per group"
        );
        let results = second.finish(reduced, ctx.task_ctx()).await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&results)
            .unwrap()
            .to_string();
        assert_eq!(
            text,
            "+---+---+---+----+\n| k | n | d | s  |\n+---+---+---+----+\n| a | 4 | 3 | 80 |\n| b | 1 | 1 | 50 |\n| c | 1 | 1 | 70 |\n+---+---+---+----+"
        );
        assert_eq!(first.group_columns(), ["k"]);
    }

    #[tokio::test]
    async fn plans_without_an_aggregate_do_not_split() {
        let (ctx, _) = plan_over(vec![("a", 1)], "SELECT k, count(*) FROM t GROUP BY k").await;
        let plan = ctx
            .sql("SELECT k, v + 1 FROM t WHERE v > 0")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        assert!(SplitPlan::split(&plan).unwrap().is_none());
    }
}
