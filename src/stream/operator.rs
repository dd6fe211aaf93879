//! One output of a streaming pipeline: its SQL, what the analysis says it is, and the operator
//! that computes it micro-batch by micro-batch — stateless, a running aggregate, a windowed
//! aggregate or a session aggregate, each in its own file with its own state struct.

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::join_buffer::JoinWait;
use super::micro_batch::{Emitted, Finals, MicroBatch, PlannedQuery, QuerySql};
use super::running::{RunningAggregate, RunningState};
use super::session::{SessionAggregate, SessionState};
use super::state_batches::{StateBatches, StateSize};
use super::windowed::{WindowedAggregate, WindowedState};
use crate::config::stream_pipeline::{StreamOutput, StreamPipeline};
use crate::error::{Error, Result};
use crate::query::analysis::{Analysis, QueryKind};
use crate::query::window::WindowSpec;

/// One output, with its operator.
#[derive(Debug)]
pub struct Query {
    /// The output.
    pub output: StreamOutput,
    /// What its SQL is.
    pub analysis: Analysis,
    /// Its SQL, planned once.
    pub planned: PlannedQuery,
    /// What computes it.
    pub operator: Operator,
}

/// How an output is computed across micro-batches.
#[derive(Debug)]
pub enum Operator {
    /// Each micro-batch's rows go straight through.
    Stateless,
    /// An aggregate without a window.
    Running(RunningAggregate),
    /// An aggregate over `TUMBLE` or `HOP` windows.
    Windowed(WindowedAggregate),
    /// An aggregate over `SESSION` windows.
    Session(SessionAggregate),
}

/// The operators' names, as progress, the live state and errors give them.
const STATELESS: &str = "stateless query";
const RUNNING: &str = "running aggregate";
const WINDOWED: &str = "windowed aggregate";
const SESSION: &str = "session aggregate";

/// What an output's operator saves in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OperatorState {
    /// Nothing.
    Stateless,
    /// A running aggregate's groups.
    Running(RunningState),
    /// A windowed aggregate's open windows and waiting rows.
    Windowed(WindowedState),
    /// A session aggregate's open sessions and waiting rows.
    Session(SessionState),
}

impl OperatorState {
    /// What kind of operator saved it, as [`Query::operator_name`] names it.
    pub fn kind(&self) -> &'static str {
        match self {
            OperatorState::Stateless => STATELESS,
            OperatorState::Running(_) => RUNNING,
            OperatorState::Windowed(_) => WINDOWED,
            OperatorState::Session(_) => SESSION,
        }
    }
}

impl Query {
    /// A query with empty state, for `pipeline`.
    pub fn new(
        pipeline: &StreamPipeline,
        output: StreamOutput,
        analysis: Analysis,
        planned: PlannedQuery,
    ) -> Result<Self> {
        let operator = match &analysis.kind {
            QueryKind::Stateless => Operator::Stateless,
            QueryKind::Global => Operator::Running(RunningAggregate::default()),
            QueryKind::Windowed { window, join } => {
                let join = match join {
                    Some(join) => {
                        let source = pipeline.source(&window.source).expect("analysed windows name sources");
                        Some(
                            JoinWait::new(join.clone(), source, analysis.source_filter.as_ref())
                                .map_err(|e| Error::sql(&pipeline.name, &output.sql_path, e))?,
                        )
                    }
                    None => None,
                };
                match window.spec {
                    WindowSpec::Session { .. } => Operator::Session(SessionAggregate::new(window.clone(), join)),
                    _ => Operator::Windowed(WindowedAggregate::new(window.clone(), join)),
                }
            }
        };
        Ok(Self {
            output,
            analysis,
            planned,
            operator,
        })
    }

    /// Runs one micro-batch. `finals` holds the final rows earlier outputs emitted in it.
    pub async fn run(&mut self, pipeline: &StreamPipeline, batch: &MicroBatch, finals: &Finals) -> Result<Emitted> {
        let sql = QuerySql {
            pipeline,
            output: &self.output,
            analysis: &self.analysis,
            planned: &self.planned,
        };
        match &mut self.operator {
            Operator::Stateless => {
                let _bound = sql.bind(batch, finals, None);
                let rows = sql.collect().await?;
                Ok(Emitted {
                    append: rows.clone(),
                    update: rows,
                })
            }
            Operator::Running(running) => running.run(sql, batch, finals).await,
            Operator::Windowed(windowed) => windowed.run(sql, batch, finals).await,
            Operator::Session(sessions) => sessions.run(sql, batch, finals).await,
        }
    }

    /// What is held in state (groups, windows, sessions, rows waiting for a join).
    pub fn state_size(&self) -> StateSize {
        match &self.operator {
            Operator::Stateless => StateSize::default(),
            Operator::Running(running) => running.size(),
            Operator::Windowed(windowed) => windowed.size(),
            Operator::Session(sessions) => sessions.size(),
        }
    }

    /// What the operator holds, as the output's rows: every open window, session or group with
    /// its current values, as the output would emit it if it closed now (the state is left as
    /// it is). `None` for a stateless query.
    pub async fn open_rows(&self, pipeline: &StreamPipeline) -> Result<Option<Vec<RecordBatch>>> {
        let states: Vec<RecordBatch> = match &self.operator {
            Operator::Stateless => return Ok(None),
            Operator::Running(running) => running.state_rows().cloned().collect(),
            Operator::Windowed(windowed) => windowed.state_rows().cloned().collect(),
            Operator::Session(sessions) => sessions.state_rows().cloned().collect(),
        };
        if states.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let sql = QuerySql {
            pipeline,
            output: &self.output,
            analysis: &self.analysis,
            planned: &self.planned,
        };
        let rows = sql
            .split()?
            .finish(states, sql.task())
            .await
            .map_err(|e| sql.datafusion_error(e))?;
        Ok(Some(rows))
    }

    /// The operator's name, as progress and the live state name it.
    pub fn operator_name(&self) -> &'static str {
        match &self.operator {
            Operator::Stateless => STATELESS,
            Operator::Running(_) => RUNNING,
            Operator::Windowed(_) => WINDOWED,
            Operator::Session(_) => SESSION,
        }
    }

    /// The state to save.
    pub fn state(&self) -> OperatorState {
        match &self.operator {
            Operator::Stateless => OperatorState::Stateless,
            Operator::Running(running) => OperatorState::Running(running.state()),
            Operator::Windowed(windowed) => OperatorState::Windowed(windowed.state()),
            Operator::Session(sessions) => OperatorState::Session(sessions.state()),
        }
    }

    /// Restores a saved state; an error when it was saved by another plan (the SQL changed, or
    /// the way quickchat-etl computes it).
    pub fn restore(&mut self, state: OperatorState, misfit: impl Fn(String) -> Error) -> Result<()> {
        let name = self.output.name.clone();
        let expected = self.analysis.state_schema.clone();
        let saved_kind = state.kind();
        let current_kind = self.operator_name();
        let rows: Vec<RecordBatch> = match (&mut self.operator, state) {
            (Operator::Stateless, OperatorState::Stateless) => Vec::new(),
            (Operator::Running(running), OperatorState::Running(state)) => {
                running.restore(state);
                running.state().groups.0
            }
            (Operator::Windowed(windowed), OperatorState::Windowed(state)) => {
                windowed.restore(state);
                windowed.state_rows().cloned().collect()
            }
            (Operator::Session(sessions), OperatorState::Session(state)) => {
                sessions.restore(state);
                sessions.state_rows().cloned().collect()
            }
            (_, _) => {
                return Err(misfit(format!(
                    "the state of output `{name}` was saved by a {saved_kind}, but its query now is a {current_kind}"
                )));
            }
        };
        let shape = |schema: &Schema| {
            schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        if let (Some(expected), Some(saved)) = (expected, rows.first())
            && shape(&saved.schema()) != shape(&expected)
        {
            return Err(misfit(format!(
                "the state of output `{name}` does not fit this query: its SQL, or how quickchat-etl computes it, \
                 changed since"
            )));
        }
        Ok(())
    }

    /// For a join: the joined source and the event time below which its rows can no longer
    /// match a row of this query.
    pub fn join_retention(&self, pipeline: &StreamPipeline, batch: &MicroBatch) -> Option<(String, i64)> {
        let (join, waiting, window_source): (&JoinWait, &StateBatches, &str) = match &self.operator {
            Operator::Windowed(windowed) => {
                let (join, waiting) = windowed.join()?;
                (join, waiting, self.window_source()?)
            }
            Operator::Session(sessions) => {
                let (join, waiting) = sessions.join()?;
                (join, waiting, self.window_source()?)
            }
            _ => return None,
        };
        let source = pipeline.source(window_source)?;
        Some(join.retention(waiting, source, batch.watermark(window_source)))
    }

    fn window_source(&self) -> Option<&str> {
        match &self.analysis.kind {
            QueryKind::Windowed { window, .. } => Some(&window.source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::AsArray;
    use arrow::compute::concat_batches;
    use arrow::datatypes::TimestampMicrosecondType;

    use super::*;
    use crate::config::stream_pipeline::tests::{output, pipeline, rows};
    use crate::query::analysis::analyse;
    use crate::stream::join_buffer::{rows_between, time_slices};

    const MINUTE: i64 = 60_000_000;

    async fn query(pipeline: &StreamPipeline, sql: &str) -> Query {
        let output = output("q", sql);
        let analysis = analyse(pipeline, &output, &HashMap::new()).await.unwrap();
        let planned = PlannedQuery::new(pipeline, &output, &analysis, &HashMap::new())
            .await
            .unwrap();
        Query::new(pipeline, output, analysis, planned).unwrap()
    }

    /// A micro-batch: new rows per source, watermark = latest time - 5 minutes.
    fn batch(pipeline: &StreamPipeline, new: &[(&str, &[(&str, i64)])], latest: &[(&str, i64)]) -> MicroBatch {
        let mut input = MicroBatch::default();
        for (source, records) in new {
            let batch = rows(pipeline.source(source).unwrap(), records);
            input.on_time.insert(source.to_string(), batch.clone());
            input.all.insert(source.to_string(), batch);
        }
        for (source, time) in latest {
            input.watermarks.insert(source.to_string(), time - 5 * MINUTE);
        }
        input
    }

    fn open_windows(q: &Query) -> usize {
        match q.state() {
            OperatorState::Windowed(state) => state.windows.len(),
            other => panic!("not windowed: {other:?}"),
        }
    }

    fn text(batches: &[RecordBatch]) -> Vec<String> {
        let mut lines: Vec<String> = arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string()
            .lines()
            .filter(|l| l.starts_with('|') && !l.contains("window_start") && !l.contains("session_start"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn time_slices_keep_every_row_once_in_time_order() {
        let pipeline = pipeline(&["clicks"]);
        let source = pipeline.source("clicks").unwrap();
        let times = [7, 0, 3, 9, 1, 4, 8, 2];
        let records: Vec<(&str, i64)> = times.iter().map(|t| ("x", t * MINUTE)).collect();
        let all = rows(source, &records);
        let slices = time_slices(&all, source.event_time, 3 * MINUTE).unwrap();
        let minutes: Vec<Vec<i64>> = slices
            .iter()
            .map(|s| {
                let times = s.column(source.event_time).as_primitive::<TimestampMicrosecondType>();
                let mut m: Vec<i64> = times.values().iter().map(|t| t / MINUTE).collect();
                m.sort_unstable();
                m
            })
            .collect();
        assert_eq!(minutes, [vec![0, 1, 2], vec![3, 4], vec![7, 8], vec![9]]);
        // Less than two slices of time: the rows as they are.
        assert_eq!(time_slices(&all, source.event_time, 5 * MINUTE).unwrap().len(), 1);
    }

    #[test]
    fn joined_rows_are_pruned_to_the_bounds_inclusive() {
        let pipeline = pipeline(&["buys"]);
        let source = pipeline.source("buys").unwrap();
        let all = rows(source, &[("a", 0), ("b", MINUTE), ("c", 2 * MINUTE), ("d", 3 * MINUTE)]);
        let kept = rows_between(&all, source.event_time, MINUTE, 2 * MINUTE);
        assert_eq!(kept.num_rows(), 2);
        let times = kept
            .column(source.event_time)
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(times.values().to_vec(), [MINUTE, 2 * MINUTE]);
        assert_eq!(rows_between(&all, source.event_time, 0, 3 * MINUTE).num_rows(), 4);
        assert_eq!(
            rows_between(&all, source.event_time, 4 * MINUTE, 5 * MINUTE).num_rows(),
            0
        );
    }

    #[tokio::test]
    async fn tumbling_windows_update_while_open_and_append_once_the_watermark_passes() {
        let pipeline = pipeline(&["clicks"]);
        let sql = "SELECT window_start, window_end, count(*) AS n, count(DISTINCT value) AS d \
                   FROM TUMBLE(clicks, INTERVAL '1 minute') GROUP BY window_start, window_end";
        let mut q = query(&pipeline, sql).await;
        let none = HashMap::new();

        let first = batch(
            &pipeline,
            &[("clicks", &[("a", 10_000_000), ("b", 20_000_000), ("a", MINUTE + 5)])],
            &[("clicks", MINUTE + 5)],
        );
        let out = q.run(&pipeline, &first, &none).await.unwrap();
        assert!(out.append.is_empty());
        assert_eq!(
            text(&out.update),
            [
                "1970-01-01T00:00:00Z 1970-01-01T00:01:00Z 2 2",
                "1970-01-01T00:01:00Z 1970-01-01T00:02:00Z 1 1"
            ]
        );

        let second = batch(
            &pipeline,
            &[("clicks", &[("c", 7 * MINUTE), ("a", 30_000_000)])],
            &[("clicks", 7 * MINUTE)],
        );
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        assert_eq!(
            text(&out.append),
            [
                "1970-01-01T00:00:00Z 1970-01-01T00:01:00Z 3 2",
                "1970-01-01T00:01:00Z 1970-01-01T00:02:00Z 1 1"
            ]
        );
        assert_eq!(
            text(&out.update).len(),
            3,
            "the closed windows and the open one that changed"
        );
        assert_eq!(open_windows(&q), 1, "closed windows are forgotten");

        let end = MicroBatch {
            end_of_input: true,
            ..Default::default()
        };
        let out = q.run(&pipeline, &end, &none).await.unwrap();
        assert_eq!(text(&out.append), ["1970-01-01T00:07:00Z 1970-01-01T00:08:00Z 1 1"]);
        assert_eq!(open_windows(&q), 0);
    }

    /// Clicks with the buys of the same value in the 10 minutes after, by 5-minute window of the
    /// click; a test adds its `WHERE` and `GROUP BY`.
    const CLICKS_JOINED_WITH_BUYS: &str = "SELECT c.window_start, c.window_end, count(c.id) AS clicks, \
        count(t.id) AS purchases FROM TUMBLE(clicks, INTERVAL '5 minutes') AS c LEFT JOIN buys AS t \
        ON t.value = c.value AND t.ts BETWEEN c.ts AND c.ts + INTERVAL '10 minutes'";

    #[tokio::test]
    async fn a_join_waits_for_the_joined_stream_and_then_lets_its_buffer_go() {
        let pipeline = pipeline(&["clicks", "buys"]);
        let sql = format!("{CLICKS_JOINED_WITH_BUYS} GROUP BY c.window_start, c.window_end");
        let mut q = query(&pipeline, &sql).await;
        let none = HashMap::new();
        let buy = rows(pipeline.source("buys").unwrap(), &[("a", 3 * MINUTE)]);

        let mut first = batch(
            &pipeline,
            &[("clicks", &[("a", MINUTE)]), ("buys", &[("a", 3 * MINUTE)])],
            &[("clicks", MINUTE), ("buys", 3 * MINUTE)],
        );
        first.buffers.insert("buys".into(), buy.clone());
        let out = q.run(&pipeline, &first, &none).await.unwrap();
        assert!(
            out.append.is_empty() && out.update.is_empty(),
            "the click waits: a purchase up to 0:11 may still come"
        );

        let later_buy = rows(pipeline.source("buys").unwrap(), &[("z", 20 * MINUTE)]);
        let mut second = batch(
            &pipeline,
            &[("clicks", &[("b", 30 * MINUTE)]), ("buys", &[("z", 20 * MINUTE)])],
            &[("clicks", 30 * MINUTE), ("buys", 20 * MINUTE)],
        );
        second
            .buffers
            .insert("buys".into(), concat_batches(&buy.schema(), &[buy, later_buy]).unwrap());
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        assert_eq!(text(&out.append), ["1970-01-01T00:00:00Z 1970-01-01T00:05:00Z 1 1"]);
        // Click `b` (0:30) still waits; purchases before 0:25 (the clicks' watermark) can go.
        assert_eq!(q.join_retention(&pipeline, &second), Some(("buys".into(), 25 * MINUTE)));
    }

    #[tokio::test]
    async fn rows_the_where_rejects_do_not_wait_for_the_joined_stream() {
        let pipeline = pipeline(&["clicks", "buys"]);
        let sql = format!(
            "{CLICKS_JOINED_WITH_BUYS} WHERE c.value <> 'view' AND t.value IS DISTINCT FROM 'other' \
             GROUP BY c.window_start, c.window_end"
        );
        let mut q = query(&pipeline, &sql).await;
        let condition = q
            .analysis
            .source_filter
            .as_ref()
            .expect("a condition on the clicks alone");
        assert_eq!(condition.to_string(), "value != Utf8(\"view\")");
        let none = HashMap::new();
        let first = batch(
            &pipeline,
            &[("clicks", &[("a", MINUTE), ("view", MINUTE), ("view", 2 * MINUTE)])],
            &[("clicks", MINUTE), ("buys", MINUTE)],
        );
        q.run(&pipeline, &first, &none).await.unwrap();
        assert_eq!(q.state_size().rows, 1, "only the click waits");
        let mut last = batch(&pipeline, &[], &[]);
        last.end_of_input = true;
        let out = q.run(&pipeline, &last, &none).await.unwrap();
        assert_eq!(text(&out.append), ["1970-01-01T00:00:00Z 1970-01-01T00:05:00Z 1 0"]);
    }

    #[tokio::test]
    async fn an_aggregate_without_group_by_keeps_one_running_row() {
        let pipeline = pipeline(&["clicks"]);
        let sql = "SELECT CAST(count(*) AS DOUBLE) / count(DISTINCT value) AS per_value, max(ts) AS last FROM clicks";
        let mut q = query(&pipeline, sql).await;
        let none = HashMap::new();
        let first = batch(
            &pipeline,
            &[("clicks", &[("a", 1), ("b", 2), ("a", 3)])],
            &[("clicks", 3)],
        );
        let out = q.run(&pipeline, &first, &none).await.unwrap();
        assert_eq!(text(&out.update), ["1.5 1970-01-01T00:00:00.000003Z", "per_value last"]);
        let second = batch(&pipeline, &[("clicks", &[("c", 4)])], &[("clicks", 4)]);
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        assert_eq!(
            text(&out.update),
            ["1.3333333333333333 1970-01-01T00:00:00.000004Z", "per_value last"]
        );
        assert!(out.append.is_empty(), "a running aggregate is never final");
    }

    #[tokio::test]
    async fn sessions_merge_out_of_order_events_and_keep_an_event_exactly_a_gap_away() {
        let pipeline = pipeline(&["clicks"]);
        let sql = "SELECT value, session_start, session_end, count(*) AS events \
                   FROM SESSION(clicks, INTERVAL '30 minutes', value) GROUP BY value, session_start, session_end";
        let mut q = query(&pipeline, sql).await;
        let none = HashMap::new();
        let first = batch(
            &pipeline,
            &[("clicks", &[("u", 0), ("u", 20 * MINUTE)])],
            &[("clicks", 20 * MINUTE)],
        );
        assert!(q.run(&pipeline, &first, &none).await.unwrap().append.is_empty());

        let second = batch(
            &pipeline,
            &[(
                "clicks",
                &[
                    ("u", 70 * MINUTE),
                    ("u", 40 * MINUTE),
                    ("u", 101 * MINUTE),
                    ("v", 360 * MINUTE),
                ],
            )],
            &[("clicks", 360 * MINUTE)],
        );
        let out = q.run(&pipeline, &second, &none).await.unwrap();
        let lines: Vec<String> = arrow::util::pretty::pretty_format_batches(&out.append)
            .unwrap()
            .to_string()
            .lines()
            .filter(|l| l.starts_with("| u"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            [
                "u 1970-01-01T00:00:00Z 1970-01-01T01:10:00Z 4",
                "u 1970-01-01T01:41:00Z 1970-01-01T01:41:00Z 1"
            ]
        );
    }
}
