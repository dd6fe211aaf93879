//! Raw stream records into Arrow: the value decoded against the source's declared columns
//! (JSON with arrow-json, or Protobuf), the Kafka metadata columns attached, and every record
//! that cannot be used — undecodable bytes, wrong types, no event time — set aside with its raw
//! bytes, topic, partition, offset and the reason, for the quarantine.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::record_batch::RecordBatch;

use super::StreamSource;
use super::protobuf::ProtobufDecoder;
use super::records::RawRecords;
use crate::error::{Error, Result};
use crate::sources::json_lines::{Decoded, Dialect, JsonDecoder};

/// A stream record that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReject {
    /// The source (table name in the SQL).
    pub source: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// The record value as received.
    pub raw: Vec<u8>,
    /// Why it was set aside.
    pub reason: String,
}

/// Decodes a source's records of one micro-batch into one batch of the source's schema: with
/// `protobuf` when the input carries Protobuf messages, else as JSON.
pub fn decode(
    source: &StreamSource,
    protobuf: Option<&ProtobufDecoder>,
    raw: &RawRecords,
) -> Result<(RecordBatch, Vec<StreamReject>)> {
    let Decoded { batches, ids, rejected } = match protobuf {
        Some(decoder) => decoder.decode(raw),
        None => {
            let mut decoder = JsonDecoder::new(source.value_schema.clone(), Dialect::Plain);
            for i in 0..raw.len() {
                decoder.push(i as u64, raw.value(i));
            }
            decoder.finish()
        }
    };
    let reject = |i: usize, reason: String| StreamReject {
        source: source.name.clone(),
        topic: source.def.topic.clone(),
        partition: raw.partitions[i],
        offset: raw.offsets[i],
        raw: raw.value(i).to_vec(),
        reason,
    };
    let mut rejects: Vec<StreamReject> = rejected.into_iter().map(|r| reject(r.id as usize, r.reason)).collect();

    let values = concat_batches(&source.value_schema, &batches)
        .map_err(|e| Error::Internal(format!("source {}: {e}", source.name)))?;
    let index = |i: &u64| *i as usize;
    let mut columns: Vec<ArrayRef> = values.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![source.def.topic.as_str(); ids.len()])));
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
        .map_err(|e| Error::Internal(format!("source {}: {e}", source.name)))?;

    // A record without an event time cannot be placed in any window.
    let event_time = batch.column(source.event_time);
    if event_time.null_count() == 0 {
        return Ok((batch, rejects));
    }
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| Some(event_time.is_valid(row)))
        .collect();
    for (row, id) in ids.iter().enumerate() {
        if event_time.is_null(row) {
            rejects.push(reject(
                index(id),
                format!("no event time: `{}` is missing or null", source.def.event_time),
            ));
        }
    }
    rejects.sort_by_key(|r| (r.partition, r.offset));
    let batch = filter_record_batch(&batch, &keep).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((batch, rejects))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    use super::*;
    use crate::stream::pipeline::tests::source;

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
        let (batch, rejects) = decode(&source, None, &raw).unwrap();
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
            .map(|r| (r.partition, r.offset, r.reason.contains("no event time")))
            .collect();
        assert_eq!(where_why, [(0, 101, false), (2, 7, true)]);
        assert_eq!(rejects[0].raw, br#"{"id":"b","ts":"#);
    }
}
