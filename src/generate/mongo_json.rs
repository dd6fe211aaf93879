//! Writing documents the way `mongoexport` does, in its relaxed (default) or canonical
//! Extended JSON mode.

use std::io::Write;

use chrono::{DateTime, Utc};

/// Which Extended JSON flavour `mongoexport --jsonFormat` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--jsonFormat=relaxed`: dates as ISO strings, 64-bit integers as plain numbers.
    Relaxed,
    /// `--jsonFormat=canonical`: every number and date wrapped (`$numberLong`, ...).
    Canonical,
}

/// A MongoDB ObjectId: 4 bytes of seconds, 8 bytes of randomness/counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectId(pub [u8; 12]);

impl ObjectId {
    /// An id created at `time` with the given 8 trailing bytes.
    pub fn new(time: DateTime<Utc>, tail: u64) -> Self {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&(time.timestamp() as u32).to_be_bytes());
        bytes[4..].copy_from_slice(&tail.to_be_bytes());
        ObjectId(bytes)
    }

    /// The 24 hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Writes one JSON document field by field into a line buffer.
pub struct Doc<'a> {
    out: &'a mut Vec<u8>,
    mode: Mode,
    first: bool,
}

impl<'a> Doc<'a> {
    /// Starts a document.
    pub fn begin(out: &'a mut Vec<u8>, mode: Mode) -> Self {
        out.push(b'{');
        Self { out, mode, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write!(self.out, "\"{key}\":").expect("writing to memory");
    }

    /// `"key": {"$oid": "..."}`.
    pub fn oid(&mut self, key: &str, id: &ObjectId) -> &mut Self {
        self.key(key);
        write!(self.out, "{{\"$oid\":\"{}\"}}", id.hex()).expect("writing to memory");
        self
    }

    /// An optional ObjectId (`null` when absent).
    pub fn oid_or_null(&mut self, key: &str, id: Option<&ObjectId>) -> &mut Self {
        match id {
            Some(id) => self.oid(key, id),
            None => self.null(key),
        }
    }

    /// `"key": {"$date": ...}` in the document's mode.
    pub fn date(&mut self, key: &str, time: DateTime<Utc>) -> &mut Self {
        self.key(key);
        self.write_date(time);
        self
    }

    /// An optional date (`null` when absent).
    pub fn date_or_null(&mut self, key: &str, time: Option<DateTime<Utc>>) -> &mut Self {
        match time {
            Some(time) => self.date(key, time),
            None => self.null(key),
        }
    }

    fn write_date(&mut self, time: DateTime<Utc>) {
        match self.mode {
            Mode::Relaxed => write!(self.out, "{{\"$date\":\"{}\"}}", time.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            Mode::Canonical => write!(
                self.out,
                "{{\"$date\":{{\"$numberLong\":\"{}\"}}}}",
                time.timestamp_millis()
            ),
        }
        .expect("writing to memory");
    }

    /// A 64-bit integer.
    pub fn long(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.write_long(value);
        self
    }

    fn write_long(&mut self, value: i64) {
        match self.mode {
            Mode::Relaxed => write!(self.out, "{value}"),
            Mode::Canonical => write!(self.out, "{{\"$numberLong\":\"{value}\"}}"),
        }
        .expect("writing to memory");
    }

    /// A 32-bit integer.
    pub fn int(&mut self, key: &str, value: i32) -> &mut Self {
        self.key(key);
        match self.mode {
            Mode::Relaxed => write!(self.out, "{value}"),
            Mode::Canonical => write!(self.out, "{{\"$numberInt\":\"{value}\"}}"),
        }
        .expect("writing to memory");
        self
    }

    /// An array of 64-bit integers.
    pub fn longs(&mut self, key: &str, values: &[i64]) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.write_long(*value);
        }
        self.out.push(b']');
        self
    }

    /// A string, escaped.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value).expect("writing to memory");
        self
    }

    /// An optional string (`null` when absent).
    pub fn str_or_null(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    /// A boolean.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        write!(self.out, "{value}").expect("writing to memory");
        self
    }

    /// `null`.
    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(b"null");
        self
    }

    /// Ends the document and the line.
    pub fn end(&mut self) {
        self.out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::extended_json::rewrite_document;

    #[test]
    fn documents_round_trip_through_the_extended_json_reader() {
        let time = DateTime::from_timestamp_millis(1_704_103_200_123).unwrap();
        for mode in [Mode::Relaxed, Mode::Canonical] {
            let mut line = Vec::new();
            Doc::begin(&mut line, mode)
                .oid("_id", &ObjectId::new(time, 7))
                .date("at", time)
                .long("n", 42)
                .longs("ids", &[1, 2])
                .str("s", "a \"quoted\" word")
                .end();
            let mut plain = Vec::new();
            rewrite_document(&line[..line.len() - 1], &mut plain).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(value["_id"], format!("65928d20{:016x}", 7));
            assert_eq!(value["at"], "2024-01-01T10:00:00.123Z");
            assert_eq!(value["s"], "a \"quoted\" word");
            let n = if mode == Mode::Relaxed {
                serde_json::json!(42)
            } else {
                serde_json::json!("42")
            };
            assert_eq!(value["n"], n);
        }
    }
}
