//! Executing SQL text against the lake: statements are split by DataFusion's own parser and
//! run one by one, each result printed in the chosen format.

use std::io::Write;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;

use crate::catalog::Lake;
use crate::cli::OutputFormat;
use crate::error::{Error, Result};
use crate::output::write_batches;
use crate::query::new_session;

/// A session with every Delta table of the lake registered as `<layer>.<table>`.
pub async fn lake_session(lake: &Lake) -> Result<SessionContext> {
    let ctx = new_session();
    let tables = lake.register_all(&ctx).await?;
    tracing::debug!(tables = tables.len(), lake = %lake.root(), "lake tables registered");
    Ok(ctx)
}

/// What running one statement gave.
pub struct StatementResult {
    /// Rows returned.
    pub rows: usize,
    /// Time to plan and run it.
    pub elapsed: Duration,
}

/// Runs every statement of `text`, printing results to `out`; stops at the first error,
/// naming `origin` (`-e`, a file name, `repl`).
pub async fn execute_text<W: Write>(
    ctx: &SessionContext,
    text: &str,
    origin: &str,
    format: OutputFormat,
    out: &mut W,
) -> Result<Vec<StatementResult>> {
    let sql_error = |message: String| Error::Sql {
        job: "sql".into(),
        file: origin.to_string(),
        message,
        cause: None,
    };
    let statements = DFParser::parse_sql(text).map_err(|e| sql_error(e.to_string()))?;
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        let started = Instant::now();
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(|e| sql_error(e.to_string()))?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| sql_error(e.to_string()))?;
        let batches = df.collect().await.map_err(|e| sql_error(e.to_string()))?;
        write_batches(&mut *out, &batches, format)?;
        results.push(StatementResult {
            rows: batches.iter().map(|b| b.num_rows()).sum(),
            elapsed: started.elapsed(),
        });
    }
    Ok(results)
}
