//! Protobuf records decoded with a descriptor set (`protoc --include_imports
//! --descriptor_set_out=...`) into the source's declared columns, by field name.
//!
//! Timestamp columns accept a `google.protobuf.Timestamp` field or an integer of epoch
//! milliseconds. A message field that is absent is NULL; proto3 scalars that are absent read as
//! their defaults, as Protobuf defines them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use super::records::RawRecords;
use crate::sources::json_lines::{Decoded, Rejected};

/// Decodes one message type into a declared schema.
#[derive(Debug, Clone)]
pub struct ProtobufDecoder {
    message: MessageDescriptor,
    schema: SchemaRef,
}

impl ProtobufDecoder {
    /// A decoder for `message_name` from a descriptor set, checked against the declared columns.
    pub fn new(descriptor_set: &[u8], message_name: &str, schema: SchemaRef) -> Result<Self, String> {
        let pool = DescriptorPool::decode(descriptor_set).map_err(|e| format!("bad descriptor set: {e}"))?;
        let message = pool.get_message_by_name(message_name).ok_or_else(|| {
            let known: Vec<String> = pool.all_messages().map(|m| m.full_name().to_string()).collect();
            format!(
                "no message `{message_name}` in the descriptor set (it has: {})",
                known.join(", ")
            )
        })?;
        let missing: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| message.get_field_by_name(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!("message `{message_name}` has no field {}", missing.join(", ")));
        }
        Ok(Self { message, schema })
    }

    /// The message descriptor (the producer encodes with it).
    pub fn message(&self) -> &MessageDescriptor {
        &self.message
    }

    /// Decodes every record of a micro-batch; ids are record positions.
    pub fn decode(&self, raw: &RawRecords) -> Decoded {
        let mut columns: Vec<Column> = self
            .schema
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type(), raw.len()))
            .collect();
        let mut out = Decoded::default();
        let mut ids = Vec::with_capacity(raw.len());
        for i in 0..raw.len() {
            let message = match DynamicMessage::decode(self.message.clone(), raw.value(i)) {
                Ok(message) => message,
                Err(e) => {
                    out.rejected.push(Rejected {
                        id: i as u64,
                        reason: format!("invalid Protobuf: {e}"),
                        raw: raw.value(i).to_vec(),
                    });
                    continue;
                }
            };
            if let Err(reason) = self.check_row(&message) {
                out.rejected.push(Rejected {
                    id: i as u64,
                    reason,
                    raw: raw.value(i).to_vec(),
                });
                continue;
            }
            for (column, field) in columns.iter_mut().zip(self.schema.fields()) {
                let descriptor = self.message.get_field_by_name(field.name()).expect("checked in new()");
                let value = message.has_field(&descriptor).then(|| message.get_field(&descriptor));
                column.append(value.as_deref());
            }
            ids.push(i as u64);
        }
        let arrays: Vec<ArrayRef> = columns.into_iter().map(Column::finish).collect();
        out.batches
            .push(RecordBatch::try_new(self.schema.clone(), arrays).expect("columns follow the schema"));
        out.ids = ids;
        out
    }

    /// Whether every field holds a value its column can take.
    fn check_row(&self, message: &DynamicMessage) -> Result<(), String> {
        for field in self.schema.fields() {
            let descriptor = self.message.get_field_by_name(field.name()).expect("checked in new()");
            if !message.has_field(&descriptor) {
                continue;
            }
            let value = message.get_field(&descriptor);
            if !Column::accepts(field.data_type(), &value) {
                return Err(format!(
                    "field `{}` holds {value:?}, which is not a {}",
                    field.name(),
                    field.data_type()
                ));
            }
        }
        Ok(())
    }
}

/// An Arrow builder for one declared column type.
enum Column {
    Utf8(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(data_type: &DataType, capacity: usize) -> Self {
        match data_type {
            DataType::Int32 => Column::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Column::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float64 | DataType::Float32 => Column::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Column::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            _ => Column::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    fn accepts(data_type: &DataType, value: &Value) -> bool {
        match (data_type, value) {
            (
                DataType::Int32 | DataType::Int64,
                Value::I32(_) | Value::I64(_) | Value::U32(_) | Value::EnumNumber(_),
            ) => true,
            (DataType::Int64, Value::U64(v)) => i64::try_from(*v).is_ok(),
            (DataType::Float64 | DataType::Float32, Value::F32(_) | Value::F64(_) | Value::I32(_) | Value::I64(_)) => {
                true
            }
            (DataType::Boolean, Value::Bool(_)) => true,
            (DataType::Timestamp(TimeUnit::Microsecond, _), Value::I64(_) | Value::Message(_)) => true,
            (DataType::Utf8, Value::String(_)) => true,
            _ => false,
        }
    }

    fn append(&mut self, value: Option<&Value>) {
        match (self, value) {
            (Column::Utf8(b), Some(Value::String(s))) => b.append_value(s),
            (Column::Int32(b), Some(v)) => b.append_option(integer(v).and_then(|v| i32::try_from(v).ok())),
            (Column::Int64(b), Some(v)) => b.append_option(integer(v)),
            (Column::Float64(b), Some(Value::F64(v))) => b.append_value(*v),
            (Column::Float64(b), Some(Value::F32(v))) => b.append_value(f64::from(*v)),
            (Column::Float64(b), Some(v)) => b.append_option(integer(v).map(|v| v as f64)),
            (Column::Boolean(b), Some(Value::Bool(v))) => b.append_value(*v),
            (Column::Timestamp(b), Some(Value::I64(millis))) => b.append_value(millis * 1000),
            (Column::Timestamp(b), Some(Value::Message(m))) => b.append_option(timestamp_micros(m)),
            (column, _) => column.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Utf8(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Boolean(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Utf8(mut b) => Arc::new(b.finish()),
            Column::Int32(mut b) => Arc::new(b.finish()),
            Column::Int64(mut b) => Arc::new(b.finish()),
            Column::Float64(mut b) => Arc::new(b.finish()),
            Column::Boolean(mut b) => Arc::new(b.finish()),
            Column::Timestamp(mut b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::I32(v) | Value::EnumNumber(v) => Some(i64::from(*v)),
        Value::I64(v) => Some(*v),
        Value::U32(v) => Some(i64::from(*v)),
        Value::U64(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A `google.protobuf.Timestamp` as microseconds since the epoch.
fn timestamp_micros(message: &DynamicMessage) -> Option<i64> {
    let seconds = message.get_field_by_name("seconds").and_then(|v| v.as_i64())?;
    let nanos = message.get_field_by_name("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
    Some(seconds * 1_000_000 + i64::from(nanos) / 1000)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Schema};
    use prost::Message;
    use prost_reflect::ReflectMessage;

    use super::*;
    use crate::config::columns::timestamp_type;

    const CHAT: &[u8] = include_bytes!("../../proto/chat.desc");

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("message_id", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
            Field::new("sent_at", timestamp_type(), true),
        ]))
    }

    fn chat_message(decoder: &ProtobufDecoder, id: &str, sent_at: Option<(i64, i32)>) -> Vec<u8> {
        let mut message = DynamicMessage::new(decoder.message().clone());
        message.set_field_by_name("message_id", Value::String(id.into()));
        message.set_field_by_name("content", Value::String("héllo".into()));
        if let Some((seconds, nanos)) = sent_at {
            let field = decoder.message().get_field_by_name("sent_at").unwrap();
            let mut timestamp = DynamicMessage::new(field.kind().as_message().unwrap().clone());
            timestamp.set_field_by_name("seconds", Value::I64(seconds));
            timestamp.set_field_by_name("nanos", Value::I32(nanos));
            message.set_field_by_name("sent_at", Value::Message(timestamp));
        }
        assert_eq!(message.descriptor().full_name(), "quickchat.ChatMessage");
        message.encode_to_vec()
    }

    #[test]
    fn chat_messages_decode_by_field_name_and_garbage_is_rejected() {
        let decoder = ProtobufDecoder::new(CHAT, "quickchat.ChatMessage", schema()).unwrap();
        let mut raw = RawRecords::default();
        raw.push(
            0,
            0,
            None,
            None,
            &chat_message(&decoder, "m1", Some((1_704_067_200, 250_000_000))),
        );
        raw.push(0, 1, None, None, b"\xff\xff\xff");
        raw.push(0, 2, None, None, &chat_message(&decoder, "m2", None));
        let decoded = decoder.decode(&raw);
        assert_eq!(decoded.ids, [0, 2]);
        assert_eq!(decoded.rejected.len(), 1);
        assert!(
            decoded.rejected[0].reason.starts_with("invalid Protobuf"),
            "{:?}",
            decoded.rejected
        );
        let batch = &decoded.batches[0];
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "héllo");
        let sent = batch
            .column(2)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(sent.value(0), 1_704_067_200_250_000);
        assert!(sent.is_null(1), "an absent Timestamp message is NULL");
    }

    #[test]
    fn unknown_messages_and_fields_are_named() {
        let err = ProtobufDecoder::new(CHAT, "quickchat.Nope", schema()).unwrap_err();
        assert!(err.contains("quickchat.ChatMessage"), "{err}");
        let wrong = Arc::new(Schema::new(vec![Field::new("channel", DataType::Utf8, true)]));
        let err = ProtobufDecoder::new(CHAT, "quickchat.ChatMessage", wrong).unwrap_err();
        assert!(err.contains("no field channel"), "{err}");
    }
}
