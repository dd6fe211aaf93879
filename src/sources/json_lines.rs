//! JSON records (lines of a file, values of stream records) decoded straight into Arrow with
//! arrow-json, with every bad record identified and rejected alone.
//!
//! The fast path feeds a whole batch of records to one arrow-json decoder. Only when that fails
//! is the batch split, to find exactly which records are bad.

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::json::reader::{Decoder, ReaderBuilder};
use arrow::record_batch::RecordBatch;

use super::BATCH_ROWS;
use super::extended_json::rewrite_document;

/// Which JSON the lines hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Plain JSON; timestamps as ISO-8601 strings.
    Plain,
    /// MongoDB Extended JSON as written by `mongoexport`.
    MongoExtended,
}

/// A record the decoder could not read: its id, why, and its bytes as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The id it was pushed with (a line number, a position in a micro-batch).
    pub id: u64,
    /// Why it was rejected.
    pub reason: String,
    /// The record's bytes (after the Extended JSON rewrite, when there was one).
    pub raw: Vec<u8>,
}

/// What a decoder produced: rows in push order, the ids of the records they came from, and
/// the records rejected.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Rows of the declared schema.
    pub batches: Vec<RecordBatch>,
    /// For each row, in order, the id of its record.
    pub ids: Vec<u64>,
    /// Records that could not be read.
    pub rejected: Vec<Rejected>,
}

/// Decodes JSON records (one per line of a file, or one per stream record) into record batches
/// of the declared schema.
pub struct JsonDecoder {
    schema: SchemaRef,
    dialect: Dialect,
    /// The current batch's records, as plain JSON, back to back.
    text: Vec<u8>,
    /// For each pending record: its id and byte range in `text`.
    pending: Vec<(u64, std::ops::Range<usize>)>,
    out: Decoded,
}

impl JsonDecoder {
    /// A decoder into `schema`.
    pub fn new(schema: SchemaRef, dialect: Dialect) -> Self {
        Self {
            schema,
            dialect,
            text: Vec::new(),
            pending: Vec::with_capacity(BATCH_ROWS),
            out: Decoded::default(),
        }
    }

    /// Adds one record; blank records (empty lines) are skipped.
    pub fn push(&mut self, id: u64, record: &[u8]) {
        let record = record.trim_ascii();
        if record.is_empty() {
            return;
        }
        let start = self.text.len();
        match self.dialect {
            Dialect::Plain => self.text.extend_from_slice(record),
            Dialect::MongoExtended => {
                if let Err(message) = rewrite_document(record, &mut self.text) {
                    self.text.truncate(start);
                    self.reject(id, format!("invalid JSON: {message}"), record.to_vec());
                    return;
                }
            }
        }
        self.pending.push((id, start..self.text.len()));
        if self.pending.len() >= BATCH_ROWS {
            self.flush_pending();
        }
    }

    /// Decodes what is pending and returns everything decoded.
    pub fn finish(mut self) -> Decoded {
        self.flush_pending();
        self.out
    }

    fn reject(&mut self, id: u64, reason: String, raw: Vec<u8>) {
        self.out.rejected.push(Rejected { id, reason, raw });
    }

    fn new_decoder(&self) -> Decoder {
        ReaderBuilder::new(self.schema.clone())
            .with_batch_size(BATCH_ROWS)
            .build_decoder()
            .expect("declared schemas are decodable")
    }

    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        match self.decode_records(&pending) {
            Ok(batch) => self.keep(batch, &pending),
            Err(_) => self.split_until_bad_records_are_alone(&pending),
        }
        self.text.clear();
        self.pending = pending;
        self.pending.clear();
    }

    fn keep(&mut self, batch: Option<RecordBatch>, records: &[(u64, std::ops::Range<usize>)]) {
        if let Some(batch) = batch {
            self.out.ids.extend(records.iter().map(|(id, _)| *id));
            self.out.batches.push(batch);
        }
    }

    /// Decodes records together; fails if any one of them is bad.
    fn decode_records(&self, records: &[(u64, std::ops::Range<usize>)]) -> Result<Option<RecordBatch>, ArrowError> {
        let mut decoder = self.new_decoder();
        for (_, range) in records {
            let record = &self.text[range.clone()];
            let consumed = decoder.decode(record)?;
            // A record must hold exactly one complete value; a truncated one would otherwise
            // swallow the next.
            if consumed != record.len() || decoder.has_partial_record() {
                return Err(ArrowError::JsonError(
                    "the record is not one complete JSON object".into(),
                ));
            }
        }
        decoder.flush()
    }

    /// Finds the bad records of a batch that failed by halving it: halves that decode are kept
    /// whole, so a batch with a few bad records costs about two decodes rather than one per
    /// record.
    fn split_until_bad_records_are_alone(&mut self, records: &[(u64, std::ops::Range<usize>)]) {
        let (first, second) = records.split_at(records.len() / 2);
        for half in [first, second] {
            if half.is_empty() {
                continue;
            }
            match self.decode_records(half) {
                Ok(batch) => self.keep(batch, half),
                Err(e) if half.len() == 1 => {
                    let (id, range) = &half[0];
                    let raw = self.text[range.clone()].to_vec();
                    self.reject(*id, describe_decode_error(&e), raw);
                }
                Err(_) => self.split_until_bad_records_are_alone(half),
            }
        }
    }
}

fn describe_decode_error(error: &ArrowError) -> String {
    match error {
        ArrowError::JsonError(message) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::config::columns::timestamp_type;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("at", timestamp_type(), true),
        ]))
    }

    #[test]
    fn good_lines_decode_and_each_bad_line_is_rejected_with_its_number() {
        let mut decoder = JsonDecoder::new(schema(), Dialect::MongoExtended);
        let lines = [
            r#"{"_id":{"$oid":"a"},"n":{"$numberLong":"1"},"at":{"$date":"2024-01-01T00:00:00Z"}}"#,
            r#"{"_id":{"$oid":"b"},"n":"#,
            "",
            r#"{"_id":{"$oid":"c"},"n":"not a number"}"#,
            r#"{"n":4}"#,
            r#"{"_id":"e","n":5,"extra":[1,2]}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            decoder.push(i as u64 + 1, line.as_bytes());
        }
        let Decoded { batches, ids, rejected } = decoder.finish();
        assert_eq!(ids, [1, 6]);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
        let ids: Vec<_> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids, ["a", "e"]);
        let ids: Vec<_> = rejected.iter().map(|r| r.id).collect();
        assert_eq!(ids, [2, 4, 5]);
        assert!(rejected[1].reason.contains("not a number"), "{:?}", rejected[1]);
        assert_eq!(
            rejected[1].raw,
            lines[3].replace(r#"{"$oid":"c"}"#, r#""c""#).as_bytes()
        );
    }

    #[test]
    fn a_truncated_plain_line_does_not_swallow_the_next_one() {
        let mut decoder = JsonDecoder::new(schema(), Dialect::Plain);
        decoder.push(1, br#"{"_id":"a","n":1"#);
        decoder.push(2, br#"{"_id":"b","n":2}"#);
        let Decoded { batches, rejected, .. } = decoder.finish();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].id, 1);
        let n = batches[0].column(1).as_primitive::<Int64Type>();
        assert_eq!((n.len(), n.value(0)), (1, 2));
    }

    #[test]
    fn many_lines_make_full_batches() {
        let mut decoder = JsonDecoder::new(schema(), Dialect::Plain);
        for i in 0..(BATCH_ROWS as u64 + 10) {
            decoder.push(i + 1, format!(r#"{{"_id":"{i}","n":{i}}}"#).as_bytes());
        }
        let Decoded { batches, rejected, .. } = decoder.finish();
        assert!(rejected.is_empty());
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [BATCH_ROWS, 10]
        );
    }
}
