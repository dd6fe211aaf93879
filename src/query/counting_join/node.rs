//! The logical node a counted join becomes, and its planner.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DFSchemaRef, Result};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};

use super::exec::{Bound, CountingJoinExec, JoinSpec};
use super::{MATCHES, ROWS, Range};

/// Left rows, each with how many rows of the join it stands for and, per counted right column,
/// its matches where that column is not null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CountingJoin {
    left: LogicalPlan,
    right: LogicalPlan,
    on: Vec<(Expr, Expr)>,
    range: Range,
    counted: Vec<Expr>,
    keep_unmatched: bool,
    schema: DFSchemaRef,
}

impl PartialOrd for CountingJoin {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        if self == other {
            return Some(std::cmp::Ordering::Equal);
        }
        // Unequal nodes over the same inputs have no order.
        match self.left.partial_cmp(&other.left) {
            Some(std::cmp::Ordering::Equal) => self.right.partial_cmp(&other.right),
            ordering => ordering,
        }
        .filter(|o| o.is_ne())
    }
}

impl CountingJoin {
    pub(super) fn try_new(
        left: LogicalPlan,
        right: LogicalPlan,
        on: Vec<(Expr, Expr)>,
        range: Range,
        counted: Vec<Expr>,
        keep_unmatched: bool,
    ) -> Result<Self> {
        let mut fields = vec![Field::new(ROWS, DataType::Int64, false)];
        fields.extend((0..counted.len()).map(|n| Field::new(format!("{MATCHES}{n}"), DataType::Int64, false)));
        let counts = DFSchema::from_unqualified_fields(fields.into(), Default::default())?;
        let schema = Arc::new(left.schema().join(&counts)?);
        Ok(Self {
            left,
            right,
            on,
            range,
            counted,
            keep_unmatched,
            schema,
        })
    }
}

impl UserDefinedLogicalNodeCore for CountingJoin {
    fn name(&self) -> &str {
        "CountingJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// In order: the `on` pairs (left, right), the lower bounds, the upper bounds, the counted
    /// columns, and the bounded column when there is one.
    fn expressions(&self) -> Vec<Expr> {
        let mut exprs: Vec<Expr> = self.on.iter().flat_map(|(l, r)| [l.clone(), r.clone()]).collect();
        exprs.extend(self.range.lower.iter().map(|(e, _)| e.clone()));
        exprs.extend(self.range.upper.iter().map(|(e, _)| e.clone()));
        exprs.extend(self.counted.iter().cloned());
        exprs.extend(self.range.column.iter().map(|c| Expr::Column(c.clone())));
        exprs
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
        let bound = |(e, inclusive): &(Expr, bool), op: &str| format!("{op}{} {e}", if *inclusive { "=" } else { "" });
        let mut bounds: Vec<String> = self.range.lower.iter().map(|b| bound(b, ">")).collect();
        bounds.extend(self.range.upper.iter().map(|b| bound(b, "<")));
        let column = self.range.column.as_ref().map(|c| c.to_string()).unwrap_or_default();
        write!(
            f,
            "CountingJoin: {} on [{}] where {column} [{}], counting [{}]",
            if self.keep_unmatched { "left" } else { "inner" },
            on.join(", "),
            bounds.join(", "),
            self.counted
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let [left, right]: [LogicalPlan; 2] = inputs
            .try_into()
            .map_err(|_| DataFusionError::Internal("CountingJoin has two inputs".into()))?;
        let mut exprs = exprs.into_iter();
        let mut next = || {
            exprs
                .next()
                .ok_or_else(|| DataFusionError::Internal("CountingJoin expressions".into()))
        };
        let on = (0..self.on.len())
            .map(|_| Ok((next()?, next()?)))
            .collect::<Result<Vec<_>>>()?;
        let mut bounds = |of: &[(Expr, bool)]| {
            of.iter()
                .map(|(_, inclusive)| Ok((next()?, *inclusive)))
                .collect::<Result<Vec<_>>>()
        };
        let lower = bounds(&self.range.lower)?;
        let upper = bounds(&self.range.upper)?;
        let counted = (0..self.counted.len()).map(|_| next()).collect::<Result<Vec<_>>>()?;
        let column = match &self.range.column {
            Some(_) => match next()? {
                Expr::Column(c) => Some(c),
                other => {
                    return Err(DataFusionError::Internal(format!(
                        "CountingJoin bounds a column, not {other}"
                    )));
                }
            },
            None => None,
        };
        let range = Range { column, lower, upper };
        Self::try_new(left, right, on, range, counted, self.keep_unmatched)
    }
}

/// Plans [`CountingJoin`] into [`CountingJoinExec`].
#[derive(Debug)]
pub struct CountingJoinPlanner;

#[async_trait]
impl ExtensionPlanner for CountingJoinPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<CountingJoin>() else {
            return Ok(None);
        };
        let (left, right) = (logical_inputs[0].schema(), logical_inputs[1].schema());
        let on_left = |e: &Expr| planner.create_physical_expr(e, left, session, planning_ctx);
        let on_right = |e: &Expr| planner.create_physical_expr(e, right, session, planning_ctx);
        let bounds = |of: &[(Expr, bool)]| {
            of.iter()
                .map(|(e, inclusive)| {
                    Ok(Bound {
                        value: on_left(e)?,
                        inclusive: *inclusive,
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        let spec = JoinSpec {
            left_keys: node.on.iter().map(|(l, _)| on_left(l)).collect::<Result<_>>()?,
            right_keys: node.on.iter().map(|(_, r)| on_right(r)).collect::<Result<_>>()?,
            range_column: node
                .range
                .column
                .as_ref()
                .map(|c| on_right(&Expr::Column(c.clone())))
                .transpose()?,
            lower: bounds(&node.range.lower)?,
            upper: bounds(&node.range.upper)?,
            counted: node.counted.iter().map(on_right).collect::<Result<_>>()?,
            keep_unmatched: node.keep_unmatched,
        };
        let schema = Arc::new(node.schema.as_arrow().clone());
        Ok(Some(Arc::new(CountingJoinExec::new(
            physical_inputs[0].clone(),
            physical_inputs[1].clone(),
            Arc::new(spec),
            schema,
        ))))
    }
}
