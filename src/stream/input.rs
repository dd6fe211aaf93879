//! Where a streaming pipeline's records come from: Kafka, files (`--from-files DIR`: the file
//! `DIR/<topic>.jsonl` per source), or the built-in generator (`--from-generator`).
//!
//! Every input reads from positions (partition → offset; a line number for files, an event
//! number for the generator) and can read an epoch's exact range again, which is what makes a
//! restart replay the same micro-batches.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStoreExt;
use prost::Message;

use super::StreamPipeline;
use super::kafka::KafkaInput;
use super::records::{EpochRange, Positions, RawRecords};
use crate::catalog::Lake;
use crate::config::stream::RecordFormat;
use crate::error::{Error, Result};
use crate::generate::events::{EventGenerator, EventKind};
use crate::generate::streams::{DISORDER_MS, USERS};

/// How record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// JSON objects (files are always JSON lines).
    Json,
    /// Protobuf messages.
    Protobuf,
}

/// A micro-batch read from an input.
#[derive(Debug, Default)]
pub struct InputBatch {
    /// Records per source.
    pub records: HashMap<String, RawRecords>,
    /// `source -> partition -> [start, end)`.
    pub ranges: BTreeMap<String, BTreeMap<i32, (i64, i64)>>,
    /// `source -> partition -> idle`: whether the partition had nothing more to read.
    pub idle: BTreeMap<String, BTreeMap<i32, bool>>,
}

impl InputBatch {
    /// Records read.
    pub fn len(&self) -> usize {
        self.records.values().map(RawRecords::len).sum()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The input of a run.
pub enum Input {
    /// Kafka topics.
    Kafka(Box<KafkaInput>),
    /// JSON lines files.
    Files(FileInput),
    /// The built-in generator.
    Generator(GeneratorInput),
}

impl Input {
    /// The name used for the checkpoint folder and Delta application ids (`kafka`, `files`,
    /// `generator`): runs from different inputs keep separate progress.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Kafka(_) => "kafka",
            Input::Files(_) => "files",
            Input::Generator(_) => "generator",
        }
    }

    /// How a source's records are encoded on this input.
    pub fn codec(&self, format: RecordFormat) -> Codec {
        match (self, format) {
            (Input::Files(_), _) | (_, RecordFormat::Json) => Codec::Json,
            (_, RecordFormat::Protobuf) => Codec::Protobuf,
        }
    }

    /// Where a run without a checkpoint starts.
    pub async fn start_positions(&mut self) -> Result<Positions> {
        match self {
            Input::Kafka(kafka) => kafka.start_positions().await,
            Input::Files(files) => Ok(files
                .sources
                .keys()
                .map(|s| (s.clone(), BTreeMap::from([(0, 0)])))
                .collect()),
            Input::Generator(generator) => Ok(generator
                .sources
                .iter()
                .map(|s| (s.name.clone(), BTreeMap::from([(0, 0)])))
                .collect()),
        }
    }

    /// Continues a run restored from a checkpoint: the generator keeps the original run's event
    /// times and produces from where it stopped.
    pub fn resume(&mut self, generator_start_ms: Option<i64>, positions: &Positions) {
        if let Input::Generator(generator) = self {
            generator.resume(generator_start_ms, positions);
        }
    }

    /// The generator's first event time, to save with the state.
    pub fn generator_start_ms(&self) -> Option<i64> {
        match self {
            Input::Generator(generator) => Some(generator.start_ms),
            _ => None,
        }
    }

    /// Reads the next micro-batch from `positions`: up to `max_records`, waiting at most
    /// `interval` for records to arrive.
    pub async fn next(&mut self, positions: &Positions, max_records: usize, interval: Duration) -> Result<InputBatch> {
        match self {
            Input::Kafka(kafka) => kafka.next(positions, max_records, interval).await,
            Input::Files(files) => {
                let mut batch = files.next(positions, max_records);
                batch.idle = files.idle(&batch.ranges);
                Ok(batch)
            }
            Input::Generator(generator) => generator.next(positions, max_records, interval).await,
        }
    }

    /// Reads exactly the records of an epoch again.
    pub async fn replay(&mut self, range: &EpochRange) -> Result<InputBatch> {
        match self {
            Input::Kafka(kafka) => kafka.replay(range).await,
            Input::Files(files) => files.replay(&range.ranges),
            Input::Generator(generator) => Ok(generator.read(&range.ranges)),
        }
    }

    /// Whether a bounded input has nothing more to give after `positions`.
    pub fn exhausted(&self, positions: &Positions) -> bool {
        match self {
            Input::Kafka(_) => false,
            Input::Files(files) => files.exhausted(positions),
            Input::Generator(generator) => generator.exhausted(positions),
        }
    }

    /// For Kafka: whether `positions` reached the end offsets seen when the run started.
    pub async fn caught_up(&mut self, positions: &Positions) -> Result<bool> {
        match self {
            Input::Kafka(kafka) => kafka.caught_up(positions).await,
            _ => Ok(self.exhausted(positions)),
        }
    }

    /// After an epoch is committed: records progress outside the pipeline (Kafka consumer group
    /// offsets, for lag monitoring).
    pub fn committed(&mut self, positions: &Positions) {
        if let Input::Kafka(kafka) = self {
            kafka.commit_offsets(positions);
        }
    }
}

/// Records from `DIR/<topic>.jsonl` files, read whole.
pub struct FileInput {
    sources: BTreeMap<String, LinesFile>,
}

struct LinesFile {
    topic: String,
    /// Where it was read from, for messages.
    location: String,
    bytes: Bytes,
    /// Byte range of each line (without its newline).
    lines: Vec<(usize, usize)>,
}

impl FileInput {
    /// Reads every source's file from `dir` (a folder or URL, resolved against the lake).
    pub async fn open(pipeline: &StreamPipeline, lake: &Lake, dir: &str) -> Result<Self> {
        let folder = lake.location().resolve_folder(dir)?;
        let mut sources = BTreeMap::new();
        for source in &pipeline.sources {
            let url = folder
                .join(&format!("{}.jsonl", source.def.topic))
                .map_err(|e| Error::Internal(e.to_string()))?;
            let (store, path) = lake.object_store(&url)?;
            let source_error = |message: String| Error::Source {
                source_name: source.name.clone(),
                location: url.to_string(),
                message,
                retryable: false,
            };
            let bytes = match store.get(&path).await {
                Ok(result) => result.bytes().await.map_err(|e| source_error(e.to_string()))?,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(source_error(format!(
                        "no such file: --from-files reads one JSON-lines file per topic, named {}.jsonl",
                        source.def.topic
                    )));
                }
                Err(e) => return Err(source_error(e.to_string())),
            };
            let mut lines = Vec::new();
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &bytes) {
                lines.push((start, end));
                start = end + 1;
            }
            if start < bytes.len() {
                lines.push((start, bytes.len()));
            }
            sources.insert(
                source.name.clone(),
                LinesFile {
                    topic: source.def.topic.clone(),
                    location: url.to_string(),
                    bytes,
                    lines,
                },
            );
        }
        Ok(Self { sources })
    }

    fn position(positions: &Positions, source: &str) -> i64 {
        positions.get(source).and_then(|p| p.get(&0)).copied().unwrap_or(0)
    }

    /// The next lines of every file, each file advancing in proportion to its length so that
    /// the files' event times move on together.
    fn next(&self, positions: &Positions, max_records: usize) -> InputBatch {
        let total: usize = self.sources.values().map(|f| f.lines.len()).sum::<usize>().max(1);
        let mut ranges = BTreeMap::new();
        for (name, file) in &self.sources {
            let position = Self::position(positions, name);
            let share = (max_records * file.lines.len()).div_ceil(total).max(1) as i64;
            let end = (position + share).min(file.lines.len() as i64);
            ranges.insert(name.clone(), BTreeMap::from([(0, (position, end))]));
        }
        self.read(&ranges)
    }

    fn read(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> InputBatch {
        let mut batch = InputBatch {
            ranges: ranges.clone(),
            ..Default::default()
        };
        for (name, partitions) in ranges {
            let Some(file) = self.sources.get(name) else { continue };
            let mut records = RawRecords::default();
            for (start, end) in partitions.values() {
                let lines = &file.lines[*start as usize..*end as usize];
                if let (Some(first), Some(last)) = (lines.first(), lines.last()) {
                    records.reserve(lines.len(), last.1 - first.0);
                }
                for (line, (from, to)) in (*start..).zip(lines) {
                    records.push(0, line, None, None, &file.bytes[*from..*to]);
                }
            }
            batch.records.insert(name.clone(), records);
        }
        batch
    }

    /// The lines of a logged epoch again; an error when the files no longer hold them (they
    /// were replaced by shorter ones since the checkpoint was written).
    fn replay(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> Result<InputBatch> {
        for (name, partitions) in ranges {
            let Some(file) = self.sources.get(name) else { continue };
            for (start, end) in partitions.values() {
                if *start < 0 || start > end || *end as usize > file.lines.len() {
                    return Err(Error::Source {
                        source_name: name.clone(),
                        location: file.location.clone(),
                        message: format!(
                            "the checkpoint logged lines {start}..{end} but the file has {} lines: it changed since; \
                             `quickchat-etl checkpoints <pipeline> --reset` starts over",
                            file.lines.len()
                        ),
                        retryable: false,
                    });
                }
            }
        }
        Ok(self.read(ranges))
    }

    fn exhausted(&self, positions: &Positions) -> bool {
        self.sources
            .iter()
            .all(|(name, file)| Self::position(positions, name) >= file.lines.len() as i64)
    }

    fn idle(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> BTreeMap<String, BTreeMap<i32, bool>> {
        ranges
            .iter()
            .filter_map(|(name, partitions)| {
                let file = self.sources.get(name)?;
                let idle = partitions
                    .iter()
                    .map(|(p, (_, end))| (*p, *end >= file.lines.len() as i64))
                    .collect();
                Some((name.clone(), idle))
            })
            .collect()
    }

    /// The topics read, for messages.
    pub fn topics(&self) -> Vec<String> {
        self.sources.values().map(|f| f.topic.clone()).collect()
    }
}

/// Events from the built-in generator, produced as wall-clock time passes.
pub struct GeneratorInput {
    sources: Vec<GeneratedSource>,
    started: Instant,
    /// Event time of event 0, milliseconds.
    pub start_ms: i64,
    duration: Option<Duration>,
    /// Event time passes this many times faster than wall-clock time.
    time_scale: f64,
}

struct GeneratedSource {
    name: String,
    generator: EventGenerator,
    rate: f64,
    protobuf: Option<prost_reflect::MessageDescriptor>,
}

impl GeneratorInput {
    /// A generator of `rate` events per second in all, shared by the sources by weight, for
    /// `duration` (or until stopped). `start_ms` is the event time of the first event: a
    /// restored run passes the original one.
    pub fn new(
        pipeline: &StreamPipeline,
        rate: f64,
        duration: Option<Duration>,
        start_ms: i64,
        seed: u64,
    ) -> Result<Self> {
        let mut kinds = Vec::new();
        for source in &pipeline.sources {
            let name = source.def.generator.as_deref().ok_or_else(|| {
                Error::config_in(
                    &pipeline.pipeline_path,
                    format!("sources.{}: no `generator` to use with --from-generator", source.name),
                )
            })?;
            kinds.push(EventKind::parse(name).map_err(|e| Error::config_in(&pipeline.pipeline_path, e))?);
        }
        let total_weight: f64 = kinds.iter().map(|k| k.weight()).sum();
        let mut sources = Vec::new();
        for (source, kind) in pipeline.sources.iter().zip(kinds) {
            let protobuf = match (&source.descriptor_set, &source.def.message) {
                (Some(set), Some(message)) => Some(
                    super::protobuf::ProtobufDecoder::new(set, message, source.value_schema.clone())
                        .map_err(|e| Error::config_in(&pipeline.pipeline_path, e))?
                        .message()
                        .clone(),
                ),
                _ => None,
            };
            sources.push(GeneratedSource {
                name: source.name.clone(),
                generator: EventGenerator::new(kind, seed, USERS),
                rate: (rate * kind.weight() / total_weight).max(0.001),
                protobuf,
            });
        }
        Ok(Self {
            sources,
            started: Instant::now(),
            start_ms,
            duration,
            time_scale: 1.0,
        })
    }

    /// Makes event time pass `scale` times faster than wall-clock time (benchmarks reach a
    /// steady state of windows and join buffers sooner).
    pub fn with_time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale.max(1e-6);
        self
    }

    fn resume(&mut self, start_ms: Option<i64>, positions: &Positions) {
        if let Some(start_ms) = start_ms {
            self.start_ms = start_ms;
        }
        let produced_for = self
            .sources
            .iter()
            .map(|s| positions.get(&s.name).and_then(|p| p.get(&0)).copied().unwrap_or(0) as f64 / s.rate)
            .fold(0.0, f64::max);
        self.started = Instant::now()
            .checked_sub(Duration::from_secs_f64(produced_for))
            .unwrap_or(self.started);
    }

    fn limit(&self, source: &GeneratedSource) -> Option<i64> {
        self.duration.map(|d| (d.as_secs_f64() * source.rate) as i64)
    }

    /// Events due by now, up to `max_records`; waits up to `interval` when none are due.
    async fn next(&self, positions: &Positions, max_records: usize, interval: Duration) -> Result<InputBatch> {
        let deadline = Instant::now() + interval;
        loop {
            let elapsed = self.started.elapsed().as_secs_f64();
            let mut ranges = BTreeMap::new();
            let mut idle = BTreeMap::new();
            let mut any = false;
            for source in &self.sources {
                let position = positions
                    .get(&source.name)
                    .and_then(|p| p.get(&0))
                    .copied()
                    .unwrap_or(0);
                let mut due = (elapsed * source.rate) as i64;
                if let Some(limit) = self.limit(source) {
                    due = due.min(limit);
                }
                let share = (max_records as f64 * source.rate / self.total_rate()).ceil().max(1.0) as i64;
                let end = due.min(position + share).max(position);
                any |= end > position;
                ranges.insert(source.name.clone(), BTreeMap::from([(0, (position, end))]));
                idle.insert(source.name.clone(), BTreeMap::from([(0, end >= due)]));
            }
            if any || Instant::now() >= deadline || self.exhausted(positions) {
                let mut batch = self.read(&ranges);
                batch.idle = idle;
                return Ok(batch);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn total_rate(&self) -> f64 {
        self.sources.iter().map(|s| s.rate).sum()
    }

    fn read(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> InputBatch {
        let mut batch = InputBatch {
            ranges: ranges.clone(),
            ..Default::default()
        };
        let mut json = Vec::with_capacity(256);
        for source in &self.sources {
            let Some((start, end)) = ranges.get(&source.name).and_then(|p| p.get(&0)).copied() else {
                continue;
            };
            let mut records = RawRecords::default();
            for n in start..end {
                let time =
                    source
                        .generator
                        .event_time(n as u64, self.start_ms, source.rate / self.time_scale, DISORDER_MS);
                json.clear();
                source.generator.write_json(n as u64, time, &mut json);
                match &source.protobuf {
                    Some(descriptor) => {
                        let encoded = json_to_protobuf(descriptor, &json);
                        records.push(0, n, Some(time), None, &encoded);
                    }
                    None => records.push(0, n, Some(time), None, &json),
                }
            }
            batch.records.insert(source.name.clone(), records);
        }
        batch
    }

    fn exhausted(&self, positions: &Positions) -> bool {
        self.sources.iter().all(|source| match self.limit(source) {
            Some(limit) => {
                positions
                    .get(&source.name)
                    .and_then(|p| p.get(&0))
                    .copied()
                    .unwrap_or(0)
                    >= limit
            }
            None => false,
        })
    }
}

/// A JSON event encoded as the Protobuf message of the same fields (the producer uses this too).
pub fn json_to_protobuf(descriptor: &prost_reflect::MessageDescriptor, json: &[u8]) -> Vec<u8> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    prost_reflect::DynamicMessage::deserialize(descriptor.clone(), &mut deserializer)
        .map(|message| message.encode_to_vec())
        .unwrap_or_else(|_| json.to_vec())
}
