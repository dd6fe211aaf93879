//! Stream records as Protobuf `quickchat.ChatMessage` messages (each one byte of length and
//! its bytes) into the chat pipeline's source, through the decoder `run` uses.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quickchat_etl::decode::decode_records;
use quickchat_etl::decode::protobuf::ProtobufDecoder;
use quickchat_etl_fuzz::{
    assert_one_row_or_reject_each, assert_rejects_name_records, length_prefixed_records, stream_source,
};

fuzz_target!(|data: &[u8]| {
    let source = stream_source("chat-analytics", "chat");
    static DECODER: OnceLock<ProtobufDecoder> = OnceLock::new();
    let decoder = DECODER.get_or_init(|| {
        let message = source.protobuf.as_ref().expect("chat is a Protobuf source");
        ProtobufDecoder::new(message, source.value_schema.clone()).expect("the chat descriptor fits its columns")
    });
    let records = length_prefixed_records(data);
    let (batch, rejected) =
        decode_records(source, Some(decoder), &records, 1 << 20).expect("decoding never fails a batch");
    assert_one_row_or_reject_each(records.len(), batch.num_rows(), &rejected);
    assert_rejects_name_records(&records, &rejected);
});
