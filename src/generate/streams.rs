//! Event files for the streaming pipelines: `<topic>.jsonl` for each source of a pipeline, the
//! input of `run <pipeline> --from-files DIR` (the same events the generator and `produce` give).

use super::events::{EventGenerator, EventKind};
use crate::error::{Error, Result};
use crate::stream::StreamPipeline;

/// How far out of order generated events are: well inside every watermark delay, so no event
/// is late and every mode gives the same tables.
pub const DISORDER_MS: i64 = 20_000;

/// Distinct users in generated streams.
pub const USERS: u64 = 200;

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
    let mut kinds = Vec::new();
    for source in &pipeline.sources {
        let name = source.def.generator.as_deref().ok_or_else(|| {
            Error::config_in(
                &pipeline.pipeline_path,
                format!("sources.{}: no `generator` to generate events with", source.name),
            )
        })?;
        kinds.push(EventKind::parse(name).map_err(|e| Error::config_in(&pipeline.pipeline_path, e))?);
    }
    let total_weight: f64 = kinds.iter().map(|k| k.weight()).sum();
    let mut files = Vec::new();
    for (source, kind) in pipeline.sources.iter().zip(kinds) {
        let share = kind.weight() / total_weight;
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
            topic: source.def.topic.clone(),
            contents,
            events: count,
        });
    }
    Ok(files)
}
