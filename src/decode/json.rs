//! JSON records (lines of a file, values of stream records) decoded straight into Arrow with
//! arrow-json, with every bad record identified and rejected alone.
//!
//! A record is one JSON object: it gives exactly one row or one reject, whatever its bytes — an
//! empty record, a value that is not an object, a truncated object, two objects back to back
//! (`{...}{...}`), a value that does not fit its column are each rejected with the reason
//! (arrow-json's, or ours for empty records and more than one value).
//!
//! The fast path feeds a whole batch of records to one arrow-json decoder. Only when that fails
//! is the batch split, to find exactly which records are bad. Large micro-batches are decoded on
//! every core ([`decode_in_parallel`]).

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::json::reader::{Decoder, ReaderBuilder};
use arrow::record_batch::RecordBatch;

use super::BATCH_ROWS;
use super::extended_json::rewrite_document;
use super::reject::{Location, Reject};

/// Which JSON the lines hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Plain JSON; timestamps as ISO-8601 strings.
    Plain,
    /// MongoDB Extended JSON as written by `mongoexport`.
    MongoExtended,
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
    pub rejected: Vec<Reject>,
}

/// A record that failed, before its location is known: its id, why, and its bytes.
type Failure = (u64, String, Vec<u8>);

/// Decodes JSON records (one per line of a file, or one per stream record) into record batches
/// of the declared schema.
pub struct JsonDecoder {
    schema: SchemaRef,
    dialect: Dialect,
    /// The current batch's records, as plain JSON, back to back.
    text: Vec<u8>,
    /// For each pending record: its id and byte range in `text`.
    pending: Vec<(u64, std::ops::Range<usize>)>,
    batches: Vec<RecordBatch>,
    ids: Vec<u64>,
    failures: Vec<Failure>,
}

impl JsonDecoder {
    /// A decoder into `schema`.
    pub fn new(schema: SchemaRef, dialect: Dialect) -> Self {
        Self {
            schema,
            dialect,
            text: Vec::new(),
            pending: Vec::with_capacity(BATCH_ROWS),
            batches: Vec::new(),
            ids: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Adds one record.
    pub fn push(&mut self, id: u64, record: &[u8]) {
        let trimmed = record.trim_ascii();
        if trimmed.is_empty() {
            return self.reject(id, "empty record: a record is one JSON object".into(), record.to_vec());
        }
        let record = trimmed;
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

    /// Decodes what is pending and returns everything decoded; `locate` says where the record
    /// pushed with an id was, for the rejects of `source`.
    pub fn finish(mut self, source: &str, locate: impl Fn(u64) -> Location) -> Decoded {
        self.flush_pending();
        Decoded {
            batches: self.batches,
            ids: self.ids,
            rejected: self
                .failures
                .into_iter()
                .map(|(id, reason, raw)| Reject::new(source, locate(id), reason, &raw))
                .collect(),
        }
    }

    fn reject(&mut self, id: u64, reason: String, raw: Vec<u8>) {
        self.failures.push((id, reason, raw));
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
            self.ids.extend(records.iter().map(|(id, _)| *id));
            self.batches.push(batch);
        }
    }

    /// Decodes records together; fails if any one of them is bad.
    fn decode_records(&self, records: &[(u64, std::ops::Range<usize>)]) -> Result<Option<RecordBatch>, ArrowError> {
        let mut decoder = self.new_decoder();
        for (decoded, (_, range)) in records.iter().enumerate() {
            let record = &self.text[range.clone()];
            let consumed = decoder.decode(record)?;
            // A record must hold exactly one complete value: a truncated one would otherwise
            // swallow the next, and `{...}{...}` would give two rows for one record.
            if consumed != record.len() || decoder.has_partial_record() {
                return Err(ArrowError::JsonError(
                    "the record is not one complete JSON object".into(),
                ));
            }
            if decoder.len() != decoded + 1 {
                return Err(ArrowError::JsonError(
                    "the record holds more than one JSON value; a record is one JSON object".into(),
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

/// Below this many records per thread, decoding on one thread is faster than starting more.
const RECORDS_PER_THREAD: usize = 8_192;

/// Decodes `count` records (`record(i)` is record `i`, its id `i`) on every core: the records
/// are cut into consecutive runs, one per thread, and the results joined in order.
pub fn decode_in_parallel<'r>(
    schema: &SchemaRef,
    dialect: Dialect,
    count: usize,
    record: impl Fn(usize) -> &'r [u8] + Sync,
    source: &str,
    locate: impl Fn(u64) -> Location + Sync,
) -> Decoded {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(count / RECORDS_PER_THREAD).max(1);
    let decode_run = |range: std::ops::Range<usize>| {
        let mut decoder = JsonDecoder::new(schema.clone(), dialect);
        for i in range {
            decoder.push(i as u64, record(i));
        }
        decoder.finish(source, &locate)
    };
    if threads == 1 {
        return decode_run(0..count);
    }
    let per_thread = count.div_ceil(threads);
    let parts: Vec<Decoded> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = t * per_thread..((t + 1) * per_thread).min(count);
                let decode_run = &decode_run;
                scope.spawn(move || decode_run(range))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("JSON decoding does not panic"))
            .collect()
    });
    let mut all = Decoded::default();
    for part in parts {
        all.batches.extend(part.batches);
        all.ids.extend(part.ids);
        all.rejected.extend(part.rejected);
    }
    all
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

    fn at_line(line: u64) -> Location {
        Location::Line {
            file: "m.json".into(),
            line,
        }
    }

    #[test]
    fn every_malformed_shape_is_one_reject_and_every_good_record_one_row() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (br#"{"_id":"a","n":1}"#, None),
            (
                br#"{"_id":"b","n":2}{"_id":"c","n":3}"#,
                Some("more than one JSON value|trailing characters"),
            ),
            (
                br#"{"_id":"d"} {"_id":"e"}"#,
                Some("more than one JSON value|trailing characters"),
            ),
            (br#"{"_id":"f","n":"#, Some("")),
            (b"", Some("empty record")),
            (b"   \t ", Some("empty record")),
            (b"null", Some("")),
            (b"42", Some("")),
            (br#"[{"_id":"g"}]"#, Some("")),
            (br#""text""#, Some("")),
            (br#"{"_id":"h","n":"many"}"#, Some("")),
            (b"\xff\xfe{}", Some("")),
            (br#"{"_id":"i","n":4}"#, None),
            (b"{}", Some("")),
            (br#"{"_id":"j"}}"#, Some("")),
        ];
        for dialect in [Dialect::Plain, Dialect::MongoExtended] {
            let mut decoder = JsonDecoder::new(schema(), dialect);
            for (i, (record, _)) in cases.iter().enumerate() {
                decoder.push(i as u64 + 1, record);
            }
            let Decoded { batches, ids, rejected } = decoder.finish("raw", at_line);
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(rows, ids.len(), "{dialect:?}: one id per row");
            let good: Vec<u64> = (1..=cases.len() as u64)
                .filter(|i| cases[*i as usize - 1].1.is_none())
                .collect();
            assert_eq!(ids, good, "{dialect:?}");
            assert_eq!(
                rows + rejected.len(),
                cases.len(),
                "{dialect:?}: every record accounted for once"
            );
            for reject in &rejected {
                let Location::Line { line, .. } = reject.location else {
                    unreachable!()
                };
                let expected = cases[line as usize - 1].1.expect("only bad records are rejected");
                assert!(
                    expected.split('|').any(|e| reject.reason.contains(e)),
                    "{dialect:?} line {line}: {}",
                    reject.reason
                );
            }
        }
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
        let Decoded { batches, ids, rejected } = decoder.finish("raw", at_line);
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
        let lines_rejected: Vec<String> = rejected.iter().map(|r| r.location.to_string()).collect();
        assert_eq!(lines_rejected, ["m.json:2", "m.json:3", "m.json:4", "m.json:5"]);
        assert!(rejected[1].reason.contains("empty record"), "{:?}", rejected[1]);
        assert!(rejected[2].reason.contains("not a number"), "{:?}", rejected[2]);
        assert_eq!(
            rejected[2].raw,
            lines[3].replace(r#"{"$oid":"c"}"#, r#""c""#).as_bytes()
        );
    }

    #[test]
    fn a_truncated_plain_line_does_not_swallow_the_next_one() {
        let mut decoder = JsonDecoder::new(schema(), Dialect::Plain);
        decoder.push(1, br#"{"_id":"a","n":1"#);
        decoder.push(2, br#"{"_id":"b","n":2}"#);
        let Decoded { batches, rejected, .. } = decoder.finish("raw", at_line);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].location, at_line(1));
        let n = batches[0].column(1).as_primitive::<Int64Type>();
        assert_eq!((n.len(), n.value(0)), (1, 2));
    }

    #[test]
    fn many_lines_make_full_batches() {
        let mut decoder = JsonDecoder::new(schema(), Dialect::Plain);
        for i in 0..(BATCH_ROWS as u64 + 10) {
            decoder.push(i + 1, format!(r#"{{"_id":"{i}","n":{i}}}"#).as_bytes());
        }
        let Decoded { batches, rejected, .. } = decoder.finish("raw", at_line);
        assert!(rejected.is_empty());
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [BATCH_ROWS, 10]
        );
    }
}
