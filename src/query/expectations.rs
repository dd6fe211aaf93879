//! Data-quality expectations as a pass-through operator on the job's output stream.
//!
//! In the logical plan the job's SQL is wrapped in an [`ExpectationsNode`], so the whole plan
//! — SQL, expectations and the sink a deltalake or Parquet writer adds on top — is optimized
//! once; [`ExpectationsPlanner`] turns the node into [`ExpectationsExec`] during physical
//! planning. [`ExpectationsExec`] evaluates every rule on each batch as it flows to the sink: `drop` and
//! `fail` violations are kept out of the output and collected for the quarantine table, `warn`
//! violations are only counted. When the last partition ends with any `fail` violation, the
//! stream ends in an error, so the sink never commits. Counts live in a shared
//! [`QualityReport`] the runner reads afterwards (and the progress display reads meanwhile).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::kernels::boolean::{not, or};
use arrow::compute::{filter_record_batch, is_not_null};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

use crate::config::pipeline::OnViolation;

/// A rule in logical form: what [`ExpectationsNode`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct LogicalRule {
    /// Its name from the pipeline file.
    pub name: String,
    /// What a violation does.
    pub on_violation: OnViolation,
    /// The condition good rows satisfy, type-coerced against the job's output schema.
    pub condition: Expr,
}

/// The job's plan with its expectations, as a logical plan node.
#[derive(Debug, Clone)]
pub struct ExpectationsNode {
    input: LogicalPlan,
    rules: Vec<LogicalRule>,
    report: Arc<QualityReport>,
}

impl ExpectationsNode {
    /// The logical plan of `input` checked by `rules`, counting into `report`.
    pub fn plan(input: LogicalPlan, rules: Vec<LogicalRule>, report: Arc<QualityReport>) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(ExpectationsNode { input, rules, report }),
        })
    }
}

// Plans compare and hash nodes; the shared report is identity, not value.
impl PartialEq for ExpectationsNode {
    fn eq(&self, other: &Self) -> bool {
        self.input == other.input && self.rules == other.rules && Arc::ptr_eq(&self.report, &other.report)
    }
}

impl Eq for ExpectationsNode {}

impl PartialOrd for ExpectationsNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match self.input.partial_cmp(&other.input) {
            Some(std::cmp::Ordering::Equal) => self.rules.partial_cmp(&other.rules),
            ordering => ordering,
        }
    }
}

impl std::hash::Hash for ExpectationsNode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.rules.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for ExpectationsNode {
    fn name(&self) -> &str {
        "Expectations"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        self.rules.iter().map(|r| r.condition.clone()).collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<_> = self
            .rules
            .iter()
            .map(|r| format!("{}:{}", r.name, r.on_violation.as_str()))
            .collect();
        write!(f, "Expectations: [{}]", names.join(", "))
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| DataFusionError::Internal("Expectations needs its input".into()))?;
        let rules = self
            .rules
            .iter()
            .zip(exprs)
            .map(|(rule, condition)| LogicalRule {
                condition,
                ..rule.clone()
            })
            .collect();
        Ok(ExpectationsNode {
            input,
            rules,
            report: self.report.clone(),
        })
    }
}

/// Plans [`ExpectationsNode`] into [`ExpectationsExec`].
#[derive(Debug)]
pub struct ExpectationsPlanner;

#[async_trait]
impl ExtensionPlanner for ExpectationsPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<ExpectationsNode>() else {
            return Ok(None);
        };
        let schema = logical_inputs[0].schema();
        let rules = node
            .rules
            .iter()
            .map(|rule| {
                Ok(Rule {
                    name: rule.name.clone(),
                    on_violation: rule.on_violation,
                    condition: planner.create_physical_expr(&rule.condition, schema, session, planning_ctx)?,
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Some(Arc::new(ExpectationsExec::new(
            physical_inputs[0].clone(),
            rules,
            node.report.clone(),
        ))))
    }
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name from the pipeline file.
    pub name: String,
    /// What a violation does.
    pub on_violation: OnViolation,
    /// The condition good rows satisfy.
    pub condition: Arc<dyn PhysicalExpr>,
}

/// Violating rows of one batch, with the rules each row broke.
#[derive(Debug, Clone)]
pub struct QuarantinedRows {
    /// The rows, in the job's output schema.
    pub rows: RecordBatch,
    /// For each row, the names of the `drop`/`fail` rules it broke, comma-separated.
    pub rules: Vec<String>,
}

/// What the expectations saw; shared between the operator and the runner.
#[derive(Debug, Default)]
pub struct QualityReport {
    /// Rows that reached the operator.
    pub rows_in: AtomicU64,
    /// Rows passed on to the sink (shared with the progress display).
    pub rows_out: Arc<AtomicU64>,
    /// Violations per rule, in rule order.
    pub violations: Mutex<Vec<u64>>,
    /// Rows kept out of the sink.
    pub quarantined: Mutex<Vec<QuarantinedRows>>,
}

impl QualityReport {
    /// Violations of each rule so far.
    pub fn violation_counts(&self) -> Vec<u64> {
        self.violations.lock().expect("report lock").clone()
    }

    /// Every quarantined batch so far.
    pub fn take_quarantined(&self) -> Vec<QuarantinedRows> {
        std::mem::take(&mut *self.quarantined.lock().expect("report lock"))
    }
}

/// The operator: its input is the job's physical plan.
#[derive(Debug)]
pub struct ExpectationsExec {
    input: Arc<dyn ExecutionPlan>,
    rules: Arc<Vec<Rule>>,
    report: Arc<QualityReport>,
    /// Partitions still running; the last one to end checks for `fail` violations.
    running: Arc<AtomicUsize>,
}

impl ExpectationsExec {
    /// Wraps `input` with the rules, reporting into `report`. Execute each partition once.
    pub fn new(input: Arc<dyn ExecutionPlan>, rules: Vec<Rule>, report: Arc<QualityReport>) -> Self {
        *report.violations.lock().expect("report lock") = vec![0; rules.len()];
        let partitions = input.properties().partitioning.partition_count();
        Self {
            input,
            rules: Arc::new(rules),
            report,
            running: Arc::new(AtomicUsize::new(partitions)),
        }
    }
}

impl DisplayAs for ExpectationsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<_> = self
            .rules
            .iter()
            .map(|r| format!("{}:{}", r.name, r.on_violation.as_str()))
            .collect();
        write!(f, "ExpectationsExec: [{}]", names.join(", "))
    }
}

impl ExecutionPlan for ExpectationsExec {
    fn name(&self) -> &str {
        "ExpectationsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for rule in self.rules.iter() {
            if f(&rule.condition)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("ExpectationsExec needs its input".into()))?;
        Ok(Arc::new(ExpectationsExec::new(
            input,
            self.rules.as_ref().clone(),
            self.report.clone(),
        )))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let rules = self.rules.clone();
        let report = self.report.clone();
        let running = self.running.clone();
        let checked = input.map(move |batch| check_batch(&batch?, &rules, &report));
        let end_check = {
            let rules = self.rules.clone();
            let report = self.report.clone();
            futures::stream::once(async move {
                let last = running.fetch_sub(1, Ordering::AcqRel) == 1;
                failure_if_last(last, &rules, &report)
            })
            .filter_map(|result| async move { result.err().map(Err) })
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            checked.chain(end_check),
        )))
    }
}

/// Evaluates the rules on one batch, records violations and returns the rows to keep.
fn check_batch(batch: &RecordBatch, rules: &[Rule], report: &QualityReport) -> DfResult<RecordBatch> {
    report.rows_in.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
    let mut violated_per_rule: Vec<BooleanArray> = Vec::with_capacity(rules.len());
    let mut excluded: Option<BooleanArray> = None;
    for rule in rules {
        let result = rule.condition.evaluate(batch)?.into_array(batch.num_rows())?;
        let passed = result
            .as_boolean_opt()
            .ok_or_else(|| DataFusionError::Plan(format!("expectation `{}` is not a boolean condition", rule.name)))?;
        // NULL counts as a violation: a rule must be provably true.
        let violated = not(&and_not_null(passed))?;
        if rule.on_violation != OnViolation::Warn {
            excluded = Some(match excluded {
                Some(previous) => or(&previous, &violated)?,
                None => violated.clone(),
            });
        }
        violated_per_rule.push(violated);
    }
    {
        let mut counts = report.violations.lock().expect("report lock");
        for (count, violated) in counts.iter_mut().zip(&violated_per_rule) {
            *count += violated.true_count() as u64;
        }
    }
    let kept = match excluded {
        Some(excluded) if excluded.true_count() > 0 => {
            let bad_rows = filter_record_batch(batch, &excluded)?;
            let rule_names = (0..batch.num_rows())
                .filter(|&row| excluded.value(row))
                .map(|row| {
                    rules
                        .iter()
                        .zip(&violated_per_rule)
                        .filter(|(rule, violated)| rule.on_violation != OnViolation::Warn && violated.value(row))
                        .map(|(rule, _)| rule.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            report.quarantined.lock().expect("report lock").push(QuarantinedRows {
                rows: bad_rows,
                rules: rule_names,
            });
            filter_record_batch(batch, &not(&excluded)?)?
        }
        _ => batch.clone(),
    };
    report.rows_out.fetch_add(kept.num_rows() as u64, Ordering::Relaxed);
    Ok(kept)
}

/// `passed AND passed IS NOT NULL`, without nulls.
fn and_not_null(passed: &BooleanArray) -> BooleanArray {
    if passed.null_count() == 0 {
        return passed.clone();
    }
    let valid = is_not_null(passed).expect("is_not_null on a boolean array");
    let values = BooleanArray::new(passed.values().clone(), None);
    arrow::compute::kernels::boolean::and(&values, &valid).expect("equal lengths")
}

/// The error that stops the sink when `fail` rules were violated.
fn failure_if_last(last: bool, rules: &[Rule], report: &QualityReport) -> DfResult<()> {
    if !last {
        return Ok(());
    }
    let counts = report.violation_counts();
    let failed: Vec<String> = rules
        .iter()
        .zip(counts)
        .filter(|(rule, count)| rule.on_violation == OnViolation::Fail && *count > 0)
        .map(|(rule, count)| format!("`{}` ({count} rows)", rule.name))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(DataFusionError::Execution(format!(
            "{QUALITY_FAILURE_MARKER}: {}",
            failed.join(", ")
        )))
    }
}

/// Starts the message of the error that aborts a write on `fail` violations.
pub const QUALITY_FAILURE_MARKER: &str = "data-quality expectations failed";

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    use datafusion::scalar::ScalarValue;

    use super::*;

    fn positive(name: &str, on_violation: OnViolation) -> Rule {
        let condition = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("n", 0)),
            Operator::Gt,
            Arc::new(Literal::new(ScalarValue::Int64(Some(0)))),
        ));
        Rule {
            name: name.into(),
            on_violation,
            condition,
        }
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![Some(1), Some(-1), None, Some(3)]))],
        )
        .unwrap()
    }

    #[test]
    fn drop_rules_quarantine_false_and_null_rows_and_warn_rules_only_count() {
        let report = QualityReport::default();
        let rules = vec![
            positive("positive", OnViolation::Drop),
            positive("warned", OnViolation::Warn),
        ];
        *report.violations.lock().unwrap() = vec![0, 0];
        let kept = check_batch(&batch(), &rules, &report).unwrap();
        assert_eq!(kept.num_rows(), 2);
        assert_eq!(report.violation_counts(), vec![2, 2]);
        let quarantined = report.take_quarantined();
        assert_eq!(quarantined[0].rows.num_rows(), 2);
        assert_eq!(quarantined[0].rules, vec!["positive", "positive"]);
        assert_eq!(report.rows_out.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn fail_rules_error_only_at_the_end_of_the_last_partition() {
        let report = QualityReport::default();
        let rules = vec![positive("must_be_positive", OnViolation::Fail)];
        *report.violations.lock().unwrap() = vec![0];
        check_batch(&batch(), &rules, &report).unwrap();
        assert!(failure_if_last(false, &rules, &report).is_ok());
        let err = failure_if_last(true, &rules, &report).unwrap_err().to_string();
        assert!(
            err.contains(QUALITY_FAILURE_MARKER) && err.contains("`must_be_positive` (2 rows)"),
            "{err}"
        );
    }
}
