//! Event files for the streaming pipelines: `<topic>.jsonl` for each source of a pipeline, the
//! input of `run <pipeline> --from-files DIR` (the same events the generator and `produce` give).

use crate::config::stream_pipeline::StreamPipeline;
use crate::error::Result;
use crate::sources::generator::{DISORDER_MS, EventGenerator, USERS, shares};

/// The events of one source, as JSON lines.
pub struct StreamFile {
    /// The Kafka topic (the file is `<topic>.jsonl`).
    pub topic: String,
    /// JSON lines.
    pub contents: Vec<u8>,
    /// Events in it.
    pub events: u64,
}

/// `events` events in all for the pipeline's sources (shared by the sources' weights), at
/// `rate` events per second of event time from `start_ms`.
pub fn stream_files(
    pipeline: &StreamPipeline,
    events: u64,
    rate: f64,
    start_ms: i64,
    seed: u64,
) -> Result<Vec<StreamFile>> {
    let mut files = Vec::new();
    for (source, (kind, share)) in pipeline.sources.iter().zip(shares(pipeline)?) {
        let count = (events as f64 * share).round() as u64;
        let source_rate = (rate * share).max(0.001);
        let generator = EventGenerator::new(kind, seed, USERS);
        let mut contents = Vec::with_capacity(count as usize * 256);
        for n in 0..count {
            let time = generator.event_time(n, start_ms, source_rate, DISORDER_MS);
            generator.write_json(n, time, &mut contents);
            contents.push(b'\n');
        }
        files.push(StreamFile {
            topic: source.topic.clone(),
            contents,
            events: count,
        });
    }
    Ok(files)
}
