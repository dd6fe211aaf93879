//! State rows — accumulator states, windowed rows waiting for a join, join buffers — as they
//! are saved in a snapshot: an Arrow IPC stream inside the snapshot's serde structure.

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// State rows (accumulator states, waiting rows, join buffers), saved as an Arrow IPC stream
/// inside a snapshot.
#[derive(Debug, Clone, Default)]
pub struct StateBatches(pub Vec<RecordBatch>);

impl StateBatches {
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.0.iter().map(RecordBatch::num_rows).sum()
    }

    /// Rows held and the memory of their batches.
    pub fn size(&self) -> StateSize {
        StateSize {
            rows: self.rows(),
            bytes: self.0.iter().map(RecordBatch::get_array_memory_size).sum(),
        }
    }
}

/// How much an operator holds: rows, and the memory of the Arrow batches holding them (a buffer
/// two batches share counts in each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    pub rows: usize,
    pub bytes: usize,
}

impl std::ops::Add for StateSize {
    type Output = StateSize;

    fn add(self, other: StateSize) -> StateSize {
        StateSize {
            rows: self.rows + other.rows,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl std::iter::Sum for StateSize {
    fn sum<I: Iterator<Item = StateSize>>(sizes: I) -> StateSize {
        sizes.fold(StateSize::default(), std::ops::Add::add)
    }
}

impl Serialize for StateBatches {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let batches: Vec<&RecordBatch> = self.0.iter().filter(|b| b.num_rows() > 0).collect();
        let Some(first) = batches.first() else {
            return serializer.serialize_bytes(&[]);
        };
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &first.schema()).map_err(serde::ser::Error::custom)?;
        for batch in &batches {
            writer.write(batch).map_err(serde::ser::Error::custom)?;
        }
        writer.finish().map_err(serde::ser::Error::custom)?;
        drop(writer);
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for StateBatches {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(deserializer)?;
        if bytes.is_empty() {
            return Ok(StateBatches(Vec::new()));
        }
        let reader =
            StreamReader::try_new(std::io::Cursor::new(bytes.into_vec()), None).map_err(serde::de::Error::custom)?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(StateBatches(batches))
    }
}
