//! An optimizer rule: `timestamp ± INTERVAL '…'` with a fixed length (no months; no days unless
//! the timestamp is UTC or has no zone) becomes `timestamp ± duration`.
//!
//! Arrow adds an interval to a zoned timestamp through the calendar, converting every value to
//! a local date-time and back (it has to: a day or a month is not a fixed length in every
//! zone). A duration is plain integer arithmetic, the same result for a fixed length, and over
//! ten times faster — which matters where the addition runs per candidate pair, as in the
//! bound of an interval join (`t.ts BETWEEN c.ts AND c.ts + INTERVAL '10 minutes'`).

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::BinaryExpr;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::scalar::ScalarValue;

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// An `INTERVAL` (or duration) literal's length in microseconds, when it has a fixed one (no
/// months). The one reader of interval literals: window sizes, join bounds and the rewrite below.
pub fn interval_micros(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else { return None };
    let nanos = match value {
        ScalarValue::DurationSecond(Some(v)) => i128::from(*v) * 1_000_000_000,
        ScalarValue::DurationMillisecond(Some(v)) => i128::from(*v) * 1_000_000,
        ScalarValue::DurationMicrosecond(Some(v)) => i128::from(*v) * 1_000,
        ScalarValue::DurationNanosecond(Some(v)) => i128::from(*v),
        other => fixed_nanos(other, true)?,
    };
    i64::try_from(nanos / 1000).ok()
}

/// Rewrites fixed-length interval arithmetic on timestamps to durations.
#[derive(Debug, Default)]
pub struct FixedIntervalsAsDurations;

impl OptimizerRule for FixedIntervalsAsDurations {
    fn name(&self) -> &str {
        "fixed_intervals_as_durations"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        // Expressions of a node refer to its inputs' columns (a join's filter to both sides).
        let mut schema = DFSchema::empty();
        for input in plan.inputs() {
            schema.merge(input.schema());
        }
        schema.merge(plan.schema());
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| as_duration(e, &schema))?;
            Ok(if rewritten.transformed {
                rewritten.update_data(|e| name.restore(e))
            } else {
                rewritten
            })
        })
    }
}

/// `ts ± interval` or `interval + ts` as a duration, when the interval has a fixed length for
/// the timestamp's zone.
fn as_duration(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !matches!(op, Operator::Plus | Operator::Minus) {
        return Ok(Transformed::no(expr));
    }
    let (timestamp, interval, interval_on_left) = match (left.as_ref(), right.as_ref()) {
        (other, Expr::Literal(value, _)) => (other, value, false),
        (Expr::Literal(value, _), other) if *op == Operator::Plus => (other, value, true),
        _ => return Ok(Transformed::no(expr)),
    };
    let Ok(DataType::Timestamp(unit, zone)) = timestamp.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    let fixed_days = zone
        .as_deref()
        .is_none_or(|z| matches!(z, "UTC" | "utc" | "Z" | "+00:00" | "Etc/UTC"));
    let Some(nanos) = fixed_nanos(interval, fixed_days) else {
        return Ok(Transformed::no(expr));
    };
    let Some(duration) = duration_in(unit, nanos) else {
        return Ok(Transformed::no(expr));
    };
    let duration = Expr::Literal(duration, None);
    let (left, right) = if interval_on_left {
        (duration, timestamp.clone())
    } else {
        (timestamp.clone(), duration)
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        Box::new(left),
        *op,
        Box::new(right),
    ))))
}

/// An interval literal's length in nanoseconds, if it has one: no months, and days only where
/// every day is 24 hours.
fn fixed_nanos(interval: &ScalarValue, fixed_days: bool) -> Option<i128> {
    let (months, days, nanos) = match interval {
        ScalarValue::IntervalMonthDayNano(Some(v)) => (v.months, v.days, i128::from(v.nanoseconds)),
        ScalarValue::IntervalDayTime(Some(v)) => (0, v.days, i128::from(v.milliseconds) * 1_000_000),
        _ => return None,
    };
    if months != 0 || (days != 0 && !fixed_days) {
        return None;
    }
    Some(i128::from(days) * NANOS_PER_DAY + nanos)
}

/// A duration literal in `unit`, if `nanos` is a whole number of them.
fn duration_in(unit: TimeUnit, nanos: i128) -> Option<ScalarValue> {
    let per_unit: i128 = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    if nanos % per_unit != 0 {
        return None;
    }
    let value = i64::try_from(nanos / per_unit).ok()?;
    Some(match unit {
        TimeUnit::Second => ScalarValue::DurationSecond(Some(value)),
        TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(value)),
        TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(value)),
        TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(value)),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use crate::query::new_session;

    async fn run(sql: &str) -> (String, String) {
        let ctx = new_session();
        let frame = ctx.sql(sql).await.unwrap();
        let plan = format!("{}", frame.clone().into_optimized_plan().unwrap().display_indent());
        let rows = pretty_format_batches(&frame.collect().await.unwrap())
            .unwrap()
            .to_string();
        (plan, rows)
    }

    #[tokio::test]
    async fn fixed_intervals_on_utc_timestamps_become_durations_with_the_same_result() {
        let (plan, rows) = run(
            "SELECT ts + INTERVAL '10 minutes' AS later, ts - INTERVAL '1 day 2 hours' AS earlier, \
                    INTERVAL '1 second' + ts AS next \
             FROM (SELECT arrow_cast(TIMESTAMP '2024-03-31 00:30:00', 'Timestamp(Microsecond, Some(\"UTC\"))') AS ts)",
        )
        .await;
        assert!(plan.contains("Duration"), "{plan}");
        assert!(!plan.contains("IntervalMonthDayNano"), "{plan}");
        assert!(rows.contains("2024-03-31T00:40:00Z"), "{rows}");
        assert!(rows.contains("2024-03-29T22:30:00Z"), "{rows}");
        assert!(rows.contains("2024-03-31T00:30:01Z"), "{rows}");
    }

    #[tokio::test]
    async fn months_and_days_in_other_zones_stay_calendar_arithmetic() {
        let (plan, rows) = run(
            "SELECT ts + INTERVAL '1 month' AS a, zoned + INTERVAL '1 day' AS b, zoned + INTERVAL '1 hour' AS c \
             FROM (SELECT arrow_cast(TIMESTAMP '2024-01-31 00:00:00', 'Timestamp(Microsecond, Some(\"UTC\"))') AS ts, \
                          arrow_cast(TIMESTAMP '2024-03-30 12:00:00', 'Timestamp(Microsecond, Some(\"Europe/Paris\"))') AS zoned)",
        )
        .await;
        assert!(plan.contains("IntervalMonthDayNano"), "{plan}");
        // Across the switch to summer time a calendar day is 23 hours.
        assert!(rows.contains("2024-02-29T00:00:00Z"), "{rows}");
        assert!(rows.contains("2024-03-31T12:00:00+02:00"), "{rows}");
        assert!(rows.contains("2024-03-30T13:00:00+01:00"), "{rows}");
    }
}
