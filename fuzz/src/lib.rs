//! What the fuzz targets share: the shipped pipelines' sources (the schemas real records are
//! decoded into) and the checks every decoded input must pass, whatever its bytes:
//!
//! - no panic and no hang (libFuzzer reports both);
//! - every record gives exactly one row or one reject, never both, never neither;
//! - every reject says why and points at a record that exists.

use std::sync::OnceLock;

use quickchat_etl::config::Vars;
use quickchat_etl::config::job::Source;
use quickchat_etl::config::stream_pipeline::StreamSource;
use quickchat_etl::decode::reject::{Location, Reject};
use quickchat_etl::jobs::Registry;
use quickchat_etl::project::{Project, ProjectLocation};
use quickchat_etl::sources::positions::RawRecords;

/// The pipelines built into the binary, loaded once per fuzzing process.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::load(&Project::new(ProjectLocation::BuiltIn), &Vars::default())
            .expect("the built-in pipelines load")
    })
}

/// The one source of a shipped batch job.
pub fn batch_source(job: &str) -> &'static Source {
    &registry().get(job).unwrap_or_else(|| panic!("no job {job}")).sources[0]
}

/// A source of a shipped streaming pipeline.
pub fn stream_source(pipeline: &str, source: &str) -> &'static StreamSource {
    registry()
        .stream(pipeline)
        .and_then(|p| p.source(source))
        .unwrap_or_else(|| panic!("no source {source} in {pipeline}"))
}

/// Raw stream records from the fuzzer's bytes: each record is one byte of length followed by
/// that many bytes (a binary record may hold any byte, so lines would not do).
pub fn length_prefixed_records(data: &[u8]) -> RawRecords {
    let mut records = RawRecords::default();
    let mut rest = data;
    let mut offset = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        records.push(0, offset, Some(1_700_000_000_000), None, &tail[..len]);
        rest = &tail[len..];
        offset += 1;
    }
    records
}

/// Raw stream records from the fuzzer's bytes, one per line (JSON records).
pub fn line_records(data: &[u8]) -> RawRecords {
    let mut records = RawRecords::default();
    for (offset, line) in data.split(|b| *b == b'\n').enumerate() {
        records.push(0, offset as i64, Some(1_700_000_000_000), None, line);
    }
    records
}

/// Asserts that `records` records gave `rows` rows and the rejects, one each, and that every
/// reject says why.
pub fn assert_one_row_or_reject_each(records: usize, rows: usize, rejected: &[Reject]) {
    assert_eq!(
        rows + rejected.len(),
        records,
        "{records} records gave {rows} rows and {} rejects",
        rejected.len()
    );
    for reject in rejected {
        assert!(!reject.reason.trim().is_empty(), "a reject without a reason: {reject:?}");
    }
}

/// Asserts that a reject from a stream record names an offset that was in the input, once.
pub fn assert_rejects_name_records(records: &RawRecords, rejected: &[Reject]) {
    let mut seen = std::collections::HashSet::new();
    for reject in rejected {
        let Location::Record { offset, .. } = &reject.location else {
            panic!("a stream reject located by {:?}", reject.location);
        };
        assert!(records.offsets.contains(offset), "a reject names offset {offset}, not in the input");
        assert!(seen.insert(*offset), "offset {offset} rejected twice");
    }
}

/// Asserts that a reject from a file names a line of it (from 1), each line at most once.
pub fn assert_rejects_name_lines(lines: u64, rejected: &[Reject]) {
    let mut seen = std::collections::HashSet::new();
    for reject in rejected {
        let Location::Line { line, .. } = &reject.location else {
            panic!("a file reject located by {:?}", reject.location);
        };
        assert!((1..=lines).contains(line), "a reject names line {line} of a {lines}-line file");
        assert!(seen.insert(*line), "line {line} rejected twice");
    }
}
