//! A CSV export of the MySQL users table into bronze-users' source, through the decoder `run`
//! uses when the table is read from its CSV export.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickchat_etl::decode::csv;
use quickchat_etl_fuzz::{assert_one_row_or_reject_each, assert_rejects_name_lines, batch_source};

fuzz_target!(|data: &[u8]| {
    let source = batch_source("bronze-users");
    let (mut rows, mut rejected) = (0, Vec::new());
    let decoded = csv::decode(&source.schema, data, &source.name, "fuzz/users.csv", |batches, rejects| {
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
        rejected.extend(rejects);
        true
    });
    match decoded {
        Ok(()) => {
            assert_one_row_or_reject_each(data_records(data), rows, &rejected);
            let lines = data.iter().filter(|b| **b == b'\n' || **b == b'\r').count() as u64 + 1;
            assert_rejects_name_lines(lines, &rejected);
        }
        // Only a header without a declared column (or one that cannot be read) fails the
        // whole file, and says so.
        Err(e) => assert!(e.to_string().contains("header"), "{e}"),
    }
});

/// Records after the header as the csv crate reads them with records ending at `\n` (the
/// decoder's setting), blank lines (of LF or CRLF files) not counted.
fn data_records(data: &[u8]) -> usize {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_reader(data);
    let mut record = ::csv::ByteRecord::new();
    let mut count = 0;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        let blank = record.len() == 1 && matches!(record.get(0), Some(b"" | b"\r"));
        count += usize::from(!blank);
    }
    count
}
