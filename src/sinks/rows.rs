//! Rows as text, the one way every sink and table does it: a row as a JSON object (Kafka
//! records, alerts, quarantined rows, documents) and a row's key columns as one string (Kafka
//! record keys, alert keys, document ids).

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// How null values appear in a row's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    /// `"column": null` (what consumers of Kafka records and alerts expect).
    Explicit,
    /// Left out (the compact form of quarantined rows).
    Omitted,
}

/// Each row as a JSON object (timestamps as ISO-8601 strings).
pub fn rows_as_json(batch: &RecordBatch, nulls: Nulls) -> Result<Vec<String>, ArrowError> {
    let mut bytes = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(nulls == Nulls::Explicit)
            .build::<_, arrow::json::writer::LineDelimited>(&mut bytes);
        writer.write(batch)?;
        writer.finish()?;
    }
    let text = String::from_utf8(bytes).map_err(|e| ArrowError::JsonError(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Each row as a JSON object with explicit nulls.
pub fn rows_as_json_lines(batch: &RecordBatch) -> Result<Vec<String>, ArrowError> {
    rows_as_json(batch, Nulls::Explicit)
}

/// The rows of `batches` as JSON objects with explicit nulls (timestamps as ISO-8601 strings),
/// for the web pages' tables.
pub fn rows_as_json_values(batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>, ArrowError> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    serde_json::from_slice(&writer.into_inner()).map_err(|e| ArrowError::JsonError(e.to_string()))
}

/// Each row's `key` columns as text joined with `|` (a null as `NULL`).
pub fn key_texts(batch: &RecordBatch, key: &[String]) -> Result<Vec<String>, ArrowError> {
    let columns: Vec<ArrayRef> = key
        .iter()
        .map(|name| {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| ArrowError::SchemaError(format!("key column `{name}` is not in the rows")))?;
            arrow::compute::cast(column, &DataType::Utf8)
        })
        .collect::<Result<_, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    let text = c.as_string::<i32>();
                    if text.is_valid(row) { text.value(row) } else { "NULL" }
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect())
}

/// The ids of a batch's rows as documents of a search index or a collection: the `key`
/// columns' texts ([`key_texts`]), so that a row written again replaces its document; without a
/// key, `<output>-<epoch>-<n>` with `n` counting the epoch's rows from `first`, the same again
/// when a replay writes the same rows.
pub fn document_ids(
    batch: &RecordBatch,
    key: &[String],
    output: &str,
    epoch: u64,
    first: usize,
) -> Result<Vec<String>, ArrowError> {
    if !key.is_empty() {
        return key_texts(batch, key);
    }
    Ok((0..batch.num_rows())
        .map(|row| format!("{output}-{epoch}-{}", first + row))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2)])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_render_as_json_with_or_without_nulls_and_keys_join_with_a_bar() {
        assert_eq!(
            rows_as_json(&batch(), Nulls::Explicit).unwrap(),
            [r#"{"item":"a","n":1}"#, r#"{"item":null,"n":2}"#]
        );
        assert_eq!(rows_as_json(&batch(), Nulls::Omitted).unwrap()[1], r#"{"n":2}"#);
        assert_eq!(
            key_texts(&batch(), &["item".into(), "n".into()]).unwrap(),
            ["a|1", "NULL|2"]
        );
        assert!(key_texts(&batch(), &["nope".into()]).is_err());
    }
}
