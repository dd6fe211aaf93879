//! A mongoexport file (relaxed or canonical Extended JSON lines) into bronze-messages' source,
//! through the decoder `run` uses for each chunk of a file.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use quickchat_etl::decode::decode_lines;
use quickchat_etl::sources::files::LinesFile;
use quickchat_etl_fuzz::{assert_one_row_or_reject_each, assert_rejects_name_lines, batch_source};

fuzz_target!(|data: &[u8]| {
    let source = batch_source("bronze-messages");
    let file = LinesFile::new("fuzz/messages.json".to_string(), Bytes::copy_from_slice(data));
    let (batches, rejected) = decode_lines(source, &file);
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    assert_one_row_or_reject_each(file.len(), rows, &rejected);
    assert_rejects_name_lines(file.len() as u64, &rejected);
});
