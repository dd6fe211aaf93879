//! Bounds of a join, read from its conditions: `t.ts BETWEEN c.ts AND c.ts + INTERVAL '10
//! minutes'`, `t.ts >= c.ts`, `c.ts + INTERVAL '1 minute' > t.ts`, ... each read as bounds on
//! one column of one side by an expression of the other side, with the column alone on the left
//! (`col + a op e` becomes `col op e - a`). The streaming analysis turns them into offsets of the
//! joined stream's event time (how long a windowed row waits, how long joined rows are kept);
//! the counting join evaluates them per left row.

use datafusion::common::Column;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

/// One bound on a column: `column >= value` (lower, inclusive), `column < value`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBound {
    /// The bounded column.
    pub column: Column,
    /// A lower bound (`>`, `>=`) rather than an upper one (`<`, `<=`).
    pub lower: bool,
    /// `>=`/`<=` rather than `>`/`<`.
    pub inclusive: bool,
    /// The bound, an expression of the other side.
    pub value: Expr,
}

/// The bounds one conjunct of a join condition sets (a `BETWEEN` sets two), when it compares a
/// column `bounded` accepts — alone, or plus or minus a literal — with an expression `value`
/// accepts; `None` for any other conjunct.
pub fn bounds_of(
    conjunct: &Expr,
    bounded: &dyn Fn(&Column) -> bool,
    value: &dyn Fn(&Expr) -> bool,
) -> Option<Vec<ColumnBound>> {
    match conjunct {
        Expr::Between(between) if !between.negated => {
            let low = compare(&between.expr, Operator::GtEq, &between.low, bounded, value)?;
            let high = compare(&between.expr, Operator::LtEq, &between.high, bounded, value)?;
            Some(vec![low, high])
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            compare(left, *op, right, bounded, value).map(|bound| vec![bound])
        }
        _ => None,
    }
}

/// `a op b` as a bound on a column, the column taken from whichever side holds it.
fn compare(
    a: &Expr,
    op: Operator,
    b: &Expr,
    bounded: &dyn Fn(&Column) -> bool,
    value: &dyn Fn(&Expr) -> bool,
) -> Option<ColumnBound> {
    if let Some((column, moved)) = column_side(a, b, bounded)
        && value(&moved)
    {
        return bound(column, op, moved);
    }
    let (column, moved) = column_side(b, a, bounded)?;
    (value(&moved)).then_some(())?;
    bound(column, op.swap()?, moved)
}

/// When `side` is a bounded column, maybe plus or minus a literal: the column and `other` with
/// the literal moved across (`col + a op e` is `col op e - a`).
fn column_side(side: &Expr, other: &Expr, bounded: &dyn Fn(&Column) -> bool) -> Option<(Column, Expr)> {
    match side {
        Expr::Column(c) if bounded(c) => Some((c.clone(), other.clone())),
        Expr::Cast(cast) => column_side(&cast.expr, other, bounded),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if matches!(right.as_ref(), Expr::Literal(..)) => {
            let inverse = match op {
                Operator::Plus => Operator::Minus,
                Operator::Minus => Operator::Plus,
                _ => return None,
            };
            let moved = Expr::BinaryExpr(BinaryExpr::new(Box::new(other.clone()), inverse, right.clone()));
            column_side(left, &moved, bounded)
        }
        _ => None,
    }
}

fn bound(column: Column, op: Operator, value: Expr) -> Option<ColumnBound> {
    let (lower, inclusive) = match op {
        Operator::GtEq => (true, true),
        Operator::Gt => (true, false),
        Operator::LtEq => (false, true),
        Operator::Lt => (false, false),
        _ => return None,
    };
    Some(ColumnBound {
        column,
        lower,
        inclusive,
        value,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn on_t_ts(c: &Column) -> bool {
        c.name == "ts" && c.relation.as_ref().is_some_and(|r| r.table() == "t")
    }

    fn of_c(e: &Expr) -> bool {
        e.column_refs()
            .iter()
            .all(|c| c.relation.as_ref().is_some_and(|r| r.table() == "c"))
    }

    #[test]
    fn between_and_comparisons_either_way_round_bound_the_column() {
        let between = col("t.ts").between(col("c.ts"), col("c.ts") + lit(10));
        let found = bounds_of(&between, &on_t_ts, &of_c).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found[0].lower && found[0].inclusive && !found[1].lower);
        assert_eq!(found[1].value, col("c.ts") + lit(10));

        // c.ts > t.ts + 5  is  t.ts < c.ts - 5
        let flipped = col("c.ts").gt(col("t.ts") + lit(5));
        let found = bounds_of(&flipped, &on_t_ts, &of_c).unwrap();
        assert_eq!(
            found,
            [ColumnBound {
                column: Column::from_qualified_name("t.ts"),
                lower: false,
                inclusive: false,
                value: col("c.ts") - lit(5),
            }]
        );
    }

    #[test]
    fn other_conditions_are_not_bounds() {
        assert!(bounds_of(&col("t.user").eq(col("c.user")), &on_t_ts, &of_c).is_none());
        assert!(bounds_of(&col("t.ts").gt(col("t.other")), &on_t_ts, &of_c).is_none());
        assert!(bounds_of(&col("t.ts").not_between(col("c.ts"), col("c.ts")), &on_t_ts, &of_c).is_none());
    }
}
