//! Running a chart's query over the lake: read-only (DataFusion refuses DDL, DML and other
//! statements under these options), with the page's time range as the `$from` and `$to`
//! parameters, and its rows as JSON for the page to draw.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{DataFrame, SessionContext};
use serde_json::{Value, json};

use super::file::{ChartDef, ChartKind};
use crate::sinks::rows::rows_as_json_values;

/// Rows a line, bar or table chart gets at most (the answer says when there were more).
pub const MAX_ROWS: usize = 10_000;

/// What the page asks a chart for.
#[derive(Debug, Clone, Copy)]
pub struct ChartParams {
    /// The time range's start; `None`: all time.
    pub from: Option<DateTime<Utc>>,
    /// Its end; `None`: now.
    pub to: Option<DateTime<Utc>>,
    /// The N of top-N charts.
    pub top: usize,
}

/// `$to` when the range has no end: far in the future, yet within what a nanosecond timestamp
/// holds (a `CAST(date AS TIMESTAMP)` compares in nanoseconds, which end in 2262).
fn open_end() -> DateTime<Utc> {
    "2200-01-01T00:00:00Z".parse().expect("a valid time")
}

/// Only queries: no DDL, DML or statements like `SET`.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans `chart`'s query with `params`, and checks that it returns the columns the chart draws.
pub async fn plan(ctx: &SessionContext, chart: &ChartDef, params: &ChartParams) -> Result<DataFrame, String> {
    let df = ctx
        .sql_with_options(&chart.sql, read_only())
        .await
        .map_err(|e| refused(&e.to_string()))?;
    let micros = |at: Option<DateTime<Utc>>, otherwise: DateTime<Utc>| {
        ScalarValue::TimestampMicrosecond(Some(at.unwrap_or(otherwise).timestamp_micros()), Some("UTC".into()))
    };
    let range = HashMap::from([
        ("from".to_string(), micros(params.from, DateTime::UNIX_EPOCH)),
        ("to".to_string(), micros(params.to, open_end())),
    ]);
    let df = df
        .with_param_values(ParamValues::from(range))
        .map_err(|e| e.to_string())?;
    let returned: Vec<&str> = df.schema().fields().iter().map(|f| f.name().as_str()).collect();
    let missing: Vec<&str> = chart
        .columns_drawn()
        .into_iter()
        .filter(|column| !returned.contains(column))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the query returns no column {} (it returns {})",
            missing.join(", "),
            returned.join(", ")
        ));
    }
    Ok(df)
}

/// DataFusion's words for a refused statement, with what a dashboard query may be.
fn refused(message: &str) -> String {
    if message.contains("not supported")
        && (message.contains("DDL") || message.contains("DML") || message.contains("Statement"))
    {
        format!("{message}: a dashboard only reads (one SELECT, or WITH … SELECT)")
    } else {
        message.to_string()
    }
}

/// Runs `chart` with `params`: `{columns, rows (arrays in column order), truncated}`. A top-N
/// chart gets its first `params.top` rows, a KPI its first, the others up to [`MAX_ROWS`].
pub async fn run(ctx: &SessionContext, chart: &ChartDef, params: &ChartParams) -> Result<Value, String> {
    let df = plan(ctx, chart, params).await?;
    let limit = match chart.kind {
        ChartKind::Top => params.top,
        ChartKind::Kpi => 1,
        _ => MAX_ROWS,
    };
    let batches = df
        .limit(0, Some(limit + 1))
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let (columns, mut rows) = rows_of(&batches)?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(json!({"columns": columns, "rows": rows, "truncated": truncated}))
}

/// Column names and rows (each an array of JSON values in column order).
fn rows_of(batches: &[RecordBatch]) -> Result<(Vec<String>, Vec<Value>), String> {
    let Some(first) = batches.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let columns: Vec<String> = first.schema_ref().fields().iter().map(|f| f.name().clone()).collect();
    let objects = rows_as_json_values(batches).map_err(|e| e.to_string())?;
    let rows = objects
        .into_iter()
        .map(|mut row| Value::Array(columns.iter().map(|c| row[c.as_str()].take()).collect()))
        .collect();
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboards::file::Dashboard;

    async fn session() -> SessionContext {
        let ctx = crate::query::new_session();
        ctx.sql(
            "CREATE TABLE views AS SELECT * FROM (VALUES \
             (TIMESTAMP '2024-03-04T10:00:00Z', DATE '2024-03-04', 'books', 5), \
             (TIMESTAMP '2024-03-04T11:00:00Z', DATE '2024-03-04', 'home', 7), \
             (TIMESTAMP '2024-03-05T10:00:00Z', DATE '2024-03-05', 'books', 9)) AS t(at, day, category, n)",
        )
        .await
        .unwrap();
        ctx
    }

    fn chart(kind: &str, sql: &str, columns: &str) -> ChartDef {
        let text = format!(
            "title = \"t\"\n[[chart]]\nname = \"c\"\ntitle = \"C\"\nkind = \"{kind}\"\nsql = \"{sql}\"\n{columns}\n"
        );
        Dashboard::parse("d", "d.toml", &text).unwrap().file.charts.remove(0)
    }

    fn all_time(top: usize) -> ChartParams {
        ChartParams {
            from: None,
            to: None,
            top,
        }
    }

    #[tokio::test]
    async fn a_chart_gets_its_rows_in_the_time_range_and_a_top_chart_its_first_n() {
        let ctx = session().await;
        let line = chart(
            "line",
            "SELECT at, n FROM views WHERE at >= $from AND at < $to ORDER BY at",
            "x = \"at\"\ny = [\"n\"]",
        );
        let all = run(&ctx, &line, &all_time(10)).await.unwrap();
        assert_eq!(all["columns"], json!(["at", "n"]));
        assert_eq!(all["rows"].as_array().unwrap().len(), 3);
        let one_day = ChartParams {
            from: Some("2024-03-05T00:00:00Z".parse().unwrap()),
            to: Some("2024-03-06T00:00:00Z".parse().unwrap()),
            top: 10,
        };
        let day = run(&ctx, &line, &one_day).await.unwrap();
        assert_eq!(day["rows"], json!([["2024-03-05T10:00:00", 9]]), "{day}");

        // A date column compared with the range, cast to a timestamp.
        let by_day = chart(
            "bar",
            "SELECT day, sum(n) AS n FROM views WHERE CAST(day AS TIMESTAMP) >= $from AND CAST(day AS TIMESTAMP) < $to GROUP BY day ORDER BY day",
            "x = \"day\"\ny = [\"n\"]",
        );
        assert_eq!(
            run(&ctx, &by_day, &one_day).await.unwrap()["rows"],
            json!([["2024-03-05", 9]])
        );

        let top = chart(
            "top",
            "SELECT category, sum(n) AS n FROM views GROUP BY category ORDER BY n DESC",
            "label = \"category\"\nvalue = \"n\"",
        );
        let first = run(&ctx, &top, &all_time(1)).await.unwrap();
        assert_eq!(first["rows"], json!([["books", 14]]));
        assert_eq!(first["truncated"], true);
    }

    #[tokio::test]
    async fn only_queries_run_and_a_chart_names_the_columns_its_query_lacks() {
        let ctx = session().await;
        for sql in [
            "DROP TABLE views",
            "INSERT INTO views VALUES (now(), DATE '2024-01-01', 'x', 1)",
            "CREATE TABLE t AS SELECT 1",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let error = run(&ctx, &chart("table", sql, ""), &all_time(10)).await.unwrap_err();
            assert!(error.contains("not supported"), "{sql}: {error}");
        }
        assert_eq!(
            run(
                &ctx,
                &chart("table", "SELECT count(*) AS n FROM views", ""),
                &all_time(10)
            )
            .await
            .unwrap()["rows"],
            json!([[3]]),
            "the table is still there"
        );
        let error = run(
            &ctx,
            &chart("kpi", "SELECT count(*) AS n FROM views", "value = \"total\""),
            &all_time(10),
        )
        .await
        .unwrap_err();
        assert!(
            error.contains("no column total") && error.contains("it returns n"),
            "{error}"
        );
        let error = run(&ctx, &chart("table", "SELECT * FROM nowhere", ""), &all_time(10))
            .await
            .unwrap_err();
        assert!(error.contains("nowhere"), "{error}");
    }
}
