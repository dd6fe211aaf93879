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
        None => decode_json_in_parallel(source, raw),
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

/// Below this many records per thread, decoding on one thread is faster than starting more.
const RECORDS_PER_THREAD: usize = 8_192;

/// Decodes JSON records on every core: the records are cut into consecutive runs, one per
/// thread, and the results joined in order (ids are the records' indices in `raw`).
fn decode_json_in_parallel(source: &StreamSource, raw: &RawRecords) -> Decoded {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(raw.len() / RECORDS_PER_THREAD).max(1);
    let decode_run = |range: std::ops::Range<usize>| {
        let mut decoder = JsonDecoder::new(source.value_schema.clone(), Dialect::Plain);
        for i in range {
            decoder.push(i as u64, raw.value(i));
        }
        decoder.finish()
    };
    if threads == 1 {
        return decode_run(0..raw.len());
    }
    let per_thread = raw.len().div_ceil(threads);
    let parts: Vec<Decoded> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = t * per_thread..((t + 1) * per_thread).min(raw.len());
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
        let (batch, rejects) = decode(&source, None, &raw).unwrap();
        assert_eq!(batch.num_rows(), 40_000 - bad.len());
        let offsets = batch
            .column_by_name("_kafka_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(offsets.values().windows(2).all(|w| w[0] < w[1]), "in order");
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        assert!((0..batch.num_rows()).all(|i| ids.value(i) == format!("e{}", offsets.value(i))));
        let mut rejected: Vec<i64> = rejects.iter().map(|r| r.offset).collect();
        rejected.sort_unstable();
        assert_eq!(rejected, bad);
    }
}
