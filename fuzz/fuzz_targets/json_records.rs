//! Stream records as JSON (one per line of the input) into the clickstream pipeline's
//! `clickstream` source, through the decoder `run` uses for every micro-batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickchat_etl::decode::decode_records;
use quickchat_etl_fuzz::{assert_one_row_or_reject_each, assert_rejects_name_records, line_records, stream_source};

fuzz_target!(|data: &[u8]| {
    let source = stream_source("clickstream-analytics", "clickstream");
    let records = line_records(data);
    let (batch, rejected) = decode_records(source, None, &records, 1 << 20).expect("decoding never fails a batch");
    assert_one_row_or_reject_each(records.len(), batch.num_rows(), &rejected);
    assert_rejects_name_records(&records, &rejected);
});
