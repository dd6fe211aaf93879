//! SQL: the DataFusion session every command uses, the run parameters a job's SQL sees as
//! `$start_date`, `$end_date`, `$run_id` and `$ingested_at`, error messages that say which file
//! failed and what to do, and the extensions both modes plan with — expectations, fixed-length
//! intervals as durations, the counting join — and those of streaming queries: the window table
//! functions, the analysis of what a streaming query is, join bounds, and incremental
//! aggregation; the MySQL mirror as tables.

pub mod aggregate;
pub mod analysis;
pub mod bound_table;
pub mod counting_join;
pub mod expectations;
pub mod intervals;
pub mod join_bounds;
pub mod memory;
pub mod mysql_mirror;
pub mod source_table;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::common::ParamValues;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

use crate::catalog::TableName;
use crate::config::job::Job;
use crate::error::{Error, Result};
use crate::jobs::Registry;

/// First day of a run without `--date`/`--from`: every partition is in range.
pub const FULL_REFRESH_START: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
/// Last day of a run without `--date`/`--to`.
pub const FULL_REFRESH_END: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid date");

/// The days a run covers, inclusive, or every day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateRange {
    /// No date given: the whole table is rebuilt.
    All,
    /// `--date D` (start = end) or `--from A --to B`.
    Days {
        /// First day (inclusive).
        start: NaiveDate,
        /// Last day (inclusive).
        end: NaiveDate,
    },
}

impl DateRange {
    /// The first and last day, with the full-refresh sentinels for [`DateRange::All`].
    pub fn bounds(self) -> (NaiveDate, NaiveDate) {
        match self {
            DateRange::All => (FULL_REFRESH_START, FULL_REFRESH_END),
            DateRange::Days { start, end } => (start, end),
        }
    }
}

impl std::fmt::Display for DateRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DateRange::All => f.write_str("all dates"),
            DateRange::Days { start, end } if start == end => write!(f, "{start}"),
            DateRange::Days { start, end } => write!(f, "{start}..{end}"),
        }
    }
}

/// What one run of a job is: its dates, its id and when it started.
#[derive(Debug, Clone)]
pub struct RunParams {
    /// The days covered.
    pub range: DateRange,
    /// The run id recorded in `_run_id`, the run log and the quarantine table.
    pub run_id: String,
    /// When the run started; `$ingested_at` in bronze SQL.
    pub started_at: DateTime<Utc>,
}

impl RunParams {
    /// New parameters with a fresh, sortable run id.
    pub fn new(range: DateRange) -> Self {
        Self::started_at(range, Utc::now())
    }

    /// Parameters of a run that started at `started_at`.
    pub fn started_at(range: DateRange, started_at: DateTime<Utc>) -> Self {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let run_id = format!("run-{}-{suffix}", started_at.format("%Y%m%dT%H%M%SZ"));
        Self {
            range,
            run_id,
            started_at,
        }
    }

    /// The SQL parameter values, by name without the `$`.
    pub fn param_values(&self) -> ParamValues {
        let (start, end) = self.range.bounds();
        let micros = self.started_at.timestamp_micros();
        let map: HashMap<String, ScalarValue> = HashMap::from([
            ("start_date".to_string(), date_value(start)),
            ("end_date".to_string(), date_value(end)),
            ("run_id".to_string(), ScalarValue::Utf8(Some(self.run_id.clone()))),
            (
                "ingested_at".to_string(),
                ScalarValue::TimestampMicrosecond(Some(micros), Some(Arc::from("UTC"))),
            ),
        ]);
        ParamValues::from(map)
    }
}

fn date_value(date: NaiveDate) -> ScalarValue {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    ScalarValue::Date32(Some((date - epoch).num_days() as i32))
}

/// A DataFusion session configured for quickchat-etl: UTC, information_schema (for `\d`), the
/// project's logical extensions, and fixed-length intervals added as durations. (The Delta sink
/// adds deltalake's own planner to the sessions it writes with.)
pub fn new_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true)
        .set_str("datafusion.execution.time_zone", "UTC")
        // deltalake's own sessions turn hash-join IN-list pushdown off: it can panic on the
        // dictionary-encoded partition columns Delta scans produce.
        .set_usize("datafusion.optimizer.hash_join_inlist_pushdown_max_size", 0)
        .set_usize("datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values", 0)
        // Strings are read as Utf8, not Utf8View. A sorted or spilled batch of views keeps the
        // buffers of every batch its rows came from, outside the memory pool's count
        // (apache/datafusion#12136): silver-messages' dedup sort over 3.7 M rows peaked at
        // 2.5 GB RSS under --memory-limit 1GiB with views, 1.2 GB without.
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(memory::runtime())
        .with_default_features()
        .with_query_planner(planner_with(Vec::new()))
        .with_optimizer_rule(Arc::new(intervals::FixedIntervalsAsDurations))
        .with_optimizer_rule(Arc::new(counting_join::CountedJoins))
        .build();
    SessionContext::new_with_state(state)
}

/// A query planner for the project's extension nodes (expectations, the counting join) and
/// `extra` ones (deltalake's, in the sessions the Delta sink writes with).
pub fn planner_with(extra: Vec<Arc<dyn ExtensionPlanner + Send + Sync>>) -> Arc<dyn QueryPlanner + Send + Sync> {
    let mut planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>> = vec![
        Arc::new(expectations::ExpectationsPlanner),
        Arc::new(counting_join::CountingJoinPlanner),
    ];
    planners.extend(extra);
    Arc::new(ExtensionsPlanner { planners })
}

/// Plans logical plans with extension planners.
struct ExtensionsPlanner {
    planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>>,
}

impl std::fmt::Debug for ExtensionsPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtensionsPlanner({} planners)", self.planners.len())
    }
}

#[async_trait::async_trait]
impl QueryPlanner for ExtensionsPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(self.planners.clone())
            .create_physical_plan(logical_plan, session)
            .await
    }
}

/// Plans a job's SQL with the run's parameters bound.
pub async fn plan_job(ctx: &SessionContext, job: &Job, params: &RunParams, registry: &Registry) -> Result<DataFrame> {
    let sql_error = |e: datafusion::error::DataFusionError| Error::Sql {
        job: job.name.clone(),
        file: job.sql_path.clone(),
        message: explain_planning_error(&e.to_string(), registry),
        cause: Some(Box::new(e)),
    };
    let df = ctx.sql(&job.sql).await.map_err(sql_error)?;
    df.with_param_values(params.param_values()).map_err(sql_error)
}

/// Adds a hint to DataFusion's "table not found" message: which job produces the table.
fn explain_planning_error(message: &str, registry: &Registry) -> String {
    let missing = message
        .split(['\'', '`', '"'])
        .find_map(|part| TableName::parse(part.trim_start_matches("datafusion.")).ok());
    match missing
        .as_ref()
        .and_then(|table| registry.producer_of(table).map(|job| (table, job)))
    {
        Some((table, job)) if message.contains("not found") => format!(
            "{message}\n  hint: {table} is written by job `{}`; run it first, or add --upstream",
            job.name
        ),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_start_time_and_differ_for_runs_started_together() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let ids: Vec<String> = [
            "2024-03-05T00:00:00Z",
            "2024-03-04T23:59:59Z",
            "2024-03-05T00:00:00Z",
            "2025-01-01T00:00:00Z",
        ]
        .iter()
        .map(|t| RunParams::started_at(DateRange::All, at(t)).run_id)
        .collect();
        assert!(ids[0].starts_with("run-20240305T000000Z-"), "{}", ids[0]);
        assert_ne!(ids[0], ids[2], "same second, different runs");
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted[0], ids[1]);
        assert_eq!(sorted[3], ids[3]);
    }

    #[test]
    fn full_refresh_spans_every_plausible_date() {
        let (start, end) = DateRange::All.bounds();
        assert!(start.to_string().as_str() < "1970-01-01" && end.to_string() == "9999-12-31");
        let day = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        assert_eq!(DateRange::Days { start: day, end: day }.to_string(), "2024-01-02");
        assert_eq!(date_value(day), ScalarValue::Date32(Some(19724)));
    }
}
