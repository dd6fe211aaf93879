//! The operator behind [`CountingJoin`](super::counting_join::CountingJoin): the right input
//! is indexed once (rows grouped by join key, each group sorted by the bounded column), then
//! every left batch streams through with its counts appended, by binary search per row.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// A bound on the right's bounded column, computed from the left row.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The bound's value, over the left input.
    pub value: Arc<dyn PhysicalExpr>,
    /// `>=`/`<=` rather than `>`/`<`.
    pub inclusive: bool,
}

/// What the operator computes.
#[derive(Debug)]
pub struct JoinSpec {
    /// Equi-join keys over the left input.
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The matching keys over the right input, same types, same order.
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The right column the bounds apply to; `None` when there are none.
    pub range_column: Option<Arc<dyn PhysicalExpr>>,
    /// Lower bounds (all must hold).
    pub lower: Vec<Bound>,
    /// Upper bounds (all must hold).
    pub upper: Vec<Bound>,
    /// Right expressions whose non-null matches are counted.
    pub counted: Vec<Arc<dyn PhysicalExpr>>,
    /// A left row without a match stands for one row (LEFT JOIN) or is left out (INNER JOIN).
    pub keep_unmatched: bool,
}

impl JoinSpec {
    fn expressions(&self) -> impl Iterator<Item = &Arc<dyn PhysicalExpr>> {
        self.left_keys
            .iter()
            .chain(&self.right_keys)
            .chain(&self.range_column)
            .chain(self.lower.iter().map(|b| &b.value))
            .chain(self.upper.iter().map(|b| &b.value))
            .chain(&self.counted)
    }
}

/// Left rows with their counts (see the module documentation).
#[derive(Debug)]
pub struct CountingJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    spec: Arc<JoinSpec>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// The right input indexed, built by the first partition that needs it.
    index: Arc<OnceCell<Arc<RightIndex>>>,
}

impl CountingJoinExec {
    /// The operator over `left` and `right`; `schema` is the left's columns and the counts.
    pub fn new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        spec: Arc<JoinSpec>,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(left.properties().partitioning.partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            left,
            right,
            spec,
            schema,
            properties: Arc::new(properties),
            index: Arc::new(OnceCell::new()),
        }
    }
}

impl DisplayAs for CountingJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CountingJoinExec: {}, keys={}, bounds={}, counted={}",
            if self.spec.keep_unmatched { "left" } else { "inner" },
            self.spec.left_keys.len(),
            self.spec.lower.len() + self.spec.upper.len(),
            self.spec.counted.len()
        )
    }
}

impl ExecutionPlan for CountingJoinExec {
    fn name(&self) -> &str {
        "CountingJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::UnspecifiedDistribution, Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for expr in self.spec.expressions() {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("CountingJoinExec has two children".into()))?;
        Ok(Arc::new(CountingJoinExec::new(
            left,
            right,
            self.spec.clone(),
            self.schema.clone(),
        )))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let left = self.left.execute(partition, context.clone())?;
        let (right, spec, cell) = (self.right.clone(), self.spec.clone(), self.index.clone());
        let index = async move {
            cell.get_or_try_init(|| async {
                let schema = right.schema();
                let batches: Vec<RecordBatch> = right.execute(0, context)?.try_collect().await?;
                RightIndex::build(&schema, &batches, &spec).map(Arc::new)
            })
            .await
            .cloned()
        };
        let (spec, schema) = (self.spec.clone(), self.schema.clone());
        let counted = futures::stream::once(async move {
            let index = index.await?;
            Ok::<_, DataFusionError>(left.map(move |batch| with_counts(&batch?, &index, &spec, &schema)))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), counted)))
    }
}

/// The right rows that can match, grouped by key, each group sorted by the bounded column.
#[derive(Debug)]
struct RightIndex {
    converter: RowConverter,
    /// Key (in the converter's row format) to its group's span in `values`.
    groups: HashMap<Box<[u8]>, (usize, usize), Xxh3DefaultBuilder>,
    /// The bounded column's values, group after group, ascending within each.
    values: Vec<i64>,
    /// Per counted expression: how many of the first `i` rows of `values` have it not null.
    not_null_before: Vec<Vec<u32>>,
}

impl RightIndex {
    fn build(schema: &SchemaRef, batches: &[RecordBatch], spec: &JoinSpec) -> Result<Self> {
        let key_types = spec
            .right_keys
            .iter()
            .map(|k| k.data_type(schema))
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(key_types.into_iter().map(SortField::new).collect())?;
        let mut group_of: HashMap<Box<[u8]>, u32, Xxh3DefaultBuilder> = HashMap::default();
        // Per right row that can match: its group, value and a bit per counted expression not null.
        let (mut groups, mut values, mut flags) = (Vec::new(), Vec::new(), Vec::new());
        for batch in batches {
            let keys = evaluate(&spec.right_keys, batch)?;
            let rows = converter.convert_columns(&keys)?;
            let bounded = match &spec.range_column {
                Some(column) => Some(as_i64(&column.evaluate(batch)?.into_array(batch.num_rows())?)?),
                None => None,
            };
            let counted = evaluate(&spec.counted, batch)?;
            for row in 0..batch.num_rows() {
                // NULL matches nothing, in a key as in a bound.
                if keys.iter().any(|k| k.is_null(row)) || bounded.as_ref().is_some_and(|v| v.is_null(row)) {
                    continue;
                }
                let key = rows.row(row);
                let group = match group_of.get(key.as_ref()) {
                    Some(group) => *group,
                    None => {
                        let next = group_of.len() as u32;
                        group_of.insert(key.as_ref().into(), next);
                        next
                    }
                };
                groups.push(group);
                values.push(bounded.as_ref().map_or(0, |v| v.value(row)));
                flags.push(
                    counted
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.is_valid(row))
                        .fold(0u64, |flags, (n, _)| flags | (1 << n)),
                );
            }
        }
        // Grouped by a counting sort, then each (small, mostly ordered) group sorted by value.
        let mut starts = vec![0usize; group_of.len() + 1];
        for group in &groups {
            starts[*group as usize + 1] += 1;
        }
        for g in 1..starts.len() {
            starts[g] += starts[g - 1];
        }
        let mut next = starts.clone();
        let mut sorted = vec![(0i64, 0u64); groups.len()];
        for ((group, value), flag) in groups.iter().zip(&values).zip(&flags) {
            let at = &mut next[*group as usize];
            sorted[*at] = (*value, *flag);
            *at += 1;
        }
        for g in 0..group_of.len() {
            sorted[starts[g]..starts[g + 1]].sort_unstable_by_key(|(value, _)| *value);
        }
        let not_null_before = (0..spec.counted.len())
            .map(|n| {
                let mut before = Vec::with_capacity(sorted.len() + 1);
                before.push(0u32);
                for (_, flags) in &sorted {
                    before.push(before.last().copied().unwrap_or(0) + ((flags >> n) & 1) as u32);
                }
                before
            })
            .collect();
        Ok(Self {
            converter,
            groups: group_of
                .into_iter()
                .map(|(key, g)| (key, (starts[g as usize], starts[g as usize + 1])))
                .collect(),
            values: sorted.iter().map(|(value, _)| *value).collect(),
            not_null_before,
        })
    }

    /// The span of `values` a left row matches.
    fn matches(&self, key: &[u8], lower: i64, upper: i64) -> (usize, usize) {
        let Some(&(start, end)) = self.groups.get(key) else {
            return (0, 0);
        };
        let group = &self.values[start..end];
        let from = start + group.partition_point(|v| *v < lower);
        let to = start + group.partition_point(|v| *v <= upper);
        (from, to.max(from))
    }
}

/// A left batch with its counts appended.
fn with_counts(batch: &RecordBatch, index: &RightIndex, spec: &JoinSpec, schema: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let keys = evaluate(&spec.left_keys, batch)?;
    let rows: Rows = index.converter.convert_columns(&keys)?;
    let lower = bounds(&spec.lower, batch, true)?;
    let upper = bounds(&spec.upper, batch, false)?;
    let mut joined_rows = Vec::with_capacity(n);
    let mut matches: Vec<Vec<i64>> = vec![Vec::with_capacity(n); spec.counted.len()];
    for row in 0..n {
        let (from, to) = match (lower[row], upper[row]) {
            (Some(low), Some(high)) if !keys.iter().any(|k| k.is_null(row)) => {
                index.matches(rows.row(row).as_ref(), low, high)
            }
            _ => (0, 0),
        };
        let found = (to - from) as i64;
        joined_rows.push(if spec.keep_unmatched { found.max(1) } else { found });
        for (n, before) in index.not_null_before.iter().enumerate() {
            matches[n].push(i64::from(before[to] - before[from]));
        }
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(joined_rows)));
    columns.extend(matches.into_iter().map(|m| Arc::new(Int64Array::from(m)) as ArrayRef));
    let counted = RecordBatch::try_new(schema.clone(), columns)?;
    if spec.keep_unmatched {
        return Ok(counted);
    }
    let matched: BooleanArray = counted
        .column(batch.num_columns())
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .map(|rows| Some(*rows > 0))
        .collect();
    Ok(filter_record_batch(&counted, &matched)?)
}

/// Per row, the tightest of `bounds` as an inclusive bound (`None` when one is NULL); no bound
/// at all is unbounded.
fn bounds(bounds: &[Bound], batch: &RecordBatch, lower: bool) -> Result<Vec<Option<i64>>> {
    let unbounded = if lower { i64::MIN } else { i64::MAX };
    let mut tightest = vec![Some(unbounded); batch.num_rows()];
    for bound in bounds {
        let values = as_i64(&bound.value.evaluate(batch)?.into_array(batch.num_rows())?)?;
        for (row, value) in values.iter().enumerate() {
            tightest[row] = match (tightest[row], value) {
                (Some(current), Some(v)) => Some(match (lower, bound.inclusive) {
                    (true, true) => current.max(v),
                    (true, false) => current.max(v.saturating_add(1)),
                    (false, true) => current.min(v),
                    (false, false) => current.min(v.saturating_sub(1)),
                }),
                _ => None,
            };
        }
    }
    Ok(tightest)
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

/// Timestamps and integers as the 64-bit integers they order by.
fn as_i64(array: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(array, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}
