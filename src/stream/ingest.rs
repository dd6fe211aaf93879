//! Per-source bookkeeping of a micro-batch: de-duplication by key, the watermark, and splitting
//! late records from on-time ones.
//!
//! The watermark of a source is the latest event time seen minus the source's delay, taken per
//! Kafka partition: it is the smallest of the partitions' latest event times, leaving out
//! partitions that had nothing more to read when the micro-batch was cut (idle ones), minus the
//! delay. So a consumer that happens to read one partition ahead of the others does not make
//! the others' records late: results do not depend on how partitions interleave. It moves at
//! micro-batch boundaries, as in Spark, and never backwards: a batch's records are judged late
//! against the watermark the previous batches left. Keys are remembered (as 128-bit hashes)
//! while their record is within `dedup_within` of the watermark.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{cast, filter_record_batch, not};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::config::stream_pipeline::StreamSource;

/// Where a source's event time stands: what a snapshot saves besides the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTimeProgress {
    /// Per partition: the latest event time seen, microseconds since the epoch.
    pub max_event_times: BTreeMap<i32, i64>,
    /// The watermark, microseconds; `None` until every partition with records to read has
    /// given some.
    pub watermark: Option<i64>,
}

/// What a source saves in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestState {
    /// Latest event times and the watermark.
    pub progress: EventTimeProgress,
    /// Remembered keys: (hash, event time of the record first seen with it), sorted.
    pub keys: Vec<(u128, i64)>,
}

/// What a source remembers between micro-batches.
#[derive(Debug, Clone, Default)]
pub struct SourceState {
    /// Latest event times and the watermark.
    pub progress: EventTimeProgress,
    /// Key hash -> event time of the record first seen with it.
    pub keys: KeyHashes,
}

/// Key hashes (already 128-bit xxh3 hashes) to event times, without hashing them again.
pub type KeyHashes = HashMap<u128, i64, BuildHasherDefault<Prehashed>>;

/// A hasher for keys that are hashes already: their low 64 bits are the hash.
#[derive(Debug, Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u128` keys; fold anything else in all the same.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// A micro-batch of one source after de-duplication.
#[derive(Debug)]
pub struct Ingested {
    /// Every record kept (on time and late).
    pub all: RecordBatch,
    /// Records at or after the watermark: these feed windows and aggregates.
    pub on_time: RecordBatch,
    /// Records behind the watermark.
    pub late: RecordBatch,
    /// Records dropped as repeats of a key already seen.
    pub duplicates: usize,
}

impl SourceState {
    /// The watermark in microseconds; `None` before it is known.
    pub fn watermark(&self) -> Option<i64> {
        self.progress.watermark
    }

    /// The latest event time seen in any partition.
    pub fn max_event_time(&self) -> Option<i64> {
        self.progress.max_event_times.values().max().copied()
    }

    /// De-duplicates a decoded batch, splits late records off, and moves the watermark on (the
    /// one the *next* batch is judged by). `partitions`: every partition of the source, and
    /// whether it had nothing more to read when this batch was cut (idle).
    pub fn ingest(&mut self, source: &StreamSource, batch: RecordBatch, partitions: &BTreeMap<i32, bool>) -> Ingested {
        let (batch, duplicates) = match source.key {
            Some(key) => self.drop_repeated_keys(source, batch, key),
            None => (batch, 0),
        };
        let times = batch
            .column(source.event_time)
            .as_primitive::<TimestampMicrosecondType>();
        let (on_time, late) = match self.watermark() {
            Some(watermark) => {
                let late_mask: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t < watermark))).collect();
                if late_mask.true_count() == 0 {
                    (batch.clone(), batch.slice(0, 0))
                } else {
                    let on_time = filter_record_batch(&batch, &not(&late_mask).expect("boolean")).expect("filter");
                    let late = filter_record_batch(&batch, &late_mask).expect("filter");
                    (on_time, late)
                }
            }
            None => (batch.clone(), batch.slice(0, 0)),
        };
        self.advance(source, &on_time, partitions);
        Ingested {
            all: batch,
            on_time,
            late,
            duplicates,
        }
    }

    fn advance(&mut self, source: &StreamSource, on_time: &RecordBatch, partitions: &BTreeMap<i32, bool>) {
        let times = on_time
            .column(source.event_time)
            .as_primitive::<TimestampMicrosecondType>();
        let partition_of = on_time
            .column_by_name("_kafka_partition")
            .map(|c| c.as_primitive::<arrow::datatypes::Int32Type>().clone());
        for row in 0..on_time.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let partition = partition_of.as_ref().map_or(0, |p| p.value(row));
            let max = self.progress.max_event_times.entry(partition).or_insert(i64::MIN);
            *max = (*max).max(times.value(row));
        }
        // Partitions with records still to read hold the watermark at their latest event time,
        // or entirely while they have given none; idle ones do not hold it.
        let mut slowest: Option<i64> = None;
        for (partition, idle) in partitions {
            if *idle {
                continue;
            }
            match self.progress.max_event_times.get(partition) {
                Some(time) => slowest = Some(slowest.map_or(*time, |s| s.min(*time))),
                None => return,
            }
        }
        let candidate = slowest.or_else(|| self.max_event_time());
        let delay = source.watermark_delay.as_micros() as i64;
        if let Some(candidate) = candidate.map(|t| t.saturating_sub(delay)) {
            self.progress.watermark = Some(self.progress.watermark.map_or(candidate, |w| w.max(candidate)));
        }
    }

    fn drop_repeated_keys(&mut self, source: &StreamSource, batch: RecordBatch, key: usize) -> (RecordBatch, usize) {
        let keys = cast(batch.column(key), &DataType::Utf8).expect("keys cast to text");
        let keys = keys.as_string::<i32>();
        let times = batch
            .column(source.event_time)
            .as_primitive::<TimestampMicrosecondType>();
        let mut duplicates = 0;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                if keys.is_null(row) {
                    return Some(true);
                }
                let hash = xxhash_rust::xxh3::xxh3_128(keys.value(row).as_bytes());
                let fresh = match self.keys.entry(hash) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(times.value(row));
                        true
                    }
                };
                duplicates += usize::from(!fresh);
                Some(fresh)
            })
            .collect();
        if duplicates == 0 {
            return (batch, 0);
        }
        (filter_record_batch(&batch, &keep).expect("filter"), duplicates)
    }

    /// Forgets keys of records older than `dedup_within` behind the watermark.
    pub fn forget_old_keys(&mut self, source: &StreamSource) {
        if let Some(watermark) = self.watermark() {
            let horizon = watermark - source.dedup_within.as_micros() as i64;
            self.keys.retain(|_, time| *time >= horizon);
        }
    }

    /// The state to save.
    pub fn state(&self) -> IngestState {
        let mut keys: Vec<(u128, i64)> = self.keys.iter().map(|(k, t)| (*k, *t)).collect();
        keys.sort_unstable();
        IngestState {
            progress: self.progress.clone(),
            keys,
        }
    }

    /// Restores a saved state.
    pub fn restore(&mut self, state: IngestState) {
        self.progress = state.progress;
        self.keys = state.keys.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::stream_pipeline::tests::{rows as batch, source};

    const MINUTE: i64 = 60_000_000;

    /// Partition 0, read to its end.
    fn caught_up() -> BTreeMap<i32, bool> {
        BTreeMap::from([(0, true)])
    }

    /// Test rows moved to another partition.
    fn in_partition(rows: RecordBatch, partition: i32) -> RecordBatch {
        let index = rows.schema().index_of("_kafka_partition").unwrap();
        let mut columns = rows.columns().to_vec();
        columns[index] = std::sync::Arc::new(arrow::array::Int32Array::from(vec![partition; rows.num_rows()]));
        RecordBatch::try_new(rows.schema(), columns).unwrap()
    }

    #[test]
    fn a_partition_with_records_still_to_read_holds_the_watermark_back() {
        let source = source("clicks", "ts", Some("id"));
        let mut state = SourceState::default();
        // Partition 1 is read far ahead while partition 0 has records waiting: no watermark.
        let ahead = in_partition(batch(&source, &[("x", 60 * MINUTE)]), 1);
        let both = BTreeMap::from([(0, false), (1, false)]);
        state.ingest(&source, ahead, &both);
        assert_eq!(state.watermark(), None);
        // Partition 0's early records are then on time, and the slower partition sets it.
        let behind = state.ingest(&source, batch(&source, &[("y", MINUTE)]), &both);
        assert_eq!(behind.late.num_rows(), 0);
        assert_eq!(state.watermark(), Some(MINUTE - 5 * MINUTE));
        // Once partition 0 is read to its end it no longer holds the watermark back.
        let idle_zero = BTreeMap::from([(0, true), (1, false)]);
        state.ingest(&source, batch(&source, &[]), &idle_zero);
        assert_eq!(state.watermark(), Some(55 * MINUTE));
        // And the watermark never goes back.
        state.ingest(&source, batch(&source, &[]), &both);
        assert_eq!(state.watermark(), Some(55 * MINUTE));
    }

    #[test]
    fn repeats_of_a_key_count_once_and_the_watermark_judges_the_next_batch() {
        let source = source("clicks", "ts", Some("id"));
        let mut state = SourceState::default();
        let first = state.ingest(
            &source,
            batch(&source, &[("a", 10 * MINUTE), ("b", 12 * MINUTE), ("a", 10 * MINUTE)]),
            &caught_up(),
        );
        assert_eq!(
            (first.on_time.num_rows(), first.late.num_rows(), first.duplicates),
            (2, 0, 1)
        );
        assert_eq!(state.watermark(), Some(7 * MINUTE));

        // 6:59 is behind the watermark (12:00 - 5:00); 7:00 exactly is on time; `b` is a repeat.
        let second = state.ingest(
            &source,
            batch(&source, &[("c", 7 * MINUTE - 1), ("d", 7 * MINUTE), ("b", 20 * MINUTE)]),
            &caught_up(),
        );
        assert_eq!(
            (second.on_time.num_rows(), second.late.num_rows(), second.duplicates),
            (1, 1, 1)
        );
        assert_eq!(second.all.num_rows(), 2);
        assert_eq!(
            state.watermark(),
            Some(7 * MINUTE),
            "late and duplicate records do not move it"
        );
    }

    #[test]
    fn keys_are_forgotten_once_their_records_are_far_behind_the_watermark() {
        let source = source("clicks", "ts", Some("id"));
        let mut state = SourceState::default();
        state.ingest(
            &source,
            batch(&source, &[("old", 0), ("new", 20 * MINUTE)]),
            &caught_up(),
        );
        state.forget_old_keys(&source);
        // watermark 15:00, dedup window 5 minutes: keys older than 10:00 go.
        assert_eq!(state.keys.len(), 1);
    }
}
