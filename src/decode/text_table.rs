//! Rows of text cells (CSV fields, MySQL text-protocol values) turned into typed Arrow batches.
//!
//! Cells are collected as string columns and converted with Arrow's casts, column by column.
//! A row with a cell that does not convert (or a required column left empty) is rejected with
//! the column and value named; the other rows go on. An empty cell or `\N` is NULL, except in
//! string columns where an empty cell stays an empty string.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, StringBuilder};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::FormatOptions;

use super::BATCH_ROWS;
use super::reject::{Location, Reject};

/// Collects text rows and converts them to the declared schema in batches.
pub struct TextTable {
    schema: SchemaRef,
    source: String,
    locate: Box<dyn Fn(u64) -> Location + Send>,
    builders: Vec<StringBuilder>,
    row_numbers: Vec<u64>,
    batches: Vec<RecordBatch>,
    rejected: Vec<Reject>,
}

impl TextTable {
    /// A table of `source`'s rows with the declared schema; `locate` says where a row number
    /// was (a file's line, a table's row).
    pub fn new(schema: SchemaRef, source: &str, locate: impl Fn(u64) -> Location + Send + 'static) -> Self {
        let builders = schema.fields().iter().map(|_| StringBuilder::new()).collect();
        Self {
            schema,
            source: source.to_string(),
            locate: Box::new(locate),
            builders,
            row_numbers: Vec::with_capacity(BATCH_ROWS),
            batches: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// The number of columns a row must have.
    pub fn width(&self) -> usize {
        self.builders.len()
    }

    /// Rejects a row before conversion (wrong number of fields, unreadable bytes).
    pub fn reject_row(&mut self, row_number: u64, reason: impl Into<String>, raw: &[u8]) {
        self.rejected
            .push(Reject::new(&self.source, (self.locate)(row_number), reason, raw));
    }

    /// Adds one row; `cells` are in schema order, `None` for SQL NULL.
    pub fn push_row<'c>(&mut self, row_number: u64, cells: impl IntoIterator<Item = Option<&'c [u8]>>) {
        let cells: Vec<Option<&'c [u8]>> = cells.into_iter().collect();
        if cells.len() != self.builders.len() {
            let raw = join_cells(&cells);
            let reason = format!("has {} fields, expected {}", cells.len(), self.builders.len());
            return self.reject_row(row_number, reason, raw.as_bytes());
        }
        let mut texts = Vec::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            match cell.map(std::str::from_utf8).transpose() {
                Ok(text) => texts.push(text),
                Err(_) => {
                    let name = self.schema.field(i).name().clone();
                    let raw = join_cells(&cells);
                    return self.reject_row(row_number, format!("column `{name}`: not valid UTF-8"), raw.as_bytes());
                }
            }
        }
        for ((builder, text), field) in self.builders.iter_mut().zip(texts).zip(self.schema.fields()) {
            match text {
                Some("\\N") | None => builder.append_null(),
                Some("") if field.data_type() != &DataType::Utf8 => builder.append_null(),
                Some(text) => builder.append_value(text),
            }
        }
        self.row_numbers.push(row_number);
        if self.row_numbers.len() >= BATCH_ROWS {
            self.convert_pending();
        }
    }

    /// Whether a batch is converted and waiting for [`take_ready`](Self::take_ready).
    pub fn has_ready(&self) -> bool {
        !self.batches.is_empty()
    }

    /// The batches converted and the records rejected so far, taken (a source streaming its
    /// rows hands them on as they fill).
    pub fn take_ready(&mut self) -> (Vec<RecordBatch>, Vec<Reject>) {
        (std::mem::take(&mut self.batches), std::mem::take(&mut self.rejected))
    }

    /// Converts what is pending and returns every batch and rejected record.
    pub fn finish(mut self) -> (Vec<RecordBatch>, Vec<Reject>) {
        self.convert_pending();
        (self.batches, self.rejected)
    }

    fn convert_pending(&mut self) {
        if self.row_numbers.is_empty() {
            return;
        }
        let texts: Vec<StringArray> = self.builders.iter_mut().map(StringBuilder::finish).collect();
        let rows = texts[0].len();
        let safe = CastOptions {
            safe: true,
            format_options: FormatOptions::default(),
        };
        let mut reasons: Vec<Option<String>> = vec![None; rows];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(texts.len());
        for (text, field) in texts.iter().zip(self.schema.fields()) {
            let typed = cast_with_options(text, field.data_type(), &safe).expect("text casts to declared types");
            for (row, reason) in reasons.iter_mut().enumerate() {
                if reason.is_some() {
                    continue;
                }
                if text.is_valid(row) && typed.is_null(row) {
                    *reason = Some(format!(
                        "column `{}`: cannot read {:?} as {}",
                        field.name(),
                        text.value(row),
                        field.data_type()
                    ));
                } else if typed.is_null(row) && !field.is_nullable() {
                    *reason = Some(format!("column `{}` is required but empty", field.name()));
                }
            }
            columns.push(typed);
        }
        // Required columns may hold nulls in rows about to be rejected, so the batch is built
        // nullable and gets the declared schema back once those rows are filtered out.
        let batch = RecordBatch::try_new(nullable(&self.schema), columns).expect("columns match the schema");
        let keep: BooleanArray = reasons.iter().map(|r| Some(r.is_none())).collect();
        for (row, reason) in reasons.into_iter().enumerate() {
            if let Some(reason) = reason {
                let record = row_as_json(&self.schema, &texts, row);
                let location = (self.locate)(self.row_numbers[row]);
                self.rejected
                    .push(Reject::new(&self.source, location, reason, record.as_bytes()));
            }
        }
        let good = filter_record_batch(&batch, &keep).expect("filter mask has one entry per row");
        if good.num_rows() > 0 {
            let good = RecordBatch::try_new(self.schema.clone(), good.columns().to_vec())
                .expect("rejected rows held every null of required columns");
            self.batches.push(good);
        }
        self.row_numbers.clear();
    }
}

fn row_as_json(schema: &SchemaRef, texts: &[StringArray], row: usize) -> String {
    let mut object = serde_json::Map::new();
    for (field, text) in schema.fields().iter().zip(texts) {
        let value = if text.is_null(row) {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(text.value(row).to_string())
        };
        object.insert(field.name().clone(), value);
    }
    serde_json::Value::Object(object).to_string()
}

fn join_cells(cells: &[Option<&[u8]>]) -> String {
    cells
        .iter()
        .map(|c| {
            c.map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_else(|| "\\N".into())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The schema with every field nullable.
pub fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;
    use crate::config::columns::timestamp_type;

    #[test]
    fn rows_convert_and_bad_cells_reject_only_their_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", timestamp_type(), true),
        ]));
        let mut table = TextTable::new(schema, "users", |line| Location::Line {
            file: "users.csv".into(),
            line,
        });
        table.push_row(2, [Some(&b"1"[..]), Some(b"ann"), Some(b"2024-01-01 10:00:00")]);
        table.push_row(3, [Some(&b"x"[..]), Some(b"bob"), Some(b"")]);
        table.push_row(4, [Some(&b"3"[..]), Some(b""), Some(b"\\N")]);
        table.push_row(5, [Some(&b"4"[..])]);
        table.push_row(6, [None, Some(&b"no id"[..]), None]);
        let (batches, rejected) = table.finish();
        assert_eq!(batches.len(), 1);
        let ids = batches[0].column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values().to_vec(), vec![1, 3]);
        assert_eq!(batches[0].column(1).as_string::<i32>().value(1), "");
        assert!(batches[0].column(2).is_null(1));
        assert_eq!(rejected.len(), 3);
        assert!(
            rejected[2].reason.contains("column `id` is required"),
            "{:?}",
            rejected[2]
        );
        assert_eq!(rejected[0].location.to_string(), "users.csv:5");
        assert!(rejected[0].reason.contains("has 1 fields, expected 3"));
        assert_eq!(rejected[1].location.to_string(), "users.csv:3");
        assert!(
            rejected[1].reason.contains("column `id`: cannot read \"x\""),
            "{:?}",
            rejected[1]
        );
        assert!(rejected[1].text().contains("\"name\":\"bob\""));
    }
}
