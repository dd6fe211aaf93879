//! CSV with a header row, read with the `csv` crate and converted to the declared schema by
//! [`TextTable`]. Columns are matched by header name; extra columns are ignored. The file is
//! pulled through [`std::io::Read`] and its rows handed on a batch at a time, so decoding a
//! file takes memory for a batch, not for the file.

use std::io::Read;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::reject::{Location, Reject};
use super::text_table::TextTable;
use crate::error::Error;

/// Decodes the CSV file `file` of `source` from `input`, handing each batch of rows (and the
/// rows rejected since the last one) to `emit`, which returns false to stop reading. Bad rows
/// are rejected with their line; the file fails only when its header lacks a declared column
/// or reading it fails (an [`Error`] carried by `input`'s I/O error is returned as it is).
pub fn decode(
    schema: &SchemaRef,
    input: impl Read,
    source: &str,
    file: &str,
    mut emit: impl FnMut(Vec<RecordBatch>, Vec<Reject>) -> bool,
) -> Result<(), Error> {
    let failed = |message: String| Error::Source {
        source_name: source.to_string(),
        location: file.to_string(),
        message,
        retryable: false,
        cause: None,
    };
    // Records end at `\n` only, and a `\r` before it is dropped below: with the csv crate's
    // default (any of `\r`, `\n`, `\r\n`), a record after a CRLF line end was placed on the line
    // before, so a quarantined row of a Windows export named the wrong line (found by fuzzing).
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_reader(input);
    let header = match reader.byte_headers() {
        Ok(header) => header.clone(),
        Err(e) => return Err(read_failure(e).unwrap_or_else(|e| failed(format!("reading the header row: {e}")))),
    };
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
        return Err(failed(format!(
            "the header has no column {} (header: {})",
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            header_names.join(",")
        )));
    }
    let shown = file.to_string();
    let mut table = TextTable::new(schema.clone(), source, move |line| Location::Line {
        file: shown.clone(),
        line,
    });
    let mut record = ::csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                let fields = record.len();
                let field = |i: usize| {
                    let cell = record.get(i)?;
                    Some(if i + 1 == fields {
                        cell.strip_suffix(b"\r").unwrap_or(cell)
                    } else {
                        cell
                    })
                };
                if fields == 1 && field(0) == Some(b"") {
                    // A blank line of a CRLF file.
                    continue;
                }
                if fields != header.len() {
                    let raw = (0..fields)
                        .filter_map(field)
                        .map(String::from_utf8_lossy)
                        .collect::<Vec<_>>()
                        .join(",");
                    let reason = format!("has {fields} fields, the header has {}", header.len());
                    table.reject_row(line, reason, raw.as_bytes());
                } else {
                    table.push_row(line, positions.iter().map(|&i| field(i)));
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                match read_failure(e) {
                    Ok(e) => return Err(e),
                    Err(e) => table.reject_row(line, format!("unreadable CSV: {e}"), b""),
                }
            }
        }
        if table.has_ready() {
            let (batches, rejected) = table.take_ready();
            if !emit(batches, rejected) {
                return Ok(());
            }
        }
    }
    let (batches, rejected) = table.finish();
    emit(batches, rejected);
    Ok(())
}

/// The failure of reading (not parsing) the file, when that is what `e` is: the [`Error`] the
/// input carried, or the I/O error; else `e` back, a record the parser could not read.
fn read_failure(e: ::csv::Error) -> Result<Error, ::csv::Error> {
    let ::csv::ErrorKind::Io(io) = e.kind() else {
        return Err(e);
    };
    if !io.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Ok(Error::Internal(format!("reading CSV: {io}")));
    }
    let ::csv::ErrorKind::Io(io) = e.into_kind() else {
        unreachable!("an I/O error above")
    };
    let carried = io.into_inner().and_then(|inner| inner.downcast::<Error>().ok());
    Ok(*carried.expect("checked above"))
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

    fn decode_all(csv: &[u8]) -> Result<(Vec<RecordBatch>, Vec<Reject>), Error> {
        let (mut batches, mut rejected) = (Vec::new(), Vec::new());
        decode(&schema(), csv, "users", "users.csv", |b, r| {
            batches.extend(b);
            rejected.extend(r);
            true
        })?;
        Ok((batches, rejected))
    }

    #[test]
    fn columns_are_matched_by_header_and_bad_rows_are_located_by_line() {
        let csv = "email,ignored,id\na@x.io,1,1\n\"b,quoted\",2,two\nc@x.io,3\n";
        let (batches, rejected) = decode_all(csv.as_bytes()).unwrap();
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![1]
        );
        assert_eq!(batches[0].column(1).as_string::<i32>().value(0), "a@x.io");
        let found: Vec<_> = rejected.iter().map(|r| r.location.to_string()).collect();
        assert_eq!(found, ["users.csv:4", "users.csv:3"]);
    }

    #[test]
    fn rows_of_a_crlf_file_are_located_by_their_own_line() {
        // A fuzzing finding: rows after a CRLF line end were placed on the line before.
        let csv = "id,email\r\n1,a@x.io\r\none,b@x.io\r\n\r\n3,\"c\r\nd\"\r\nfour,e@x.io\r\n5,f@x.io,extra\r\n";
        let (batches, rejected) = decode_all(csv.as_bytes()).unwrap();
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(batches[0].column(1).as_string::<i32>().value(0), "a@x.io");
        assert_eq!(batches[0].column(1).as_string::<i32>().value(1), "c\r\nd");
        let found: Vec<_> = rejected.iter().map(|r| r.location.to_string()).collect();
        assert_eq!(found, ["users.csv:8", "users.csv:3", "users.csv:7"]);
        assert_eq!(rejected[0].text(), "5,f@x.io,extra");
    }

    #[test]
    fn a_missing_declared_column_is_an_error_listing_the_header() {
        let err = decode_all(b"email\nx\n").unwrap_err().to_string();
        assert!(err.contains("no column `id`") && err.contains("header: email"), "{err}");
        assert!(err.contains("users.csv"), "{err}");
    }

    #[test]
    fn rows_are_handed_on_a_batch_at_a_time_and_a_read_failure_ends_the_file() {
        let mut csv = String::from("id,email\n");
        for i in 0..super::super::BATCH_ROWS + 5 {
            csv.push_str(&format!("{i},u{i}@x.io\n"));
        }
        let mut handed = Vec::new();
        decode(&schema(), csv.as_bytes(), "users", "users.csv", |b, _| {
            handed.push(b.iter().map(RecordBatch::num_rows).sum::<usize>());
            true
        })
        .unwrap();
        assert_eq!(handed, [super::super::BATCH_ROWS, 5]);

        /// Gives the header, then fails as a store that went away would.
        struct Broken(bool);
        impl std::io::Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    let away = Error::Source {
                        source_name: "users".into(),
                        location: "s3://landing/users.csv".into(),
                        message: "connection refused".into(),
                        retryable: true,
                        cause: None,
                    };
                    return Err(std::io::Error::other(away));
                }
                let header = b"id,email\n1,a@x.io\n";
                buf[..header.len()].copy_from_slice(header);
                Ok(header.len())
            }
        }
        let err = decode(&schema(), Broken(false), "users", "users.csv", |_, _| true).unwrap_err();
        assert!(
            err.is_retryable() && err.to_string().contains("connection refused"),
            "{err}"
        );
    }
}
