//! A record that could not be decoded, with where it came from and why: what every decoder
//! gives for a bad record, and what `meta.quarantine` keeps. Nothing bad is dropped silently
//! and nothing bad stops a job.

use std::fmt;

/// The most bytes of a bad record kept in the quarantine table.
pub const MAX_REJECTED_BYTES: usize = 64 * 1024;

/// Where a record was.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// Line `line` (counting from 1) of a file.
    Line {
        /// The file, as shown in messages.
        file: String,
        /// The line.
        line: u64,
    },
    /// Row `row` (counting from 1, in the order read) of a table, e.g. `mysql:users`.
    Row {
        /// The table.
        table: String,
        /// The row.
        row: u64,
    },
    /// A document of a MongoDB collection, e.g. `mongodb:quickchat.messages`, by its `_id`.
    Document {
        /// The collection, as `mongodb:<database>.<collection>`.
        collection: String,
        /// The document's `_id` (an ObjectId's hex digits, else its Extended JSON).
        id: String,
    },
    /// A Kafka record (or, with `--from-files`, a line of the topic's file; with the generator,
    /// an event number).
    Record {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line { file, line } => write!(f, "{file}:{line}"),
            Location::Row { table, row } => write!(f, "{table}:{row}"),
            Location::Document { collection, id } => write!(f, "{collection}:_id={id}"),
            Location::Record {
                topic,
                partition,
                offset,
            } => write!(f, "{topic}/{partition}@{offset}"),
        }
    }
}

/// A record set aside for the quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The source (its table name in the SQL).
    pub source: String,
    /// Where it was.
    pub location: Location,
    /// Why it was set aside.
    pub reason: String,
    /// The record as received (truncated to [`MAX_REJECTED_BYTES`]).
    pub raw: Vec<u8>,
}

impl Reject {
    /// A reject keeping at most [`MAX_REJECTED_BYTES`] of the record.
    pub fn new(source: &str, location: Location, reason: impl Into<String>, raw: &[u8]) -> Self {
        Self {
            source: source.to_string(),
            location,
            reason: reason.into(),
            raw: raw[..raw.len().min(MAX_REJECTED_BYTES)].to_vec(),
        }
    }

    /// The record as (lossy UTF-8) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_as_file_line_table_row_and_topic_partition_offset() {
        let line = Location::Line {
            file: "/lake/landing/m.json".into(),
            line: 7,
        };
        let row = Location::Row {
            table: "mysql:users".into(),
            row: 13,
        };
        let record = Location::Record {
            topic: "clickstream".into(),
            partition: 2,
            offset: 41,
        };
        assert_eq!(line.to_string(), "/lake/landing/m.json:7");
        assert_eq!(row.to_string(), "mysql:users:13");
        assert_eq!(record.to_string(), "clickstream/2@41");
        let huge = vec![b'x'; MAX_REJECTED_BYTES + 10];
        assert_eq!(Reject::new("s", line, "too big", &huge).raw.len(), MAX_REJECTED_BYTES);
    }
}
