//! MongoDB Extended JSON (as written by `mongoexport`, relaxed or canonical) rewritten into
//! plain JSON that arrow-json decodes against the declared schema.
//!
//! The rewrite streams through serde_json's parser (no `Value` trees): every
//! single-key wrapper object is replaced by its plain value:
//! `{"$oid": "65a1..."}` → `"65a1..."`, `{"$date": "2024-01-01T10:00:00Z"}` → the same string,
//! `{"$date": 1704103200000}` and `{"$date": {"$numberLong": "1704103200000"}}` → an ISO-8601
//! string, `{"$numberLong": "42"}`, `{"$numberInt": "42"}`, `{"$numberDouble": "1.5"}` and
//! `{"$numberDecimal": "1.50"}` → the number as a string (arrow-json parses numeric strings
//! into numeric columns). Other `$` types (`$binary`, `$timestamp`, ...) are kept as objects; a
//! column declared for them gets a clear type error and the record is quarantined.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Rewrites one Extended JSON document into plain JSON appended to `out`. On error `out` may
/// hold a partial document: truncate it to its previous length.
pub fn rewrite_document(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    Rewrite { out }
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())
}

struct Rewrite<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Rewrite<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Writes a JSON scalar with serde_json's own escaping.
fn write_json<T: serde::Serialize + ?Sized, E: de::Error>(out: &mut Vec<u8>, value: &T) -> Result<(), E> {
    serde_json::to_writer(out, value).map_err(E::custom)
}

impl<'de> Visitor<'de> for Rewrite<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        write_json(self.out, &v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        write_json(self.out, &v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        write_json(self.out, &v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        write_json(self.out, &v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        write_json(self.out, v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let mark = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if seq.next_element_seed(Rewrite { out: &mut *self.out })?.is_none() {
                self.out.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(first_key) = map.next_key::<Key<'de>>()? else {
            self.out.extend_from_slice(b"{}");
            return Ok(());
        };
        if let Some(wrapper) = Wrapper::from_key(&first_key.0) {
            map.next_value_seed(WrapperValue {
                wrapper,
                out: &mut *self.out,
            })?;
            // A wrapper has one key; anything else (e.g. `$binary` + `$type` in legacy
            // mode) is not a wrapper we unwrap, so reject rather than guess.
            if map.next_key::<Key<'de>>()?.is_some() {
                return Err(de::Error::custom(format!("unexpected key after `{}`", first_key.0)));
            }
            return Ok(());
        }
        self.out.push(b'{');
        write_json(self.out, first_key.0.as_ref())?;
        self.out.push(b':');
        map.next_value_seed(Rewrite { out: &mut *self.out })?;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            self.out.push(b',');
            write_json(self.out, key.0.as_ref())?;
            self.out.push(b':');
            map.next_value_seed(Rewrite { out: &mut *self.out })?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// An object key, borrowed from the input unless it contains escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The Extended JSON wrappers that are unwrapped.
#[derive(Clone, Copy)]
enum Wrapper {
    ObjectId,
    Date,
    Number,
}

impl Wrapper {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "$oid" => Some(Wrapper::ObjectId),
            "$date" => Some(Wrapper::Date),
            "$numberLong" | "$numberInt" | "$numberDouble" | "$numberDecimal" => Some(Wrapper::Number),
            _ => None,
        }
    }
}

/// The value inside a wrapper, written as its plain form.
struct WrapperValue<'o> {
    wrapper: Wrapper,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for WrapperValue<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl WrapperValue<'_> {
    fn write_epoch_millis<E: de::Error>(self, millis: i64) -> Result<(), E> {
        let time = chrono::DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| E::custom(format!("$date {millis} is out of range")))?;
        write!(self.out, "\"{}\"", time.format("%Y-%m-%dT%H:%M:%S%.3fZ")).map_err(E::custom)
    }

    fn wrong<E: de::Error>(&self, found: &str) -> E {
        let name = match self.wrapper {
            Wrapper::ObjectId => "$oid",
            Wrapper::Date => "$date",
            Wrapper::Number => "$number*",
        };
        E::custom(format!("{name} holds {found}"))
    }
}

impl<'de> Visitor<'de> for WrapperValue<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an Extended JSON wrapper value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.wrapper {
            Wrapper::Number if v.parse::<f64>().is_err() && !matches!(v, "NaN" | "Infinity" | "-Infinity") => {
                Err(self.wrong(&format!("the non-number {v:?}")))
            }
            // Dates in relaxed mode are ISO-8601 strings already; numbers stay strings so
            // arrow-json parses them into whatever numeric type the column declares.
            _ => write_json(self.out, v),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.wrapper {
            // Legacy mode writes dates as epoch milliseconds.
            Wrapper::Date => self.write_epoch_millis(v),
            Wrapper::Number => write_json(self.out, &v),
            Wrapper::ObjectId => Err(self.wrong("a number")),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(self.wrong("a number out of range")),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.wrapper {
            Wrapper::Number => write_json(self.out, &v),
            _ => Err(self.wrong("a fractional number")),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Canonical mode: {"$date": {"$numberLong": "<millis>"}}.
        let key = map.next_key::<Key<'de>>()?;
        match (self.wrapper, key.as_ref().map(|k| k.0.as_ref())) {
            (Wrapper::Date, Some("$numberLong")) => {
                let text: Cow<'de, str> = map.next_value::<Key<'de>>()?.0;
                let millis = text
                    .parse::<i64>()
                    .map_err(|_| self.wrong(&format!("the non-integer {text:?}")))?;
                if map.next_key::<Key<'de>>()?.is_some() {
                    return Err(self.wrong("an object with extra keys"));
                }
                self.write_epoch_millis(millis)
            }
            _ => Err(self.wrong("an object")),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(input: &str) -> Result<String, String> {
        let mut out = Vec::new();
        rewrite_document(input.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn relaxed_mode_wrappers_become_plain_values() {
        let out = rewrite(
            r#"{"_id":{"$oid":"65a1b2c3d4e5f60718293a4b"},"at":{"$date":"2024-01-01T10:00:00.123Z"},"n":7,"s":"x\"y"}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"_id":"65a1b2c3d4e5f60718293a4b","at":"2024-01-01T10:00:00.123Z","n":7,"s":"x\"y"}"#
        );
    }

    #[test]
    fn canonical_and_legacy_dates_become_iso_strings() {
        let out = rewrite(r#"{"a":{"$date":{"$numberLong":"1704103200000"}},"b":{"$date":1704103200500}}"#).unwrap();
        assert_eq!(
            out,
            r#"{"a":"2024-01-01T10:00:00.000Z","b":"2024-01-01T10:00:00.500Z"}"#
        );
    }

    #[test]
    fn canonical_numbers_nested_in_arrays_and_objects_are_unwrapped() {
        let out = rewrite(
            r#"{"ids":[{"$numberLong":"5"},{"$numberLong":"9"}],"m":{"d":{"$numberDouble":"1.5"}},"e":[],"o":{}}"#,
        )
        .unwrap();
        assert_eq!(out, r#"{"ids":["5","9"],"m":{"d":"1.5"},"e":[],"o":{}}"#);
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        assert!(rewrite(r#"{"a":1"#).is_err());
        assert!(rewrite(r#"{"a":1} trailing"#).is_err());
        assert!(
            rewrite(r#"{"a":{"$numberLong":"abc"}}"#)
                .unwrap_err()
                .contains("non-number")
        );
        assert!(rewrite(r#"{"a":{"$date":{"$numberLong":"x"}}}"#).is_err());
        assert!(rewrite(r#"{"a":{"$oid":"x","extra":1}}"#).is_err());
    }

    #[test]
    fn other_dollar_types_are_kept_as_objects() {
        let out = rewrite(r#"{"b":{"$binary":{"base64":"AA==","subType":"00"}}}"#).unwrap();
        assert_eq!(out, r#"{"b":{"$binary":{"base64":"AA==","subType":"00"}}}"#);
    }
}
