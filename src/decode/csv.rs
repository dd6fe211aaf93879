//! CSV with a header row, read with the `csv` crate and converted to the declared schema by
//! [`TextTable`]. Columns are matched by header name; extra columns are ignored.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::reject::{Location, Reject};
use super::text_table::TextTable;

/// Decodes a whole CSV file of `source`. Fails only when the header lacks a declared column;
/// bad rows are rejected with their line in `file`.
pub fn decode(
    schema: &SchemaRef,
    bytes: &[u8],
    source: &str,
    file: &str,
) -> Result<(Vec<RecordBatch>, Vec<Reject>), String> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| format!("reading the header row: {e}"))?
        .clone();
    let header_names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let mut positions = Vec::with_capacity(schema.fields().len());
    let mut missing = Vec::new();
    for field in schema.fields() {
        match header_names.iter().position(|h| h == field.name()) {
            Some(i) => positions.push(i),
            None => missing.push(field.name().as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the header has no column {} (header: {})",
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            header_names.join(",")
        ));
    }
    let file = file.to_string();
    let mut table = TextTable::new(schema.clone(), source, move |line| Location::Line {
        file: file.clone(),
        line,
    });
    let mut record = ::csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.len() != header.len() {
                    let raw = record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f))
                        .collect::<Vec<_>>()
                        .join(",");
                    let reason = format!("has {} fields, the header has {}", record.len(), header.len());
                    table.reject_row(line, reason, raw.as_bytes());
                    continue;
                }
                table.push_row(line, positions.iter().map(|&i| record.get(i)));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                table.reject_row(line, format!("unreadable CSV: {e}"), b"");
            }
        }
    }
    Ok(table.finish())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn columns_are_matched_by_header_and_bad_rows_are_located_by_line() {
        let csv = "email,ignored,id\na@x.io,1,1\n\"b,quoted\",2,two\nc@x.io,3\n";
        let (batches, rejected) = decode(&schema(), csv.as_bytes(), "users", "users.csv").unwrap();
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![1]
        );
        assert_eq!(batches[0].column(1).as_string::<i32>().value(0), "a@x.io");
        let found: Vec<_> = rejected.iter().map(|r| r.location.to_string()).collect();
        assert_eq!(found, ["users.csv:4", "users.csv:3"]);
    }

    #[test]
    fn a_missing_declared_column_is_an_error_listing_the_header() {
        let err = decode(&schema(), b"email\nx\n", "users", "u.csv").unwrap_err();
        assert!(err.contains("no column `id`") && err.contains("header: email"), "{err}");
    }
}
