//! Decoding: records into Arrow batches of their source's declared columns, and every record
//! that cannot be used — undecodable bytes, wrong types, no event time — set aside as a
//! [`Reject`] with where it came from and why, for the quarantine. A record gives exactly one
//! row or one reject, in both modes:
//!
//! - batch: [`decode_lines`] decodes a chunk of a JSON-lines or Extended JSON file, [`csv`]
//!   a CSV file as its parser pulls it, and [`text_table`] the text cells of MySQL rows (and
//!   CSV records) into the declared types;
//! - streaming: [`decode_records`] turns a micro-batch's raw records (JSON, or Protobuf with a
//!   descriptor) into one batch with the Kafka metadata columns attached.

pub mod csv;
pub mod extended_json;
pub mod json;
pub mod protobuf;
mod protobuf_wire;
pub mod reject;
pub mod text_table;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::record_batch::RecordBatch;

use crate::config::describe_bytes;
use crate::config::job::Source;
use crate::config::pipeline::SourceDef;
use crate::config::stream_pipeline::StreamSource;
use crate::error::{Error, Result};
use crate::sources::files::LinesFile;
use crate::sources::mongodb::DocumentChunk;
use crate::sources::positions::RawRecords;
use json::{Decoded, Dialect, JsonDecoder, decode_in_parallel};
use protobuf::ProtobufDecoder;
use reject::{Location, Reject};

/// Rows per record batch decoders produce.
pub const BATCH_ROWS: usize = 8192;

/// Decodes lines of a JSON-lines or Extended JSON source's file (or a chunk of one) into
/// batches of its schema, and the lines that do not fit into rejects naming the file and line.
pub fn decode_lines(source: &Source, file: &LinesFile) -> (Vec<RecordBatch>, Vec<Reject>) {
    let dialect = match source.def {
        SourceDef::MongoExport(_) | SourceDef::Mongodb(_) => Dialect::MongoExtended,
        _ => Dialect::Plain,
    };
    let mut decoder = JsonDecoder::new(source.schema.clone(), dialect);
    for line in 0..file.len() {
        decoder.push(file.line_number(line), file.line(line));
    }
    let Decoded { batches, rejected, .. } = decoder.finish(&source.name, |line| Location::Line {
        file: file.shown.clone(),
        line,
    });
    (batches, rejected)
}

/// Decodes a chunk of a MongoDB collection's documents (relaxed Extended JSON, as a
/// `mongoexport` line would hold them) into batches of the source's schema, and the documents
/// that do not fit into rejects naming the collection and the document's `_id`.
pub fn decode_documents(source: &Source, chunk: &DocumentChunk) -> (Vec<RecordBatch>, Vec<Reject>) {
    let mut decoder = JsonDecoder::new(source.schema.clone(), Dialect::MongoExtended);
    for i in 0..chunk.len() {
        decoder.push(i as u64, chunk.json(i));
    }
    let Decoded { batches, rejected, .. } = decoder.finish(&source.name, |i| Location::Document {
        collection: chunk.origin.clone(),
        id: chunk.id(i as usize).to_string(),
    });
    (batches, rejected)
}

/// Decodes a source's records of one micro-batch into one batch of the source's schema: with
/// `protobuf` when the input carries Protobuf messages, else as JSON. A record larger than
/// `max_record_bytes` is quarantined with its size, undecoded.
pub fn decode_records(
    source: &StreamSource,
    protobuf: Option<&ProtobufDecoder>,
    raw: &RawRecords,
    max_record_bytes: usize,
) -> Result<(RecordBatch, Vec<Reject>)> {
    let Some((fitting, larger)) = raw.without_larger_than(max_record_bytes) else {
        return decode_fitting(source, protobuf, raw);
    };
    let (batch, mut rejected) = decode_fitting(source, protobuf, &fitting)?;
    for i in larger {
        let location = Location::Record {
            topic: source.topic.clone(),
            partition: raw.partitions[i],
            offset: raw.offsets[i],
        };
        let reason = format!(
            "a record of {} is larger than limits.max_record_bytes ({})",
            describe_bytes(raw.value(i).len() as u64),
            describe_bytes(max_record_bytes as u64)
        );
        rejected.push(Reject::new(&source.name, location, reason, raw.value(i)));
    }
    Ok((batch, rejected))
}

fn decode_fitting(
    source: &StreamSource,
    protobuf: Option<&ProtobufDecoder>,
    raw: &RawRecords,
) -> Result<(RecordBatch, Vec<Reject>)> {
    let locate = |i: u64| Location::Record {
        topic: source.topic.clone(),
        partition: raw.partitions[i as usize],
        offset: raw.offsets[i as usize],
    };
    let Decoded {
        batches,
        ids,
        mut rejected,
    } = match protobuf {
        Some(decoder) => decoder.decode(raw, &source.name, locate),
        None => decode_in_parallel(
            &source.value_schema,
            Dialect::Plain,
            raw.len(),
            |i| raw.value(i),
            &source.name,
            locate,
        ),
    };

    let values = concat_batches(&source.value_schema, &batches)
        .map_err(|e| Error::compute(format!("decoding source {}", source.name), e))?;
    let index = |i: &u64| *i as usize;
    let mut columns: Vec<ArrayRef> = values.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![source.topic.as_str(); ids.len()])));
    columns.push(Arc::new(Int32Array::from_iter_values(
        ids.iter().map(|i| raw.partitions[index(i)]),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(
        ids.iter().map(|i| raw.offsets[index(i)]),
    )));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from_iter(ids.iter().map(|i| raw.timestamps[index(i)].map(|ms| ms * 1000)))
            .with_timezone("UTC"),
    ));
    columns
        .push(Arc::new(StringArray::from_iter(ids.iter().map(|i| {
            raw.key(index(i)).map(|k| String::from_utf8_lossy(k).into_owned())
        }))));
    let batch = RecordBatch::try_new(source.schema.clone(), columns)
        .map_err(|e| Error::compute(format!("decoding source {}", source.name), e))?;

    // A record without an event time cannot be placed in any window.
    let event_time = batch.column(source.event_time);
    if event_time.null_count() == 0 {
        return Ok((batch, rejected));
    }
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| Some(event_time.is_valid(row)))
        .collect();
    for (row, id) in ids.iter().enumerate() {
        if event_time.is_null(row) {
            rejected.push(Reject::new(
                &source.name,
                locate(*id),
                format!("no event time: `{}` is missing or null", source.event_time_column),
                raw.value(index(id)),
            ));
        }
    }
    rejected.sort_by_key(|r| match r.location {
        Location::Record { partition, offset, .. } => (partition, offset),
        _ => (0, 0),
    });
    let batch = filter_record_batch(&batch, &keep)
        .map_err(|e| Error::compute(format!("decoding source {}", source.name), e))?;
    Ok((batch, rejected))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    use super::*;
    use crate::config::stream_pipeline::tests::source;

    #[test]
    fn good_records_get_their_kafka_metadata_and_bad_ones_their_position_and_reason() {
        let source = source("clicks", "ts", Some("id"));
        let mut raw = RawRecords::default();
        raw.push(
            0,
            100,
            Some(1_700_000_000_000),
            Some(b"k"),
            br#"{"id":"a","ts":"2024-01-01T00:00:00Z"}"#,
        );
        raw.push(0, 101, None, None, br#"{"id":"b","ts":"#);
        raw.push(2, 7, None, None, br#"{"id":"c"}"#);
        raw.push(2, 8, None, None, br#"{"id":"d","ts":"2024-01-01T00:00:01Z"}"#);
        let (batch, rejects) = decode_records(&source, None, &raw, 1 << 20).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let offsets = batch
            .column_by_name("_kafka_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(offsets.values().to_vec(), vec![100, 8]);
        assert_eq!(
            batch.column_by_name("_kafka_key").unwrap().as_string::<i32>().value(0),
            "k"
        );
        assert_eq!(
            batch
                .column_by_name("_kafka_topic")
                .unwrap()
                .as_string::<i32>()
                .value(1),
            "clicks"
        );
        let where_why: Vec<_> = rejects
            .iter()
            .map(|r| (r.location.to_string(), r.reason.contains("no event time")))
            .collect();
        assert_eq!(
            where_why,
            [("clicks/0@101".to_string(), false), ("clicks/2@7".to_string(), true)]
        );
        assert_eq!(rejects[0].raw, br#"{"id":"b","ts":"#);
    }

    #[test]
    fn a_stream_record_of_any_bytes_gives_one_row_or_one_reject() {
        let source = source("clicks", "ts", Some("id"));
        let records: [&[u8]; 6] = [
            br#"{"id":"a","ts":"2024-01-01T00:00:00Z"}"#,
            b"",
            br#"{"id":"b","ts":"2024-01-01T00:00:00Z"}{"id":"c","ts":"2024-01-01T00:00:00Z"}"#,
            b"\x00\x01\x02",
            br#"{"id":"d","ts":"2024-01-01T00:00:00Z"}  "#,
            b"null",
        ];
        let mut raw = RawRecords::default();
        for (offset, value) in records.iter().enumerate() {
            raw.push(1, offset as i64, None, None, value);
        }
        let (batch, rejects) = decode_records(&source, None, &raw, 1 << 20).unwrap();
        assert_eq!(batch.num_rows() + rejects.len(), records.len());
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "d"));
        let rejected: Vec<String> = rejects.iter().map(|r| r.location.to_string()).collect();
        assert_eq!(rejected, ["clicks/1@1", "clicks/1@2", "clicks/1@3", "clicks/1@5"]);
        assert!(rejects[0].reason.contains("empty record"), "{:?}", rejects[0]);
        assert!(
            rejects[1].reason.contains("more than one JSON value"),
            "{:?}",
            rejects[1]
        );
    }

    #[test]
    fn a_large_micro_batch_decoded_on_several_threads_keeps_its_order_and_every_bad_record() {
        let source = source("clicks", "ts", Some("id"));
        let mut raw = RawRecords::default();
        let bad = [3, 8_191, 8_192, 30_001];
        for offset in 0..40_000i64 {
            let value = if bad.contains(&offset) {
                b"{not json".to_vec()
            } else {
                format!(r#"{{"id":"e{offset}","ts":"2024-01-01T00:00:00Z"}}"#).into_bytes()
            };
            raw.push((offset % 3) as i32, offset, None, None, &value);
        }
        let (batch, rejects) = decode_records(&source, None, &raw, 1 << 20).unwrap();
        assert_eq!(batch.num_rows(), 40_000 - bad.len());
        let offsets = batch
            .column_by_name("_kafka_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(offsets.values().windows(2).all(|w| w[0] < w[1]), "in order");
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        assert!((0..batch.num_rows()).all(|i| ids.value(i) == format!("e{}", offsets.value(i))));
        let mut rejected: Vec<i64> = rejects
            .iter()
            .map(|r| match r.location {
                Location::Record { offset, .. } => offset,
                _ => unreachable!(),
            })
            .collect();
        rejected.sort_unstable();
        assert_eq!(rejected, bad);
    }
}
