//! The MySQL sink of streaming outputs: creates the table when it is missing (primary key = the
//! sink's key) and upserts each epoch's rows with batched multi-row `INSERT … ON DUPLICATE KEY
//! UPDATE`, in one transaction with the epoch marker (`quickchat_epochs`). An epoch at or below
//! the marker is skipped, so a replay after a crash writes nothing twice.
//!
//! Column types: key text columns are `VARCHAR(191)` (the longest an InnoDB utf8mb4 key takes),
//! other text `TEXT`; integers `BIGINT`, floats `DOUBLE`, timestamps `DATETIME(6)` in UTC,
//! dates `DATE`, booleans `BOOLEAN`, decimals `DECIMAL(p,s)`.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use chrono::{Datelike, NaiveDate, Timelike};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, TxOpts, Value};

use super::SinkMetrics;
use crate::config::redact_url;
use crate::error::{Error, Result};
use crate::sources::mysql::{is_plain_identifier, statement};

const CREATE_TABLE: &str = include_str!("mysql_create_table.sql");
const EPOCHS_TABLE: &str = include_str!("mysql_epochs_table.sql");
const EPOCH_LOCK: &str = include_str!("mysql_epoch_lock.sql");
const EPOCH_MARK: &str = include_str!("mysql_epoch_mark.sql");
const UPSERT: &str = include_str!("mysql_upsert.sql");

/// Most placeholders in one statement (MySQL allows 65,535).
const MAX_PLACEHOLDERS: usize = 60_000;
/// Most rows in one statement.
const MAX_ROWS_PER_STATEMENT: usize = 2_000;

/// A connection writing streaming outputs.
pub struct MysqlSink {
    conn: Conn,
    shown: String,
    /// Tables known to exist.
    ready: HashSet<String>,
}

impl MysqlSink {
    /// Connects to the database at `url` and makes sure the epoch-marker table exists.
    pub async fn connect(url: &str) -> Result<Self> {
        let shown = redact_url(url);
        let opts = crate::mysql::options(url).map_err(|message| sink_error(&shown, message, false))?;
        let mut conn = Conn::new(opts)
            .await
            .map_err(|e| sink_error(&shown, crate::mysql::cannot_connect(&e), true))?;
        conn.query_drop(statement(EPOCHS_TABLE))
            .await
            .map_err(|e| mysql_error(&shown, "quickchat_epochs", e))?;
        Ok(Self {
            conn,
            shown,
            ready: HashSet::new(),
        })
    }

    /// Upserts `rows` into `table` by `key` and records `epoch` for `pipeline` in `run` (the
    /// input and checkpoint lineage), in one transaction; does nothing when that epoch (or a
    /// later one) is already recorded.
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_epoch(
        &mut self,
        pipeline: &str,
        run: &str,
        table: &str,
        key: &[String],
        epoch: u64,
        schema: &SchemaRef,
        rows: &[RecordBatch],
    ) -> Result<SinkMetrics> {
        let started = std::time::Instant::now();
        let shown = format!("{} table {table}", self.shown);
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let names = columns
            .iter()
            .copied()
            .chain(key.iter().map(String::as_str))
            .chain([table]);
        if let Some(bad) = names.clone().find(|name| !is_plain_identifier(name)) {
            return Err(sink_error(
                &shown,
                format!("`{bad}` is not a plain MySQL identifier (letters, digits, _)"),
                false,
            ));
        }
        if let Some(missing) = key.iter().find(|k| !columns.contains(&k.as_str())) {
            return Err(sink_error(
                &shown,
                format!("key column `{missing}` is not in the output"),
                false,
            ));
        }
        if !self.ready.contains(table) {
            let create = create_table_statement(table, schema, key);
            self.conn
                .query_drop(create)
                .await
                .map_err(|e| mysql_error(&shown, table, e))?;
            self.ready.insert(table.to_string());
        }

        let target = format!("{run}/{table}");
        let mut tx = self
            .conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| mysql_error(&shown, table, e))?;
        let done: Option<i64> = tx
            .exec_first(statement(EPOCH_LOCK), (pipeline, target.as_str()))
            .await
            .map_err(|e| mysql_error(&shown, table, e))?;
        if done.is_some_and(|done| done >= epoch as i64) {
            tx.rollback().await.map_err(|e| mysql_error(&shown, table, e))?;
            return Ok(SinkMetrics::default());
        }
        let rows = without_null_keys(rows, key, table);
        let mut written = 0u64;
        let rows_per_statement = (MAX_PLACEHOLDERS / columns.len().max(1)).clamp(1, MAX_ROWS_PER_STATEMENT);
        for batch in &rows {
            let mut start = 0;
            while start < batch.num_rows() {
                let count = rows_per_statement.min(batch.num_rows() - start);
                let chunk = batch.slice(start, count);
                let values = row_values(&chunk).map_err(|e| sink_error(&shown, e, false))?;
                tx.exec_drop(upsert_statement(table, &columns, key, count), values)
                    .await
                    .map_err(|e| mysql_error(&shown, table, e))?;
                written += count as u64;
                start += count;
            }
        }
        tx.exec_drop(statement(EPOCH_MARK), (pipeline, target.as_str(), epoch as i64))
            .await
            .map_err(|e| mysql_error(&shown, table, e))?;
        tx.commit().await.map_err(|e| mysql_error(&shown, table, e))?;
        Ok(SinkMetrics {
            rows: written,
            elapsed: started.elapsed(),
            ..Default::default()
        })
    }
}

/// The rows without a NULL in a key column: MySQL keys cannot hold NULL, so those rows stay in
/// the Delta tables only, with a warning.
fn without_null_keys(rows: &[RecordBatch], key: &[String], table: &str) -> Vec<RecordBatch> {
    let mut kept = Vec::with_capacity(rows.len());
    let mut skipped = 0;
    for batch in rows {
        let mut keep = arrow::array::BooleanArray::from(vec![true; batch.num_rows()]);
        for name in key {
            if let Some(column) = batch.column_by_name(name).filter(|c| c.null_count() > 0) {
                let present = arrow::compute::is_not_null(column).expect("is_not_null");
                keep = arrow::compute::and(&keep, &present).expect("and");
            }
        }
        skipped += batch.num_rows() - keep.true_count();
        kept.push(arrow::compute::filter_record_batch(batch, &keep).expect("filter"));
    }
    if skipped > 0 {
        tracing::warn!(table, rows = skipped, key = ?key,
            "rows with NULL in a key column cannot be upserted into MySQL; they are in the Delta tables only");
    }
    kept
}

fn sink_error(shown: &str, message: String, retryable: bool) -> Error {
    Error::Sink {
        table: format!("mysql {shown}"),
        message,
        retryable,
        cause: None,
    }
}

fn mysql_error(shown: &str, table: &str, e: mysql_async::Error) -> Error {
    let retryable = matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(_));
    Error::Sink {
        table: format!("mysql {shown}"),
        message: format!("{table}: {e}"),
        retryable,
        cause: Some(Box::new(e)),
    }
}

fn quoted(name: &str) -> String {
    format!("`{name}`")
}

/// The MySQL type of a column.
fn column_type(data_type: &DataType, in_key: bool) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if in_key => "VARCHAR(191)".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "DOUBLE".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, _) => "DATETIME(6)".into(),
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            format!("DECIMAL({}, {scale})", (*precision).min(65))
        }
        _ => "TEXT".into(),
    }
}

fn create_table_statement(table: &str, schema: &SchemaRef, key: &[String]) -> String {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let in_key = key.iter().any(|k| k == f.name());
            let null = if in_key { "NOT NULL" } else { "NULL" };
            format!("{} {} {null}", quoted(f.name()), column_type(f.data_type(), in_key))
        })
        .collect::<Vec<_>>()
        .join(",\n  ");
    let key = key.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", ");
    statement(CREATE_TABLE)
        .replace("{table}", &quoted(table))
        .replace("{columns}", &columns)
        .replace("{key}", &key)
}

fn upsert_statement(table: &str, columns: &[&str], key: &[String], rows: usize) -> String {
    let group = format!("({})", vec!["?"; columns.len()].join(", "));
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.iter().any(|k| k == *c))
        .map(|c| format!("{0} = VALUES({0})", quoted(c)))
        .collect();
    // With every column in the key there is nothing to update: re-assign the first key column.
    let updates = if updates.is_empty() {
        format!("{0} = VALUES({0})", quoted(columns[0]))
    } else {
        updates.join(", ")
    };
    statement(UPSERT)
        .replace("{table}", &quoted(table))
        .replace(
            "{columns}",
            &columns.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", "),
        )
        .replace("{rows}", &vec![group; rows].join(", "))
        .replace("{updates}", &updates)
}

/// The rows' values, row after row, as statement parameters.
fn row_values(batch: &RecordBatch) -> std::result::Result<Vec<Value>, String> {
    let columns: Vec<Vec<Value>> = batch
        .columns()
        .iter()
        .map(|column| column_values(column.as_ref()))
        .collect::<std::result::Result<_, _>>()?;
    let mut values = Vec::with_capacity(batch.num_rows() * columns.len());
    for row in 0..batch.num_rows() {
        for column in &columns {
            values.push(column[row].clone());
        }
    }
    Ok(values)
}

fn column_values(column: &dyn Array) -> std::result::Result<Vec<Value>, String> {
    macro_rules! each {
        ($array:expr, $value:expr) => {{
            let array = $array;
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        Value::NULL
                    } else {
                        $value(array.value(i))
                    }
                })
                .collect()
        }};
    }
    Ok(match column.data_type() {
        DataType::Int8 => each!(column.as_primitive::<Int8Type>(), |v: i8| Value::Int(v.into())),
        DataType::Int16 => each!(column.as_primitive::<Int16Type>(), |v: i16| Value::Int(v.into())),
        DataType::Int32 => each!(column.as_primitive::<Int32Type>(), |v: i32| Value::Int(v.into())),
        DataType::Int64 => each!(column.as_primitive::<Int64Type>(), Value::Int),
        DataType::UInt8 => each!(column.as_primitive::<UInt8Type>(), |v: u8| Value::UInt(v.into())),
        DataType::UInt16 => each!(column.as_primitive::<UInt16Type>(), |v: u16| Value::UInt(v.into())),
        DataType::UInt32 => each!(column.as_primitive::<UInt32Type>(), |v: u32| Value::UInt(v.into())),
        DataType::UInt64 => each!(column.as_primitive::<UInt64Type>(), Value::UInt),
        DataType::Float32 => each!(column.as_primitive::<Float32Type>(), |v: f32| Value::Double(v.into())),
        DataType::Float64 => each!(column.as_primitive::<Float64Type>(), Value::Double),
        DataType::Boolean => each!(column.as_boolean(), |v: bool| Value::Int(v.into())),
        DataType::Utf8 => each!(column.as_string::<i32>(), |v: &str| Value::Bytes(v.as_bytes().to_vec())),
        DataType::Date32 => each!(column.as_primitive::<Date32Type>(), |v: i32| {
            let date = NaiveDate::from_num_days_from_ce_opt(v + 719_163).unwrap_or_default();
            Value::Date(date.year() as u16, date.month() as u8, date.day() as u8, 0, 0, 0, 0)
        }),
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => {
            each!(column.as_primitive::<TimestampMicrosecondType>(), |v: i64| {
                let t = chrono::DateTime::from_timestamp_micros(v)
                    .unwrap_or_default()
                    .naive_utc();
                Value::Date(
                    t.year() as u16,
                    t.month() as u8,
                    t.day() as u8,
                    t.hour() as u8,
                    t.minute() as u8,
                    t.second() as u8,
                    t.nanosecond() / 1_000,
                )
            })
        }
        _ => {
            let text = arrow::compute::cast(column, &DataType::Utf8)
                .map_err(|e| format!("a {} column cannot be written to MySQL: {e}", column.data_type()))?;
            each!(text.as_string::<i32>(), |v: &str| Value::Bytes(v.as_bytes().to_vec()))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn tables_are_created_with_typed_columns_and_the_key() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("channel_id", DataType::Utf8, true),
            Field::new(
                "window_start",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("message_count", DataType::Int64, true),
            Field::new("avg_len", DataType::Float64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let key = vec!["window_start".to_string(), "channel_id".to_string()];
        let create = create_table_statement("channel_metrics_minute", &schema, &key);
        assert!(create.contains("`channel_id` VARCHAR(191) NOT NULL"), "{create}");
        assert!(create.contains("`window_start` DATETIME(6) NOT NULL"), "{create}");
        assert!(create.contains("`message_count` BIGINT NULL"), "{create}");
        assert!(create.contains("`note` TEXT NULL"), "{create}");
        assert!(
            create.contains("PRIMARY KEY (`window_start`, `channel_id`)"),
            "{create}"
        );
        let upsert = upsert_statement("t", &["a", "b"], &["a".to_string()], 2);
        assert!(upsert.contains("VALUES (?, ?), (?, ?)"), "{upsert}");
        assert!(
            upsert.contains("`b` = VALUES(`b`)") && !upsert.contains("`a` = VALUES"),
            "{upsert}"
        );
    }
}
