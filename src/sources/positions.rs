//! Raw stream records as they come off an input, kept columnar (one byte buffer, offsets) so a
//! micro-batch of a million records is a handful of allocations, and the positions inputs are
//! read from: what an epoch read, logged before it is processed, is exactly what a replay reads
//! again.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The records of one source read in one micro-batch.
#[derive(Debug, Default, Clone)]
pub struct RawRecords {
    values: Vec<u8>,
    value_ends: Vec<usize>,
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    has_key: Vec<bool>,
    /// Kafka partition of each record (0 for files and the generator).
    pub partitions: Vec<i32>,
    /// Kafka offset of each record (line index for files, sequence number for the generator).
    pub offsets: Vec<i64>,
    /// Kafka record timestamp, milliseconds since the epoch.
    pub timestamps: Vec<Option<i64>>,
}

impl RawRecords {
    /// When some values are larger than `max_bytes`: the records without them, and the
    /// indices of those left out (`None` when every record fits).
    pub fn without_larger_than(&self, max_bytes: usize) -> Option<(RawRecords, Vec<usize>)> {
        let larger: Vec<usize> = (0..self.len()).filter(|&i| self.value(i).len() > max_bytes).collect();
        if larger.is_empty() {
            return None;
        }
        let mut fitting = RawRecords::default();
        for i in (0..self.len()).filter(|&i| self.value(i).len() <= max_bytes) {
            fitting.push(
                self.partitions[i],
                self.offsets[i],
                self.timestamps[i],
                self.key(i),
                self.value(i),
            );
        }
        Some((fitting, larger))
    }

    /// Room for `records` more records of `value_bytes` value bytes in all, without keys.
    pub fn reserve(&mut self, records: usize, value_bytes: usize) {
        self.values.reserve(value_bytes);
        self.value_ends.reserve(records);
        self.key_ends.reserve(records);
        self.has_key.reserve(records);
        self.partitions.reserve(records);
        self.offsets.reserve(records);
        self.timestamps.reserve(records);
    }

    /// Adds a record.
    pub fn push(&mut self, partition: i32, offset: i64, timestamp_ms: Option<i64>, key: Option<&[u8]>, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.value_ends.push(self.values.len());
        if let Some(key) = key {
            self.keys.extend_from_slice(key);
        }
        self.key_ends.push(self.keys.len());
        self.has_key.push(key.is_some());
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.timestamps.push(timestamp_ms);
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.value_ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.value_ends.is_empty()
    }

    /// The value of record `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.value_ends[i - 1] };
        &self.values[start..self.value_ends[i]]
    }

    /// The key of record `i`, if it has one.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        self.has_key[i].then(|| &self.keys[start..self.key_ends[i]])
    }
}

/// A micro-batch read from an input.
#[derive(Debug, Default)]
pub struct InputBatch {
    /// Records per source.
    pub records: HashMap<String, RawRecords>,
    /// `source -> partition -> [start, end)`.
    pub ranges: BTreeMap<String, BTreeMap<i32, (i64, i64)>>,
    /// `source -> partition -> idle`: whether the partition had nothing more to read.
    pub idle: BTreeMap<String, BTreeMap<i32, bool>>,
    /// `source -> partition -> offset after the last record the input holds`, where the input
    /// knows it when the batch is read (Kafka: the high watermark of the last fetch).
    pub latest: Positions,
}

impl InputBatch {
    /// Records read.
    pub fn len(&self) -> usize {
        self.records.values().map(RawRecords::len).sum()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// For each source, for each partition, the next offset to read.
pub type Positions = BTreeMap<String, BTreeMap<i32, i64>>;

/// What one epoch read: for each source and partition, offsets `[start, end)`. Written to the
/// offset log before the epoch is processed, so a restart replays exactly the same records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRange {
    /// The epoch number (1, 2, ...).
    pub epoch: u64,
    /// `source -> partition -> [start, end)`.
    pub ranges: BTreeMap<String, BTreeMap<i32, (i64, i64)>>,
    /// Whether this epoch ends the input: every watermark moves past every window.
    #[serde(default)]
    pub end_of_input: bool,
    /// `source -> partition -> idle`: whether the partition had nothing more to read when the
    /// epoch was cut (idle partitions do not hold the watermark back). Logged, so a replay
    /// moves the watermark exactly as the first run did.
    #[serde(default)]
    pub idle: BTreeMap<String, BTreeMap<i32, bool>>,
}

impl EpochRange {
    /// Records read in the epoch.
    pub fn records(&self) -> i64 {
        self.ranges
            .values()
            .flat_map(|p| p.values())
            .map(|(start, end)| end - start)
            .sum()
    }

    /// The positions after the epoch.
    pub fn end_positions(&self, before: &Positions) -> Positions {
        let mut after = before.clone();
        for (source, partitions) in &self.ranges {
            let entry = after.entry(source.clone()).or_default();
            for (partition, (_, end)) in partitions {
                entry.insert(*partition, *end);
            }
        }
        after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_values_and_optional_keys_apart() {
        let mut raw = RawRecords::default();
        raw.push(0, 10, Some(5), Some(b"k1"), b"{\"a\":1}");
        raw.push(1, 3, None, None, b"{}");
        raw.push(0, 11, None, Some(b""), b"x");
        assert_eq!(raw.len(), 3);
        assert_eq!((raw.value(0), raw.key(0)), (&b"{\"a\":1}"[..], Some(&b"k1"[..])));
        assert_eq!((raw.value(1), raw.key(1)), (&b"{}"[..], None));
        assert_eq!((raw.value(2), raw.key(2)), (&b"x"[..], Some(&b""[..])));
    }

    #[test]
    fn an_epoch_moves_positions_to_the_end_of_its_ranges() {
        let before: Positions = BTreeMap::from([("a".to_string(), BTreeMap::from([(0, 5), (1, 7)]))]);
        let epoch = EpochRange {
            epoch: 1,
            ranges: BTreeMap::from([("a".to_string(), BTreeMap::from([(0, (5, 9))]))]),
            end_of_input: false,
            idle: BTreeMap::new(),
        };
        assert_eq!(epoch.records(), 4);
        assert_eq!(epoch.end_positions(&before)["a"], BTreeMap::from([(0, 9), (1, 7)]));
    }
}
