//! Counting a join without producing its rows.
//!
//! `SELECT c.k, count(c.id), count(t.id) FROM c LEFT JOIN t ON c.u = t.u AND t.ts BETWEEN c.ts
//! AND c.ts + INTERVAL '10 minutes' GROUP BY c.k` makes one row per (c, t) pair only to count
//! them; on dense data (the clickstream conversions: ~50 purchases per click) that is most of a
//! pipeline's work. When every aggregate is a plain `count`, the groups come from the driving
//! (left) side, and the join is an equi-join plus bounds on one column of the joined side, the
//! same counts come per left row: how many joined rows have its key and fall within its bounds,
//! found by binary search in the joined rows sorted by key and that column.
//!
//! [`CountedJoins`] rewrites such an aggregate into sums of per-row counts over a
//! `CountingJoin` node (`node.rs`), which [`CountingJoinPlanner`] plans into `CountingJoinExec`
//! (`exec.rs`). Every other shape keeps
//! DataFusion's join. The rewrite is exact: `count(left column)` counts a left row once per
//! joined row it is part of (and once without a match in a LEFT JOIN) when the column is not
//! null, `count(right column)` its matches whose column is not null, and an INNER JOIN keeps no
//! left row without a match.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, ExprSchema, NullEquality, Result};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, Extension, JoinType, LogicalPlan, Projection, lit, when,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::join_bounds::{ColumnBound, bounds_of};
use node::CountingJoin;

mod exec;
mod node;

pub use node::CountingJoinPlanner;

/// Per left row: how many rows it stands for in the join's output.
const ROWS: &str = "__counting_join_rows";
/// Per left row and counted right column: its matches with that column not null.
const MATCHES: &str = "__counting_join_matches_";
/// Right columns counted at most (their null flags share one 64-bit word per joined row).
const MAX_COUNTED: usize = 64;

/// Rewrites count-only aggregates over equi-joins with bounds into [`CountingJoin`]s.
#[derive(Debug, Default)]
pub struct CountedJoins;

impl OptimizerRule for CountedJoins {
    fn name(&self) -> &str {
        "counted_joins"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match counted(aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// What one aggregate of the original query becomes a sum of.
enum Count {
    /// `count(*)`, `count(literal)` or a left expression that is never null: the join's rows.
    Rows,
    /// A left expression that may be null: the join's rows where it is not.
    LeftNotNull(Expr),
    /// The n-th counted right column: its non-null matches.
    Matches(usize),
}

/// The aggregate rewritten over a [`CountingJoin`], or `None` when its shape does not allow it.
fn counted(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    // Column-only projections between the aggregate and the join rename nothing.
    let mut input = aggregate.input.as_ref();
    while let LogicalPlan::Projection(projection) = input {
        if !projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) {
            return Ok(None);
        }
        input = projection.input.as_ref();
    }
    let LogicalPlan::Join(join) = input else {
        return Ok(None);
    };
    let keep_unmatched = match join.join_type {
        JoinType::Left => true,
        JoinType::Inner => false,
        _ => return Ok(None),
    };
    if join.on.is_empty() || join.null_equality != NullEquality::NullEqualsNothing || join.null_aware {
        return Ok(None);
    }
    let (left, right) = (join.left.schema().as_ref(), join.right.schema().as_ref());
    if aggregate
        .group_expr
        .iter()
        .any(|g| matches!(g, Expr::GroupingSet(_)) || !reads_only(g, left))
    {
        return Ok(None);
    }
    for (l, r) in &join.on {
        if !reads_only(l, left) || !reads_only(r, right) || l.get_type(left)? != r.get_type(right)? {
            return Ok(None);
        }
    }
    let Some(range) = join
        .filter
        .as_ref()
        .map_or(Some(Range::default()), |f| Range::of(f, left, right))
    else {
        return Ok(None);
    };

    let mut counted: Vec<Expr> = Vec::new();
    let mut counts = Vec::new();
    for expr in &aggregate.aggr_expr {
        let Some(argument) = plain_count_argument(expr) else {
            return Ok(None);
        };
        let count = match argument {
            Expr::Literal(value, _) if !value.is_null() => Count::Rows,
            e if reads_only(e, left) && !e.column_refs().is_empty() => {
                if e.nullable(left)? {
                    Count::LeftNotNull(e.clone())
                } else {
                    Count::Rows
                }
            }
            Expr::Column(c) if right.has_column(c) => {
                let position = counted.iter().position(|e| e == argument).unwrap_or_else(|| {
                    counted.push(argument.clone());
                    counted.len() - 1
                });
                Count::Matches(position)
            }
            _ => return Ok(None),
        };
        counts.push(count);
    }
    if counted.len() > MAX_COUNTED || left.fields().iter().any(|f| f.name().starts_with("__counting_join_")) {
        return Ok(None);
    }

    let node = CountingJoin::try_new(
        join.left.as_ref().clone(),
        join.right.as_ref().clone(),
        join.on.clone(),
        range,
        counted,
        keep_unmatched,
    )?;
    let node = LogicalPlan::Extension(Extension { node: Arc::new(node) });
    let sums = counts
        .into_iter()
        .map(|count| match count {
            Count::Rows => sum(Expr::Column(Column::new_unqualified(ROWS))),
            Count::LeftNotNull(e) => sum(when(e.is_not_null(), Expr::Column(Column::new_unqualified(ROWS)))
                .otherwise(lit(0i64))
                .expect("a CASE with one branch")),
            Count::Matches(n) => sum(Expr::Column(Column::new_unqualified(format!("{MATCHES}{n}")))),
        })
        .collect();
    let summed = Aggregate::try_new(Arc::new(node), aggregate.group_expr.clone(), sums)?;
    // Back to the original names and types: a group of at least one row sums to its count,
    // and a sum over no rows (no GROUP BY, no input) is the count 0.
    let groups = aggregate.group_expr.len();
    let exprs = (0..aggregate.schema.fields().len())
        .map(|i| {
            let (qualifier, field) = aggregate.schema.qualified_field(i);
            let computed = Expr::Column(Column::from(summed.schema.qualified_field(i)));
            let value = if i < groups {
                computed
            } else {
                coalesce(vec![computed, lit(0i64)])
            };
            value.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(LogicalPlan::Aggregate(summed)),
    )?)))
}

/// The argument of `count(x)` without DISTINCT, FILTER or ORDER BY.
fn plain_count_argument(expr: &Expr) -> Option<&Expr> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(function) = expr else {
        return None;
    };
    let params = &function.params;
    let plain = function.func.name() == "count"
        && !params.distinct
        && params.filter.is_none()
        && params.order_by.is_empty()
        && params.args.len() == 1;
    plain.then(|| &params.args[0])
}

/// Whether every column `expr` reads is in `schema`.
fn reads_only(expr: &Expr, schema: &DFSchema) -> bool {
    expr.column_refs().iter().all(|c| schema.has_column(c))
}

/// A join filter as bounds on one right column by expressions of the left row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Range {
    /// The right column bounded; `None` without a filter.
    pub column: Option<Column>,
    /// `column >= e` (inclusive) or `column > e`.
    pub lower: Vec<(Expr, bool)>,
    /// `column <= e` (inclusive) or `column < e`.
    pub upper: Vec<(Expr, bool)>,
}

impl Range {
    /// The bounds `filter` sets, when each of its conjuncts compares the same right column of a
    /// supported type with an expression of left columns of the same type.
    fn of(filter: &Expr, left: &DFSchema, right: &DFSchema) -> Option<Range> {
        let mut range = Range::default();
        for conjunct in split_conjunction(filter) {
            let bounds = bounds_of(conjunct, &|c| right.has_column(c), &|e| reads_only(e, left))?;
            for bound in bounds {
                range.add(bound, left, right)?;
            }
        }
        Some(range)
    }

    /// Adds a bound on a right column by an expression of the left row.
    fn add(&mut self, bound: ColumnBound, left: &DFSchema, right: &DFSchema) -> Option<()> {
        let column_type = right.field_from_column(&bound.column).ok()?.data_type().clone();
        let bound_type = bound.value.get_type(left).ok()?;
        if column_type != bound_type || !is_ordered_integer(&column_type) {
            return None;
        }
        if self.column.as_ref().is_some_and(|known| *known != bound.column) {
            return None;
        }
        self.column = Some(bound.column);
        let side = if bound.lower { &mut self.lower } else { &mut self.upper };
        side.push((bound.value, bound.inclusive));
        Some(())
    }
}

/// Types whose values compare as the 64-bit integers they cast to.
fn is_ordered_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(_, _) | DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use rand::{Rng, SeedableRng};

    use crate::query::new_session;

    /// Rows with nulls in every column a join reads, and times on a coarse grid so that many
    /// pairs sit exactly on a bound.
    fn table(rng: &mut rand_chacha::ChaCha8Rng, rows: usize, prefix: &str) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("user_id", DataType::Int64, true),
            Field::new("product", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("grp", DataType::Int64, false),
        ]));
        let maybe = |value: String, rng: &mut rand_chacha::ChaCha8Rng| (rng.random_range(0..10) > 0).then_some(value);
        let ids: Vec<Option<String>> = (0..rows).map(|i| maybe(format!("{prefix}{i}"), rng)).collect();
        let users: Vec<Option<i64>> = (0..rows)
            .map(|_| (rng.random_range(0..12) > 0).then(|| rng.random_range(0..5)))
            .collect();
        let products: Vec<String> = (0..rows).map(|_| format!("p{}", rng.random_range(0..3))).collect();
        let times: Vec<Option<i64>> = (0..rows)
            .map(|_| (rng.random_range(0..15) > 0).then(|| rng.random_range(0..40) * 5_000_000))
            .collect();
        let groups: Vec<i64> = (0..rows).map(|_| rng.random_range(0..4)).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Int64Array::from(users)),
                Arc::new(StringArray::from(products)),
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                Arc::new(Int64Array::from(groups)),
            ],
        )
        .unwrap()
    }

    /// The query's sorted rows and optimized plan, with and without the rewrite.
    async fn both_ways(sql: &str) -> ((String, String), (String, String)) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let clicks = table(&mut rng, 400, "c");
        let purchases = table(&mut rng, 600, "t");
        let plain =
            SessionContext::new_with_config(SessionConfig::new().set_str("datafusion.execution.time_zone", "UTC"));
        let mut results = Vec::new();
        for ctx in [new_session(), plain] {
            for (name, batch) in [("clicks", &clicks), ("purchases", &purchases)] {
                let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]]).unwrap();
                ctx.register_table(name, Arc::new(table)).unwrap();
            }
            let frame = ctx.sql(&format!("{sql} ORDER BY 1, 2")).await.unwrap();
            let plan = format!("{}", frame.clone().into_optimized_plan().unwrap().display_indent());
            let rows = pretty_format_batches(&frame.collect().await.unwrap())
                .unwrap()
                .to_string();
            results.push((rows, plan));
        }
        let plain = results.pop().unwrap();
        (results.pop().unwrap(), plain)
    }

    #[tokio::test]
    async fn a_left_join_counted_per_row_gives_the_joins_counts() {
        let sql = "SELECT c.grp, c.product, count(c.id) AS clicks, count(t.id) AS purchases, count(*) AS all_rows, \
                   count(c.ts) AS timed, CAST(count(t.id) AS DOUBLE) / count(c.id) AS rate \
                   FROM clicks c LEFT JOIN purchases t ON t.user_id = c.user_id AND t.product = c.product \
                   AND t.ts BETWEEN c.ts AND c.ts + INTERVAL '30 seconds' GROUP BY c.grp, c.product";
        let ((rows, plan), (expected, plain_plan)) = both_ways(sql).await;
        assert!(plan.contains("CountingJoin: left"), "{plan}");
        assert!(!plain_plan.contains("CountingJoin"));
        assert_eq!(rows, expected);
        assert!(rows.lines().count() > 10, "{rows}");
    }

    #[tokio::test]
    async fn an_inner_join_with_strict_bounds_leaves_out_unmatched_rows() {
        let sql = "SELECT c.grp, c.user_id, count(t.id) AS matched, count(*) AS pairs \
                   FROM clicks c JOIN purchases t ON c.user_id = t.user_id \
                   WHERE t.ts > c.ts - INTERVAL '10 seconds' AND t.ts < c.ts + INTERVAL '10 seconds' \
                   AND c.product = 'p1' GROUP BY c.grp, c.user_id";
        let ((rows, plan), (expected, _)) = both_ways(sql).await;
        assert!(plan.contains("CountingJoin: inner"), "{plan}");
        assert_eq!(rows, expected);
    }

    #[tokio::test]
    async fn a_group_with_no_match_in_an_inner_join_does_not_appear() {
        // Times run from 0 to 195 s: only the earliest clicks have a purchase 190 s later.
        let sql = "SELECT c.grp, c.id, count(*) AS pairs FROM clicks c JOIN purchases t ON c.user_id = t.user_id \
                   AND t.ts >= c.ts + INTERVAL '190 seconds' GROUP BY c.grp, c.id";
        let ((rows, plan), (expected, _)) = both_ways(sql).await;
        assert!(plan.contains("CountingJoin: inner"), "{plan}");
        assert_eq!(rows, expected);
    }

    #[tokio::test]
    async fn other_aggregates_keep_the_ordinary_join() {
        let sql = "SELECT c.grp, count(c.id) AS clicks, max(t.id) AS last \
                   FROM clicks c LEFT JOIN purchases t ON t.user_id = c.user_id AND t.ts BETWEEN c.ts AND c.ts + INTERVAL '30 seconds' \
                   GROUP BY c.grp";
        let ((rows, plan), (expected, _)) = both_ways(sql).await;
        assert!(!plan.contains("CountingJoin"), "{plan}");
        assert_eq!(rows, expected);
    }
}
