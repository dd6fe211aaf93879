//! Windows in SQL: the table functions `TUMBLE(source, size)`, `HOP(source, size, slide)` and
//! `SESSION(source, gap, key, ...)`, used in `FROM` like tables.
//!
//! `TUMBLE` and `HOP` add `window_start` and `window_end` (windows are `[start, end)`, aligned
//! to the Unix epoch, UTC; `HOP` repeats a row once per window it falls in). `SESSION` adds
//! `session_start` and `session_end`: per key, events less than or exactly `gap` apart share a
//! session, which starts at its first event and ends at its last.
//!
//! The functions hold no logic of their own: they return a [`BoundTable`] to which, each
//! micro-batch, the engine binds the rows a query may aggregate now, with their window columns
//! (see `stream::windowed`). Planning a query records which windows it uses; that is how the
//! engine learns a query's windows from its SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, AsArray, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Field, Schema, SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::bound_table::{Binding, BoundTable};
use super::intervals::interval_micros;
use crate::config::columns::timestamp_type;

/// How a query windows a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WindowSpec {
    /// Fixed windows of `size` microseconds.
    Tumble {
        /// Window length.
        size: i64,
    },
    /// Windows of `size` starting every `slide` microseconds.
    Hop {
        /// Window length.
        size: i64,
        /// Distance between window starts.
        slide: i64,
    },
    /// Per `keys`, events at most `gap` microseconds apart form a session.
    Session {
        /// The largest gap inside a session.
        gap: i64,
        /// The columns sessions are kept per.
        keys: Vec<String>,
    },
}

impl WindowSpec {
    /// The names of the start and end columns the window adds.
    pub fn columns(&self) -> (&'static str, &'static str) {
        match self {
            WindowSpec::Session { .. } => ("session_start", "session_end"),
            _ => ("window_start", "window_end"),
        }
    }
}

/// A window table function call in a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowUse {
    /// The source windowed.
    pub source: String,
    /// How.
    pub spec: WindowSpec,
}

/// What the window functions of one query's session return: tables bound to the rows the
/// engine prepares.
#[derive(Debug, Default)]
pub struct WindowTables {
    /// Source table schemas, by name.
    schemas: HashMap<String, SchemaRef>,
    /// Per window: the rows bound to its table.
    bindings: Mutex<HashMap<WindowUse, Binding>>,
    /// The calls made while planning.
    seen: Mutex<Vec<WindowUse>>,
}

impl WindowTables {
    /// Window tables over sources with these schemas.
    pub fn new(schemas: HashMap<String, SchemaRef>) -> Self {
        Self {
            schemas,
            ..Default::default()
        }
    }

    /// Binds the rows (already carrying their window columns) a call's table holds.
    pub fn prepare(&self, window: WindowUse, rows: RecordBatch) {
        self.binding(window).bind(vec![rows]);
    }

    /// Lets go of every call's rows.
    pub fn release(&self) {
        for binding in self.bindings.lock().expect("window tables lock").values() {
            binding.bind(Vec::new());
        }
    }

    fn binding(&self, window: WindowUse) -> Binding {
        self.bindings
            .lock()
            .expect("window tables lock")
            .entry(window)
            .or_default()
            .clone()
    }

    /// The calls made while planning, in order.
    pub fn seen(&self) -> Vec<WindowUse> {
        self.seen.lock().expect("window tables lock").clone()
    }

    /// Registers `tumble`, `hop` and `session` (in lower and upper case) in a session.
    pub fn register(self: &Arc<Self>, ctx: &SessionContext) {
        for (name, kind) in [("tumble", Kind::Tumble), ("hop", Kind::Hop), ("session", Kind::Session)] {
            let function = Arc::new(WindowFunction {
                kind,
                tables: self.clone(),
            });
            ctx.register_udtf(name, function.clone());
            ctx.register_udtf(&name.to_uppercase(), function);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tumble,
    Hop,
    Session,
}

#[derive(Debug)]
struct WindowFunction {
    kind: Kind,
    tables: Arc<WindowTables>,
}

impl TableFunctionImpl for WindowFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let usage = match self.kind {
            Kind::Tumble => "TUMBLE(source, INTERVAL 'size')",
            Kind::Hop => "HOP(source, INTERVAL 'size', INTERVAL 'slide')",
            Kind::Session => "SESSION(source, INTERVAL 'gap', key_column, ...)",
        };
        let wrong = |what: &str| DataFusionError::Plan(format!("{usage}: {what}"));
        let source = match args.first() {
            Some(Expr::Column(column)) => column.name.clone(),
            Some(Expr::Literal(ScalarValue::Utf8(Some(name)), _)) => name.clone(),
            _ => return Err(wrong("the first argument names a source of the pipeline")),
        };
        let schema = self.tables.schemas.get(&source).cloned().ok_or_else(|| {
            let mut known: Vec<&String> = self.tables.schemas.keys().collect();
            known.sort();
            wrong(&format!(
                "`{source}` is not a source of this pipeline (sources: {known:?})"
            ))
        })?;
        let interval = |i: usize| {
            args.get(i)
                .and_then(interval_micros)
                .ok_or_else(|| wrong("sizes are INTERVAL literals"))
        };
        let spec = match self.kind {
            Kind::Tumble if args.len() == 2 => WindowSpec::Tumble { size: interval(1)? },
            Kind::Hop if args.len() == 3 => WindowSpec::Hop {
                size: interval(1)?,
                slide: interval(2)?,
            },
            Kind::Session if args.len() >= 3 => {
                let keys = args[2..]
                    .iter()
                    .map(|arg| match arg {
                        Expr::Column(column) if schema.index_of(&column.name).is_ok() => Ok(column.name.clone()),
                        other => Err(wrong(&format!("`{other}` is not a column of {source}"))),
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                WindowSpec::Session {
                    gap: interval(1)?,
                    keys,
                }
            }
            _ => return Err(wrong("wrong number of arguments")),
        };
        match &spec {
            WindowSpec::Tumble { size } | WindowSpec::Hop { size, .. } if *size <= 0 => {
                return Err(wrong("sizes are positive"));
            }
            WindowSpec::Hop { size, slide } if *slide <= 0 || size % slide != 0 => {
                return Err(wrong("the slide is positive and divides the size"));
            }
            _ => {}
        }
        let window = WindowUse { source, spec };
        self.tables
            .seen
            .lock()
            .expect("window tables lock")
            .push(window.clone());
        let schema = windowed_schema(&schema, &window.spec);
        Ok(Arc::new(BoundTable::new(schema, self.tables.binding(window))))
    }
}

/// A source schema with the window's start and end columns appended.
pub fn windowed_schema(schema: &SchemaRef, spec: &WindowSpec) -> SchemaRef {
    let (start, end) = spec.columns();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(start, timestamp_type(), false));
    fields.push(Field::new(end, timestamp_type(), false));
    Arc::new(Schema::new(fields))
}

/// Adds tumbling or hopping window columns to rows; a hopping window repeats a row once per
/// window containing it.
pub fn assign_windows(rows: &RecordBatch, event_time: usize, spec: &WindowSpec) -> RecordBatch {
    let times = rows.column(event_time).as_primitive::<TimestampMicrosecondType>();
    let (size, slide) = match spec {
        WindowSpec::Tumble { size } => (*size, *size),
        WindowSpec::Hop { size, slide } => (*size, *slide),
        WindowSpec::Session { .. } => panic!("sessions are assigned by the session state"),
    };
    let per_row = (size / slide) as usize;
    if per_row == 1 {
        // Tumbling: every row is in exactly one window, so the rows are kept as they are.
        let starts: Vec<i64> = times.values().iter().map(|t| t - t.rem_euclid(slide)).collect();
        let ends: Vec<i64> = starts.iter().map(|s| s + size).collect();
        return with_window_columns(rows, None, starts, ends, spec);
    }
    let mut indices = Vec::with_capacity(rows.num_rows() * per_row);
    let mut starts = Vec::with_capacity(rows.num_rows() * per_row);
    for (row, time) in times.values().iter().enumerate() {
        // The last window containing `time` starts at the slide boundary at or before it.
        let last = time - time.rem_euclid(slide);
        for k in (0..per_row as i64).rev() {
            indices.push(row as u32);
            starts.push(last - k * slide);
        }
    }
    let ends: Vec<i64> = starts.iter().map(|s| s + size).collect();
    with_window_columns(rows, Some(&UInt32Array::from(indices)), starts, ends, spec)
}

/// Rows (picked by `indices`; all of them, in order, without) with start and end columns appended.
pub fn with_window_columns(
    rows: &RecordBatch,
    indices: Option<&UInt32Array>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    spec: &WindowSpec,
) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = rows
        .columns()
        .iter()
        .map(|c| match indices {
            Some(indices) => take(c.as_ref(), indices, None).expect("indices are in range"),
            None => c.clone(),
        })
        .collect();
    columns.push(Arc::new(TimestampMicrosecondArray::from(starts).with_timezone("UTC")));
    columns.push(Arc::new(TimestampMicrosecondArray::from(ends).with_timezone("UTC")));
    RecordBatch::try_new(windowed_schema(&rows.schema(), spec), columns).expect("window columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::stream_pipeline::tests::{rows, source};

    const MINUTE: i64 = 60_000_000;

    fn windows(batch: &RecordBatch) -> Vec<(String, i64, i64)> {
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        let starts = batch
            .column_by_name("window_start")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let ends = batch
            .column_by_name("window_end")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        (0..batch.num_rows())
            .map(|i| {
                (
                    ids.value(i).to_string(),
                    starts.value(i) / MINUTE,
                    ends.value(i) / MINUTE,
                )
            })
            .collect()
    }

    #[test]
    fn tumbling_windows_are_aligned_to_the_epoch_and_exclude_their_end() {
        let source = source("clicks", "ts", None);
        let batch = rows(&source, &[("a", 0), ("b", MINUTE - 1), ("c", MINUTE), ("d", -1)]);
        let windowed = assign_windows(&batch, source.event_time, &WindowSpec::Tumble { size: MINUTE });
        assert_eq!(
            windows(&windowed),
            [
                ("a".into(), 0, 1),
                ("b".into(), 0, 1),
                ("c".into(), 1, 2),
                ("d".into(), -1, 0)
            ]
        );
    }

    #[test]
    fn hopping_windows_repeat_a_row_in_every_window_containing_it() {
        let source = source("clicks", "ts", None);
        let batch = rows(&source, &[("a", 7 * MINUTE), ("b", 10 * MINUTE)]);
        let spec = WindowSpec::Hop {
            size: 10 * MINUTE,
            slide: 5 * MINUTE,
        };
        assert_eq!(
            windows(&assign_windows(&batch, source.event_time, &spec)),
            [
                ("a".into(), 0, 10),
                ("a".into(), 5, 15),
                ("b".into(), 5, 15),
                ("b".into(), 10, 20)
            ]
        );
    }

    #[tokio::test]
    async fn planning_records_the_windows_a_query_uses_and_rejects_bad_calls() {
        let source = source("clicks", "ts", None);
        let tables = Arc::new(WindowTables::new(HashMap::from([(
            "clicks".to_string(),
            source.schema.clone(),
        )])));
        let ctx = SessionContext::new();
        tables.register(&ctx);
        let sql = "SELECT window_start, count(*) FROM HOP(clicks, INTERVAL '10 minutes', INTERVAL '5 minutes') GROUP BY window_start";
        ctx.sql(sql).await.unwrap();
        assert_eq!(
            tables.seen(),
            [WindowUse {
                source: "clicks".into(),
                spec: WindowSpec::Hop {
                    size: 10 * MINUTE,
                    slide: 5 * MINUTE
                }
            }]
        );
        let err = ctx
            .sql("SELECT * FROM tumble(nope, INTERVAL '1 minute')")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`nope` is not a source"), "{err}");
        let err = ctx
            .sql("SELECT * FROM hop(clicks, INTERVAL '10 minutes', INTERVAL '3 minutes')")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("divides the size"), "{err}");
        let sql = "SELECT * FROM session(clicks, INTERVAL '30 minutes', id)";
        ctx.sql(sql).await.unwrap();
        assert_eq!(
            tables.seen()[1].spec,
            WindowSpec::Session {
                gap: 30 * MINUTE,
                keys: vec!["id".into()]
            }
        );
    }
}
