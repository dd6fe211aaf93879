//! What a streaming query is, read from its SQL: planned once against empty tables, its plan
//! tells whether it aggregates, which window it uses, which streams it joins and within which
//! time bounds. The engine sizes state and decides when results are final from this.
//!
//! A stream-stream join must bound the joined stream's event time by the windowed stream's,
//! in its `ON` clause, e.g. `t."timestamp" BETWEEN c."timestamp" AND c."timestamp" + INTERVAL
//! '10 minutes'` (or with `>=`/`<=`): then a windowed row is complete once the joined stream's
//! watermark passes its upper bound, and joined rows older than the lower bound can be dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, JoinType, LogicalPlan, Operator};
use datafusion::prelude::SessionContext;

use super::aggregate::SplitPlan;
use super::intervals::interval_micros;
use super::join_bounds::bounds_of;
use super::new_session;
use super::window::{WindowSpec, WindowTables, WindowUse, windowed_schema};
use crate::config::stream_pipeline::{StreamOutput, StreamPipeline};
use crate::error::{Error, Result};

/// How a query is computed across micro-batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKind {
    /// No aggregate: each micro-batch's rows go straight through.
    Stateless,
    /// An aggregate without a window: one state row per group, kept for good; its sinks
    /// receive the groups that changed (update mode).
    Global,
    /// An aggregate over a window: state per window until the watermark passes its end.
    Windowed {
        /// The window.
        window: WindowUse,
        /// The stream joined to the windowed one, with its time bounds.
        join: Option<JoinBound>,
    },
}

impl QueryKind {
    /// A short description for `list` and `validate`.
    pub fn describe(&self) -> String {
        match self {
            QueryKind::Stateless => "rows as they come".into(),
            QueryKind::Global => "running aggregate (update mode)".into(),
            QueryKind::Windowed { window, join } => {
                let micros = |m: i64| humantime::format_duration(std::time::Duration::from_micros(m.unsigned_abs()));
                let window_text = match &window.spec {
                    WindowSpec::Tumble { size } => format!("TUMBLE({}, {})", window.source, micros(*size)),
                    WindowSpec::Hop { size, slide } => {
                        format!("HOP({}, {}, {})", window.source, micros(*size), micros(*slide))
                    }
                    WindowSpec::Session { gap, keys } => {
                        format!("SESSION({}, {}, {})", window.source, micros(*gap), keys.join(", "))
                    }
                };
                match join {
                    None => window_text,
                    Some(join) => format!(
                        "{window_text} joined with {} within [{}{}, +{}]",
                        join.source,
                        if join.lower < 0 { "-" } else { "+" },
                        micros(join.lower),
                        micros(join.upper)
                    ),
                }
            }
        }
    }
}

/// A time-bounded stream-stream join: `joined.time ∈ [driving.time + lower, driving.time + upper]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinBound {
    /// The joined source.
    pub source: String,
    /// Lower bound offset, microseconds.
    pub lower: i64,
    /// Upper bound offset, microseconds.
    pub upper: i64,
}

/// A query, understood.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// How it is computed.
    pub kind: QueryKind,
    /// Plain tables it reads: sources and earlier outputs.
    pub reads: BTreeSet<String>,
    /// Its result schema.
    pub schema: SchemaRef,
    /// Conditions on the windowed source's own columns that the query applies before anything
    /// else (its `WHERE` on that source): rows failing them never reach a window or a join.
    pub source_filter: Option<Expr>,
    /// The schema of its aggregate's accumulator states (what snapshots hold), if it aggregates.
    pub state_schema: Option<SchemaRef>,
}

/// A session holding an empty table for every source and earlier output, and the window
/// functions; what queries are planned in for analysis.
pub fn planning_session(
    pipeline: &StreamPipeline,
    outputs: &HashMap<String, SchemaRef>,
    tables: &Arc<WindowTables>,
) -> SessionContext {
    let ctx = new_session();
    tables.register(&ctx);
    let empty = |schema: SchemaRef| Arc::new(MemTable::try_new(schema, vec![vec![]]).expect("empty table"));
    for source in &pipeline.sources {
        ctx.register_table(source.name.as_str(), empty(source.schema.clone()))
            .expect("fresh session");
    }
    for (name, schema) in outputs {
        ctx.register_table(name.as_str(), empty(schema.clone()))
            .expect("fresh session");
    }
    ctx
}

/// Analyses an output's SQL; `outputs` are the schemas of the outputs before it.
pub async fn analyse(
    pipeline: &StreamPipeline,
    output: &StreamOutput,
    outputs: &HashMap<String, SchemaRef>,
) -> Result<Analysis> {
    let sql_error = |message: String| Error::Sql {
        job: pipeline.name.clone(),
        file: output.sql_path.clone(),
        message,
        cause: None,
    };
    let df_error = |e: datafusion::error::DataFusionError| Error::sql(&pipeline.name, &output.sql_path, e);
    let schemas = pipeline
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.schema.clone()))
        .collect();
    let tables = Arc::new(WindowTables::new(schemas));
    let ctx = planning_session(pipeline, outputs, &tables);
    let df = ctx.sql(&output.sql).await.map_err(df_error)?;
    let plan = df.logical_plan().clone();
    let optimized = ctx.state().optimize(&plan).map_err(df_error)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let physical = df.create_physical_plan().await.map_err(df_error)?;
    let split = SplitPlan::split(&physical).map_err(df_error)?;

    let reads = plain_tables(&plan, pipeline, outputs);
    let windows = tables.seen();
    let kind = match (windows.as_slice(), split.is_some()) {
        ([], false) => QueryKind::Stateless,
        ([], true) => QueryKind::Global,
        ([window], true) => {
            let (start, end) = window.spec.columns();
            let groups = split.as_ref().map(SplitPlan::group_columns).unwrap_or_default();
            let grouped_by = |column: &str| groups.iter().any(|g| g == column || g.ends_with(&format!(".{column}")));
            if !grouped_by(start) || !grouped_by(end) {
                return Err(sql_error(format!(
                    "a query over {} must GROUP BY {start} and {end}",
                    describe(window)
                )));
            }
            if let WindowSpec::Session { keys, .. } = &window.spec
                && let Some(key) = keys.iter().find(|k| !grouped_by(k))
            {
                return Err(sql_error(format!(
                    "a query over SESSION(...) must GROUP BY its key `{key}` too"
                )));
            }
            let join = match reads.iter().collect::<Vec<_>>().as_slice() {
                [] => None,
                [joined] if pipeline.source(joined).is_some() => {
                    Some(join_bound(&plan, window, joined, pipeline).map_err(sql_error)?)
                }
                _ => {
                    return Err(sql_error(format!(
                        "a windowed query reads one windowed source and at most one other source, joined within \
                         time bounds; it reads {reads:?}"
                    )));
                }
            };
            QueryKind::Windowed {
                window: window.clone(),
                join,
            }
        }
        ([window], false) => {
            return Err(sql_error(format!(
                "{} is only useful with a GROUP BY over its window",
                describe(window)
            )));
        }
        (_, _) => return Err(sql_error("a query uses at most one window function".into())),
    };
    let source_filter = match &kind {
        QueryKind::Windowed { window, .. } => {
            let source = pipeline.source(&window.source).expect("window functions name sources");
            filter_on_window_scan(
                &optimized,
                &windowed_schema(&source.schema, &window.spec),
                &source.schema,
            )
        }
        _ => None,
    };
    let state_schema = split
        .as_ref()
        .map(SplitPlan::state_schema)
        .transpose()
        .map_err(df_error)?;
    Ok(Analysis {
        kind,
        reads,
        schema,
        source_filter,
        state_schema,
    })
}

/// The conjunction of the conditions the optimizer left directly on the window function's scan
/// that use only the source's own columns (not the window's start and end), unqualified.
fn filter_on_window_scan(plan: &LogicalPlan, windowed: &SchemaRef, source: &SchemaRef) -> Option<Expr> {
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::Filter(filter) = node
            && let LogicalPlan::TableScan(scan) = filter.input.as_ref()
            && scan.source.schema().fields() == windowed.fields()
        {
            for condition in split_conjunction(&filter.predicate) {
                let columns = condition.column_refs();
                if columns.iter().all(|c| source.field_with_name(&c.name).is_ok()) {
                    found.push(unqualified(condition.clone()));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found.into_iter().reduce(Expr::and)
}

fn unqualified(expr: Expr) -> Expr {
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(column) => Transformed::yes(Expr::Column(Column::new_unqualified(column.name))),
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .expect("renaming columns cannot fail")
}

fn describe(window: &WindowUse) -> String {
    match window.spec {
        WindowSpec::Tumble { .. } => format!("TUMBLE({}, ...)", window.source),
        WindowSpec::Hop { .. } => format!("HOP({}, ...)", window.source),
        WindowSpec::Session { .. } => format!("SESSION({}, ...)", window.source),
    }
}

/// Sources and outputs a plan scans by name (window functions are not plain tables).
fn plain_tables(
    plan: &LogicalPlan,
    pipeline: &StreamPipeline,
    outputs: &HashMap<String, SchemaRef>,
) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table();
            if pipeline.source(name).is_some() || outputs.contains_key(name) {
                tables.insert(name.to_string());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("visiting a plan does not fail");
    tables
}

/// The time bounds of the join between the windowed source and `joined`.
fn join_bound(
    plan: &LogicalPlan,
    window: &WindowUse,
    joined: &str,
    pipeline: &StreamPipeline,
) -> Result<JoinBound, String> {
    let driving_time = &pipeline
        .source(&window.source)
        .expect("analysed windows name sources")
        .event_time_column;
    let joined_time = &pipeline
        .source(joined)
        .expect("plain_tables returns known sources")
        .event_time_column;
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(join) = node {
            let (left, right) = (scan_qualifier(&join.left), scan_qualifier(&join.right));
            let sides = match (&left, &right) {
                (Some(l), Some(r)) if l.is_window && r.table == joined => {
                    Some((l.qualifier.clone(), r.qualifier.clone(), join.join_type))
                }
                (Some(l), Some(r)) if r.is_window && l.table == joined => {
                    let mirrored = match join.join_type {
                        JoinType::Left => JoinType::Right,
                        JoinType::Right => JoinType::Left,
                        other => other,
                    };
                    Some((r.qualifier.clone(), l.qualifier.clone(), mirrored))
                }
                _ => None,
            };
            if let Some((driving, joined_qualifier, join_type)) = sides {
                let mut conditions: Vec<Expr> = join.filter.iter().cloned().collect();
                conditions.extend(join.on.iter().map(|(l, r)| l.clone().eq(r.clone())));
                let terms = Terms {
                    driving: (&driving, driving_time),
                    joined: (&joined_qualifier, joined_time),
                };
                found = Some((join_type, bounds(&conditions, &terms)));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("visiting a plan does not fail");
    match found {
        None => Err(format!(
            "`{joined}` is read but not joined to the windowed source `{}`",
            window.source
        )),
        Some((JoinType::Inner | JoinType::Left, (Some(lower), Some(upper)))) if lower <= upper => Ok(JoinBound {
            source: joined.to_string(),
            lower,
            upper,
        }),
        Some((JoinType::Inner | JoinType::Left, _)) => Err(format!(
            "the join with `{joined}` must bound `{joined_time}` on both sides by the windowed source's `{driving_time}`, \
             e.g. `t.{joined_time} BETWEEN c.{driving_time} AND c.{driving_time} + INTERVAL '10 minutes'`"
        )),
        Some((join_type, _)) => Err(format!(
            "a {join_type} join of streams is not supported: join `{joined}` with INNER or LEFT JOIN from the windowed source"
        )),
    }
}

/// The qualifier columns of a join side carry, and the table under it.
struct Side {
    qualifier: String,
    table: String,
    is_window: bool,
}

fn scan_qualifier(plan: &LogicalPlan) -> Option<Side> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => scan_qualifier(&alias.input).map(|side| Side {
            qualifier: alias.alias.table().to_string(),
            ..side
        }),
        LogicalPlan::TableScan(scan) => {
            let table = scan.table_name.table().to_string();
            Some(Side {
                qualifier: table.clone(),
                is_window: table.ends_with("()"),
                table,
            })
        }
        LogicalPlan::Projection(p) => scan_qualifier(&p.input),
        LogicalPlan::Filter(f) => scan_qualifier(&f.input),
        _ => None,
    }
}

/// The qualified event-time columns of the two join sides.
struct Terms<'a> {
    driving: (&'a str, &'a str),
    joined: (&'a str, &'a str),
}

/// Lower and upper offsets of the joined time relative to the driving time, from conditions
/// bounding one by the other (either way round).
fn bounds(conditions: &[Expr], terms: &Terms) -> (Option<i64>, Option<i64>) {
    let (mut lower, mut upper): (Option<i64>, Option<i64>) = (None, None);
    let mut add = |is_lower: bool, offset: i64| {
        if is_lower {
            lower = Some(lower.map_or(offset, |l| l.max(offset)));
        } else {
            upper = Some(upper.map_or(offset, |u| u.min(offset)));
        }
    };
    for conjunct in conditions.iter().flat_map(split_conjunction) {
        let joined_by_driving = bounds_of(conjunct, &time_column(terms.joined), &|e| {
            time_term(e, terms.driving).is_some()
        });
        if let Some(found) = joined_by_driving {
            for bound in found {
                add(bound.lower, time_term(&bound.value, terms.driving).expect("checked"));
            }
            continue;
        }
        // driving >= joined + a  is  joined <= driving - a, and the other way round.
        let driving_by_joined = bounds_of(conjunct, &time_column(terms.driving), &|e| {
            time_term(e, terms.joined).is_some()
        });
        for bound in driving_by_joined.into_iter().flatten() {
            add(!bound.lower, -time_term(&bound.value, terms.joined).expect("checked"));
        }
    }
    (lower, upper)
}

/// Whether a column is `qualifier.column` (or `column` unqualified).
fn time_column<'a>((qualifier, column): (&'a str, &'a str)) -> impl Fn(&Column) -> bool + 'a {
    move |c: &Column| c.name == column && c.relation.as_ref().is_none_or(|r| r.table() == qualifier)
}

/// `qualifier.column`, `... + INTERVAL`, `... - INTERVAL`: the interval offset in microseconds.
fn time_term(expr: &Expr, (qualifier, column): (&str, &str)) -> Option<i64> {
    match expr {
        Expr::Column(c) => {
            let qualified_ok = c.relation.as_ref().is_none_or(|r| r.table() == qualifier);
            (c.name == column && qualified_ok).then_some(0)
        }
        Expr::Cast(cast) => time_term(&cast.expr, (qualifier, column)),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Plus,
            right,
        }) => time_term(left, (qualifier, column))
            .zip(interval_micros(right))
            .map(|(a, b)| a + b),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Minus,
            right,
        }) => time_term(left, (qualifier, column))
            .zip(interval_micros(right))
            .map(|(a, b)| a - b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::stream_pipeline::tests::{output, pipeline};

    const MINUTE: i64 = 60_000_000;

    async fn kind(sql: &str) -> Result<QueryKind> {
        let pipeline = pipeline(&["clicks", "buys"]);
        analyse(&pipeline, &output("q", sql), &HashMap::new())
            .await
            .map(|a| a.kind)
    }

    #[tokio::test]
    async fn queries_are_stateless_global_or_windowed() {
        assert_eq!(
            kind("SELECT id, ts FROM clicks WHERE value <> ''").await.unwrap(),
            QueryKind::Stateless
        );
        assert_eq!(
            kind("SELECT id, count(*) AS n FROM clicks GROUP BY id").await.unwrap(),
            QueryKind::Global
        );
        let windowed = kind(
            "SELECT window_start, window_end, count(*) FROM TUMBLE(clicks, INTERVAL '1 minute') GROUP BY window_start, window_end",
        )
        .await
        .unwrap();
        let QueryKind::Windowed { window, join: None } = windowed else {
            panic!("{windowed:?}")
        };
        assert_eq!(
            (window.source.as_str(), window.spec),
            ("clicks", WindowSpec::Tumble { size: MINUTE })
        );
    }

    #[tokio::test]
    async fn join_bounds_come_from_between_or_comparisons_in_either_order() {
        let between = "SELECT c.window_start, c.window_end, count(t.id) FROM TUMBLE(clicks, INTERVAL '5 minutes') AS c \
                       LEFT JOIN buys AS t ON t.id = c.id AND t.ts BETWEEN c.ts AND c.ts + INTERVAL '10 minutes' \
                       GROUP BY c.window_start, c.window_end";
        let QueryKind::Windowed { join: Some(join), .. } = kind(between).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            join,
            JoinBound {
                source: "buys".into(),
                lower: 0,
                upper: 10 * MINUTE
            }
        );

        let comparisons = "SELECT c.window_start, c.window_end, count(*) FROM buys AS t \
                           JOIN TUMBLE(clicks, INTERVAL '5 minutes') AS c ON t.id = c.id \
                           AND c.ts <= t.ts + INTERVAL '1 minute' AND t.ts <= c.ts + INTERVAL '2 minutes' \
                           GROUP BY c.window_start, c.window_end";
        let QueryKind::Windowed { join: Some(join), .. } = kind(comparisons).await.unwrap() else {
            panic!()
        };
        assert_eq!((join.lower, join.upper), (-MINUTE, 2 * MINUTE));
    }

    #[tokio::test]
    async fn unbounded_joins_and_windows_without_their_group_are_explained() {
        let unbounded = "SELECT c.window_start, c.window_end, count(*) FROM TUMBLE(clicks, INTERVAL '5 minutes') AS c \
                         JOIN buys AS t ON t.id = c.id GROUP BY c.window_start, c.window_end";
        let err = kind(unbounded).await.unwrap_err().to_string();
        assert!(err.contains("must bound `ts` on both sides"), "{err}");
        let ungrouped = "SELECT id, count(*) FROM TUMBLE(clicks, INTERVAL '1 minute') GROUP BY id";
        let err = kind(ungrouped).await.unwrap_err().to_string();
        assert!(err.contains("must GROUP BY window_start and window_end"), "{err}");
        let err = kind("SELECT * FROM TUMBLE(clicks, INTERVAL '1 minute')")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("only useful with a GROUP BY"), "{err}");
    }
}
