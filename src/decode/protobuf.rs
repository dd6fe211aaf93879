//! Protobuf records decoded with a descriptor set (`protoc --include_imports
//! --descriptor_set_out=...`) into the source's declared columns, by field name.
//!
//! The wire format is read directly into Arrow builders: each declared column's field (its
//! number, its kind, whether it has presence) is resolved once per schema, then a record is one
//! pass over its bytes, fields of other numbers skipped. Large micro-batches are decoded on every
//! core, as JSON is.
//!
//! Timestamp columns accept a `google.protobuf.Timestamp` field or an integer of epoch
//! milliseconds. A field with presence (a message, a proto3 `optional`, proto2) that is absent
//! is NULL; an absent proto3 scalar reads as its default (`""`, 0, false), as Protobuf defines
//! it. When a field occurs twice, the last value wins, as in every Protobuf parser.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use prost_reflect::{Kind, MessageDescriptor};

use super::json::Decoded;
use super::protobuf_wire::{invalid, skip, take, timestamp, varint};
use super::reject::{Location, Reject};
use crate::sources::positions::RawRecords;

/// Below this many records per thread, decoding on one thread is faster than starting more.
const RECORDS_PER_THREAD: usize = 16_384;

/// Decodes one message type into a declared schema.
#[derive(Debug, Clone)]
pub struct ProtobufDecoder {
    schema: SchemaRef,
    /// Field number → column.
    columns_by_number: HashMap<u32, usize>,
    /// Per column: how its field is encoded.
    fields: Vec<FieldSpec>,
}

/// A declared column's field.
#[derive(Debug, Clone)]
struct FieldSpec {
    name: String,
    kind: WireKind,
    /// Absent means NULL (else: the default value).
    has_presence: bool,
}

/// How a field's value is encoded, as far as decoding needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireKind {
    /// Varint, sign-extended from 32 bits (`int32`, enums).
    Int32,
    /// Varint (`int64`, `uint32`).
    Int64,
    /// Varint, unsigned 64 bits.
    Uint64,
    /// Varint, 0 or 1.
    Bool,
    /// Zig-zag varint (`sint32`, `sint64`).
    ZigZag,
    /// 8 bytes, integer (`fixed64` unsigned, `sfixed64` signed).
    Fixed64 { signed: bool },
    /// 8 bytes, `double`.
    Double,
    /// 4 bytes, integer (`fixed32` unsigned, `sfixed32` signed).
    Fixed32 { signed: bool },
    /// 4 bytes, `float`.
    Float,
    /// Length-delimited UTF-8.
    String,
    /// A `google.protobuf.Timestamp` message.
    Timestamp,
}

/// One field's value in the record being decoded.
#[derive(Debug, Clone, Copy)]
enum Value {
    Absent,
    Int(i64),
    Unsigned(u64),
    Float(f64),
    /// A byte range of the record.
    Text(usize, usize),
    Micros(i64),
}

impl ProtobufDecoder {
    /// A decoder for `message` into the declared columns (each the name of a field of it).
    pub fn new(message: &MessageDescriptor, schema: SchemaRef) -> Result<Self, String> {
        let mut columns_by_number = HashMap::new();
        let mut fields = Vec::new();
        for (index, column) in schema.fields().iter().enumerate() {
            let field = message
                .get_field_by_name(column.name())
                .ok_or_else(|| format!("message `{}` has no field {}", message.full_name(), column.name()))?;
            let wrong = || {
                format!(
                    "column `{}` is {} but field `{}` of `{}` is {:?}{}",
                    column.name(),
                    column.data_type(),
                    field.name(),
                    message.full_name(),
                    field.kind(),
                    if field.is_list() { " (repeated)" } else { "" }
                )
            };
            if field.is_list() || field.is_map() {
                return Err(wrong());
            }
            let kind = match field.kind() {
                Kind::Int32 | Kind::Enum(_) => WireKind::Int32,
                Kind::Int64 | Kind::Uint32 => WireKind::Int64,
                Kind::Uint64 => WireKind::Uint64,
                Kind::Bool => WireKind::Bool,
                Kind::Sint32 | Kind::Sint64 => WireKind::ZigZag,
                Kind::Fixed64 => WireKind::Fixed64 { signed: false },
                Kind::Sfixed64 => WireKind::Fixed64 { signed: true },
                Kind::Double => WireKind::Double,
                Kind::Fixed32 => WireKind::Fixed32 { signed: false },
                Kind::Sfixed32 => WireKind::Fixed32 { signed: true },
                Kind::Float => WireKind::Float,
                Kind::String => WireKind::String,
                Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => WireKind::Timestamp,
                Kind::Bytes | Kind::Message(_) => return Err(wrong()),
            };
            let integer = !matches!(
                kind,
                WireKind::String | WireKind::Timestamp | WireKind::Double | WireKind::Float | WireKind::Bool
            );
            let fits = match (column.data_type(), kind) {
                (DataType::Utf8, WireKind::String) => true,
                (DataType::Boolean, WireKind::Bool) => true,
                (DataType::Int32 | DataType::Int64, _) => integer,
                (DataType::Float32 | DataType::Float64, k) => {
                    integer || matches!(k, WireKind::Double | WireKind::Float)
                }
                (DataType::Timestamp(TimeUnit::Microsecond, _), k) => {
                    matches!(k, WireKind::Timestamp | WireKind::Int64)
                }
                _ => false,
            };
            if !fits {
                return Err(wrong());
            }
            columns_by_number.insert(field.number(), index);
            fields.push(FieldSpec {
                name: column.name().clone(),
                kind,
                has_presence: field.supports_presence(),
            });
        }
        Ok(Self {
            schema,
            columns_by_number,
            fields,
        })
    }

    /// Decodes every record of a micro-batch of `source`; ids are record positions, `locate`
    /// says where a record was.
    pub fn decode(&self, raw: &RawRecords, source: &str, locate: impl Fn(u64) -> Location + Sync) -> Decoded {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(raw.len() / RECORDS_PER_THREAD).max(1);
        if threads == 1 {
            return self.decode_run(raw, 0..raw.len(), source, &locate);
        }
        let per_thread = raw.len().div_ceil(threads);
        let parts: Vec<Decoded> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = t * per_thread..((t + 1) * per_thread).min(raw.len());
                    let locate = &locate;
                    scope.spawn(move || self.decode_run(raw, range, source, locate))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("Protobuf decoding does not panic"))
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

    fn decode_run(
        &self,
        raw: &RawRecords,
        range: std::ops::Range<usize>,
        source: &str,
        locate: &(impl Fn(u64) -> Location + Sync),
    ) -> Decoded {
        let mut builders: Vec<Builder> = self
            .schema
            .fields()
            .iter()
            .map(|f| Builder::new(f.data_type(), range.len()))
            .collect();
        let mut out = Decoded::default();
        let mut values = vec![Value::Absent; self.fields.len()];
        for i in range {
            let record = raw.value(i);
            values.fill(Value::Absent);
            let checked = self
                .read_fields(record, &mut values)
                .and_then(|()| self.check(record, &values));
            match checked {
                Ok(()) => {
                    for ((builder, value), spec) in builders.iter_mut().zip(&values).zip(&self.fields) {
                        builder.append(*value, record, spec);
                    }
                    out.ids.push(i as u64);
                }
                Err(reason) => out.rejected.push(Reject::new(source, locate(i as u64), reason, record)),
            }
        }
        let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
        out.batches
            .push(RecordBatch::try_new(self.schema.clone(), arrays).expect("builders follow the schema"));
        out
    }

    /// Reads the record's fields, keeping the declared ones' last values.
    fn read_fields(&self, record: &[u8], values: &mut [Value]) -> Result<(), String> {
        let mut at = 0;
        while at < record.len() {
            let key = varint(record, &mut at)?;
            let (number, wire_type) = ((key >> 3) as u32, (key & 7) as u8);
            if number == 0 {
                return Err(invalid("field number 0"));
            }
            let Some(&column) = self.columns_by_number.get(&number) else {
                skip(record, &mut at, wire_type)?;
                continue;
            };
            let spec = &self.fields[column];
            values[column] = match (spec.kind, wire_type) {
                (WireKind::Int32, 0) => Value::Int(i64::from(varint(record, &mut at)? as i32)),
                (WireKind::Int64 | WireKind::Bool, 0) => Value::Int(varint(record, &mut at)? as i64),
                (WireKind::Uint64, 0) => Value::Unsigned(varint(record, &mut at)?),
                (WireKind::ZigZag, 0) => {
                    let v = varint(record, &mut at)?;
                    Value::Int(((v >> 1) as i64) ^ -((v & 1) as i64))
                }
                (WireKind::Fixed64 { .. } | WireKind::Double, 1) => {
                    let bytes: [u8; 8] = take(record, &mut at, 8)?.try_into().expect("8 bytes");
                    match spec.kind {
                        WireKind::Double => Value::Float(f64::from_le_bytes(bytes)),
                        _ if signed_of(spec.kind) => Value::Int(i64::from_le_bytes(bytes)),
                        _ => Value::Unsigned(u64::from_le_bytes(bytes)),
                    }
                }
                (WireKind::Fixed32 { .. } | WireKind::Float, 5) => {
                    let bytes: [u8; 4] = take(record, &mut at, 4)?.try_into().expect("4 bytes");
                    match spec.kind {
                        WireKind::Float => Value::Float(f64::from(f32::from_le_bytes(bytes))),
                        _ if signed_of(spec.kind) => Value::Int(i64::from(i32::from_le_bytes(bytes))),
                        _ => Value::Int(i64::from(u32::from_le_bytes(bytes))),
                    }
                }
                (WireKind::String, 2) => {
                    let length = varint(record, &mut at)? as usize;
                    let start = at;
                    take(record, &mut at, length)?;
                    Value::Text(start, at)
                }
                (WireKind::Timestamp, 2) => {
                    let length = varint(record, &mut at)? as usize;
                    let message = take(record, &mut at, length)?;
                    // Fields of a message that occurs twice are merged: the later ones win.
                    let (seconds, nanos) = match values[column] {
                        Value::Micros(m) => (m.div_euclid(1_000_000), m.rem_euclid(1_000_000) * 1000),
                        _ => (0, 0),
                    };
                    Value::Micros(timestamp(message, seconds, nanos)?)
                }
                (_, wire_type) => {
                    return Err(invalid(&format!(
                        "field `{}` (number {number}) has wire type {wire_type}, which does not fit its declared type",
                        spec.name
                    )));
                }
            };
        }
        Ok(())
    }

    /// Whether every value fits its column.
    fn check(&self, record: &[u8], values: &[Value]) -> Result<(), String> {
        for ((value, spec), column) in values.iter().zip(&self.fields).zip(self.schema.fields()) {
            let fits = match (value, column.data_type()) {
                (Value::Absent, _) => true,
                (Value::Text(start, end), _) => std::str::from_utf8(&record[*start..*end]).is_ok(),
                (Value::Int(v), DataType::Int32) => i32::try_from(*v).is_ok(),
                (Value::Unsigned(v), DataType::Int32) => i32::try_from(*v).is_ok(),
                (Value::Unsigned(v), DataType::Int64) => i64::try_from(*v).is_ok(),
                _ => true,
            };
            if !fits {
                let shown = match value {
                    Value::Text(..) => "bytes that are not UTF-8".to_string(),
                    Value::Int(v) => v.to_string(),
                    Value::Unsigned(v) => v.to_string(),
                    other => format!("{other:?}"),
                };
                return Err(format!(
                    "field `{}` holds {shown}, which is not a {}",
                    spec.name,
                    column.data_type()
                ));
            }
        }
        Ok(())
    }
}

/// Whether a fixed-width integer kind is signed.
fn signed_of(kind: WireKind) -> bool {
    matches!(
        kind,
        WireKind::Fixed64 { signed: true } | WireKind::Fixed32 { signed: true }
    )
}

/// An Arrow builder for one declared column type.
enum Builder {
    Utf8(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(data_type: &DataType, capacity: usize) -> Self {
        match data_type {
            DataType::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => Builder::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Timestamp(..) => Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity)),
            _ => Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    /// Appends a checked value; an absent one is NULL with presence, else the default.
    fn append(&mut self, value: Value, record: &[u8], spec: &FieldSpec) {
        let default = !spec.has_presence;
        match (self, value) {
            (Builder::Utf8(b), Value::Text(start, end)) => {
                b.append_value(std::str::from_utf8(&record[start..end]).expect("checked"))
            }
            (Builder::Utf8(b), Value::Absent) if default => b.append_value(""),
            (Builder::Int32(b), v) => b.append_option(integer(v, default).map(|v| v as i32)),
            (Builder::Int64(b), v) => b.append_option(integer(v, default)),
            (Builder::Float32(b), v) => b.append_option(float(v, default).map(|v| v as f32)),
            (Builder::Float64(b), v) => b.append_option(float(v, default)),
            (Builder::Boolean(b), v) => b.append_option(integer(v, default).map(|v| v != 0)),
            (Builder::Timestamp(b), Value::Micros(m)) => b.append_value(m),
            (Builder::Timestamp(b), Value::Int(millis)) => b.append_option(millis.checked_mul(1000)),
            (Builder::Timestamp(b), Value::Absent) if default => b.append_value(0),
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Boolean(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Utf8(mut b) => Arc::new(b.finish()),
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Float32(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Boolean(mut b) => Arc::new(b.finish()),
            Builder::Timestamp(mut b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

fn integer(value: Value, default: bool) -> Option<i64> {
    match value {
        Value::Int(v) => Some(v),
        Value::Unsigned(v) => i64::try_from(v).ok(),
        Value::Absent if default => Some(0),
        _ => None,
    }
}

fn float(value: Value, default: bool) -> Option<f64> {
    match value {
        Value::Float(v) => Some(v),
        Value::Int(v) => Some(v as f64),
        Value::Unsigned(v) => Some(v as f64),
        Value::Absent if default => Some(0.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Schema};
    use prost::Message;
    use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};

    use super::*;
    use crate::config::columns::timestamp_type;

    const CHAT: &[u8] = include_bytes!("../../proto/chat.desc");

    fn message() -> MessageDescriptor {
        DescriptorPool::decode(CHAT)
            .unwrap()
            .get_message_by_name("quickchat.ChatMessage")
            .unwrap()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("message_id", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
            Field::new("sent_at", timestamp_type(), true),
        ]))
    }

    fn chat_message(id: &str, content: &str, sent_at: Option<(i64, i32)>) -> Vec<u8> {
        let mut message = DynamicMessage::new(self::message());
        message.set_field_by_name("message_id", prost_reflect::Value::String(id.into()));
        message.set_field_by_name("content", prost_reflect::Value::String(content.into()));
        if let Some((seconds, nanos)) = sent_at {
            let field = self::message().get_field_by_name("sent_at").unwrap();
            let mut timestamp = DynamicMessage::new(field.kind().as_message().unwrap().clone());
            timestamp.set_field_by_name("seconds", prost_reflect::Value::I64(seconds));
            timestamp.set_field_by_name("nanos", prost_reflect::Value::I32(nanos));
            message.set_field_by_name("sent_at", prost_reflect::Value::Message(timestamp));
        }
        assert_eq!(message.descriptor().full_name(), "quickchat.ChatMessage");
        message.encode_to_vec()
    }

    fn at(i: u64) -> Location {
        Location::Record {
            topic: "chat".into(),
            partition: 0,
            offset: i as i64,
        }
    }

    fn decode(records: &[Vec<u8>]) -> Decoded {
        let decoder = ProtobufDecoder::new(&message(), schema()).unwrap();
        let mut raw = RawRecords::default();
        for (i, record) in records.iter().enumerate() {
            raw.push(0, i as i64, None, None, record);
        }
        decoder.decode(&raw, "chat", at)
    }

    #[test]
    fn chat_messages_decode_by_field_name_and_garbage_is_rejected() {
        let decoded = decode(&[
            chat_message("m1", "héllo", Some((1_704_067_200, 250_000_000))),
            b"\xff\xff\xff".to_vec(),
            chat_message("m2", "", None),
        ]);
        assert_eq!(decoded.ids, [0, 2]);
        assert_eq!(decoded.rejected.len(), 1);
        assert!(
            decoded.rejected[0].reason.starts_with("invalid Protobuf"),
            "{:?}",
            decoded.rejected
        );
        let batch = &decoded.batches[0];
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "héllo");
        assert_eq!(
            batch.column(1).as_string::<i32>().value(1),
            "",
            "an absent proto3 string is its default"
        );
        let sent = batch
            .column(2)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(sent.value(0), 1_704_067_200_250_000);
        assert!(sent.is_null(1), "an absent Timestamp message is NULL");
    }

    #[test]
    fn truncated_misencoded_and_non_utf8_records_are_rejected_with_the_reason() {
        let good = chat_message("m1", "hi", Some((10, 0)));
        let mut wrong_wire_type = vec![0x08, 0x01]; // field 1 (a string) as a varint
        wrong_wire_type.extend_from_slice(&good);
        let mut not_utf8 = vec![0x22, 0x02, 0xff, 0xfe]; // field 4 (content), 2 bytes
        not_utf8.extend_from_slice(&[0x0a, 0x01, b'x']);
        let mut unknown_field = good.clone();
        unknown_field.extend_from_slice(&[0xa0, 0x06, 0x05]); // field 100, varint 5: skipped
        let decoded = decode(&[
            good[..good.len() - 3].to_vec(),
            wrong_wire_type,
            not_utf8,
            unknown_field,
            Vec::new(),
        ]);
        assert_eq!(
            decoded.ids,
            [3, 4],
            "a field of another number is skipped; an empty message is all defaults"
        );
        let reasons: Vec<&str> = decoded.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("ends inside"), "{reasons:?}");
        assert!(reasons[1].contains("wire type 0"), "{reasons:?}");
        assert!(reasons[2].contains("not UTF-8"), "{reasons:?}");
    }

    #[test]
    fn a_large_micro_batch_decodes_on_several_threads_in_order() {
        let records: Vec<Vec<u8>> = (0..40_000)
            .map(|i| {
                if i % 9_999 == 0 {
                    b"\x0a\x05ab".to_vec()
                } else {
                    chat_message(&format!("m{i}"), "x", Some((i, 0)))
                }
            })
            .collect();
        let decoded = decode(&records);
        assert_eq!(decoded.ids.len() + decoded.rejected.len(), records.len());
        assert!(decoded.ids.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(decoded.rejected.len(), 5);
        let ids: Vec<&str> = decoded
            .batches
            .iter()
            .flat_map(|b| b.column(0).as_string::<i32>().iter().flatten().collect::<Vec<_>>())
            .collect();
        assert!(ids.iter().zip(&decoded.ids).all(|(id, n)| *id == format!("m{n}")));
    }

    #[test]
    fn unknown_fields_and_types_that_do_not_fit_are_named() {
        let wrong = Arc::new(Schema::new(vec![Field::new("channel", DataType::Utf8, true)]));
        let err = ProtobufDecoder::new(&message(), wrong).unwrap_err();
        assert!(err.contains("no field channel"), "{err}");
        let wrong = Arc::new(Schema::new(vec![Field::new("sent_at", DataType::Utf8, true)]));
        let err = ProtobufDecoder::new(&message(), wrong).unwrap_err();
        assert!(err.contains("column `sent_at` is Utf8"), "{err}");
    }
}
