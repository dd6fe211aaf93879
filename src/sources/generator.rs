//! The built-in event generator, a source of its own (`--from-generator`) and what `produce`
//! and `generate --stream` write: chat messages, clickstream events, transactions and user-item
//! interactions, shaped like the events of the Spark projects being replaced.
//!
//! Event `n` of a stream depends only on the seed and `n` (and the event time it is given), so
//! a micro-batch replayed after a restart regenerates exactly the same events. A pipeline's
//! sources share its event rate by weight ([`shares`]): clickstream and transactions come 80/20,
//! as in the Spark generator.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::DateTime;
use prost::Message;

use super::positions::{InputBatch, Positions, RawRecords};
use crate::config::pipeline::GeneratorKind;
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::{Error, Result};

/// How far out of order generated events are: well inside every watermark delay, so no event
/// is late and every mode gives the same tables.
pub const DISORDER_MS: i64 = 20_000;

/// Distinct users in generated streams.
pub const USERS: u64 = 200;

/// A stream's share of a pipeline's event rate, relative to the others.
fn weight(kind: GeneratorKind) -> f64 {
    match kind {
        GeneratorKind::Transactions => 0.25,
        _ => 1.0,
    }
}

/// Each source's generator and share of the pipeline's events (the shares add up to 1), in
/// source order; a configuration error names a source without a `generator`.
pub fn shares(pipeline: &StreamPipeline) -> Result<Vec<(GeneratorKind, f64)>> {
    let mut kinds = Vec::new();
    for source in &pipeline.sources {
        let kind = source.generator.ok_or_else(|| {
            Error::config_in(
                &pipeline.pipeline_path,
                format!("sources.{}: no `generator` to generate events with", source.name),
            )
        })?;
        kinds.push(kind);
    }
    let total: f64 = kinds.iter().map(|k| weight(*k)).sum();
    Ok(kinds.into_iter().map(|k| (k, weight(k) / total)).collect())
}

/// A chat message, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Unique id.
    pub message_id: String,
    /// Channel it was sent to.
    pub channel_id: String,
    /// Sender.
    pub user_id: String,
    /// Text.
    pub content: String,
    /// text, image, ...
    pub message_type: &'static str,
    /// Sent, epoch milliseconds.
    pub sent_at_ms: i64,
    /// Delivered, epoch milliseconds.
    pub delivered_at_ms: i64,
}

/// Generates events of one stream.
#[derive(Debug, Clone)]
pub struct EventGenerator {
    kind: GeneratorKind,
    seed: u64,
    users: u64,
}

const PRODUCTS: &[(&str, &str, f64)] = &[
    ("prod_001", "electronics", 299.99),
    ("prod_002", "electronics", 499.99),
    ("prod_003", "clothing", 49.99),
    ("prod_004", "books", 19.99),
    ("prod_005", "home", 79.99),
    ("prod_006", "clothing", 24.99),
    ("prod_007", "books", 12.49),
    ("prod_008", "home", 149.0),
];
const ACTIONS: &[&str] = &["view", "view", "click", "add_to_cart"];
const REFERRERS: &[&str] = &["google.com", "facebook.com", "direct"];
const PAYMENTS: &[&str] = &["credit_card", "debit_card", "paypal"];
const INTERACTIONS: &[&str] = &["click", "view", "purchase", "like", "add_to_cart"];
const MESSAGE_TYPES: &[&str] = &[
    "text", "text", "text", "text", "text", "text", "image", "video", "audio", "file",
];
const WORDS: &[&str] = &[
    "hey", "ok", "see", "you", "soon", "lunch", "call", "me", "later", "thanks", "great", "idea", "café", "👍",
];

/// A small, fast random stream for one event: splitmix64 seeded from (seed, kind, n).
struct EventRng(u64);

impl EventRng {
    fn new(seed: u64, kind: GeneratorKind, n: u64) -> Self {
        EventRng(xxhash_rust::xxh3::xxh3_64_with_seed(
            &n.to_le_bytes(),
            seed ^ (kind as u64).wrapping_mul(0x9E37_79B9),
        ))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// An ISO-8601 UTC timestamp with milliseconds, written as a JSON string.
fn write_time(out: &mut Vec<u8>, millis: i64) {
    let time = DateTime::from_timestamp_millis(millis).unwrap_or_default();
    write!(out, "\"{}\"", time.format("%Y-%m-%dT%H:%M:%S%.3fZ")).expect("writing to memory");
}

impl EventGenerator {
    /// A generator of `kind` events from `seed`, with `users` distinct users.
    pub fn new(kind: GeneratorKind, seed: u64, users: u64) -> Self {
        Self {
            kind,
            seed,
            users: users.max(1),
        }
    }

    /// The stream.
    pub fn kind(&self) -> GeneratorKind {
        self.kind
    }

    /// Chat message `n`, sent at `time_ms`.
    pub fn chat(&self, n: u64, time_ms: i64) -> ChatMessage {
        let mut rng = EventRng::new(self.seed, self.kind, n);
        let words = 1 + rng.below(12);
        let content = (0..words).map(|_| *rng.pick(WORDS)).collect::<Vec<_>>().join(" ");
        // Delivery latency: mostly tens of milliseconds, a tail of seconds.
        let latency = match rng.below(100) {
            0 => 1000 + rng.below(4000),
            1..=9 => 200 + rng.below(800),
            _ => 20 + rng.below(180),
        } as i64;
        let message_type = *rng.pick::<&'static str>(MESSAGE_TYPES);
        ChatMessage {
            message_id: format!("msg_{:016x}", rng.next()),
            channel_id: format!("channel_{}", 1 + rng.below(20)),
            user_id: format!("user_{}", 1 + rng.below(self.users)),
            content,
            message_type,
            sent_at_ms: time_ms,
            delivered_at_ms: time_ms + latency,
        }
    }

    /// Writes event `n`, happening at `time_ms`, as one JSON object (no newline).
    pub fn write_json(&self, n: u64, time_ms: i64, out: &mut Vec<u8>) {
        let mut rng = EventRng::new(self.seed, self.kind, n);
        let user = 1 + rng.below(self.users);
        match self.kind {
            GeneratorKind::Chat => {
                let m = self.chat(n, time_ms);
                write!(
                    out,
                    "{{\"message_id\":\"{}\",\"channel_id\":\"{}\",\"user_id\":\"{}\",\"content\":",
                    m.message_id, m.channel_id, m.user_id
                )
                .expect("writing to memory");
                serde_json::to_writer(&mut *out, &m.content).expect("writing to memory");
                write!(out, ",\"message_type\":\"{}\",\"sent_at\":", m.message_type).expect("writing to memory");
                write_time(out, m.sent_at_ms);
                out.extend_from_slice(b",\"delivered_at\":");
                write_time(out, m.delivered_at_ms);
                out.push(b'}');
            }
            GeneratorKind::Clickstream => {
                let (product, category, _) = rng.pick(PRODUCTS);
                write!(
                    out,
                    "{{\"event_id\":\"evt_{:012x}\",\"user_id\":\"user_{user}\",\"session_id\":\"sess_user_{user}_{}\",\
                     \"product_id\":\"{product}\",\"category\":\"{category}\",\"action\":\"{}\",\"timestamp\":",
                    rng.next() & 0xffff_ffff_ffff,
                    time_ms / 1_800_000,
                    rng.pick(ACTIONS)
                )
                .expect("writing to memory");
                write_time(out, time_ms);
                write!(
                    out,
                    ",\"page_url\":\"/product/{product}\",\"referrer\":\"{}\"}}",
                    rng.pick(REFERRERS)
                )
                .expect("writing to memory");
            }
            GeneratorKind::Transactions => {
                let (product, category, price) = rng.pick(PRODUCTS);
                let quantity = 1 + rng.below(3);
                write!(
                    out,
                    "{{\"transaction_id\":\"txn_{:012x}\",\"user_id\":\"user_{user}\",\"session_id\":\"sess_user_{user}_{}\",\
                     \"product_id\":\"{product}\",\"category\":\"{category}\",\"amount\":{:.2},\"quantity\":{quantity},\"timestamp\":",
                    rng.next() & 0xffff_ffff_ffff,
                    time_ms / 1_800_000,
                    price * quantity as f64
                )
                .expect("writing to memory");
                write_time(out, time_ms);
                write!(out, ",\"payment_method\":\"{}\"}}", rng.pick(PAYMENTS)).expect("writing to memory");
            }
            GeneratorKind::Interactions => {
                write!(
                    out,
                    "{{\"user_id\":\"user_{user}\",\"item_id\":\"item_{}\",\"interaction_type\":\"{}\",\"timestamp\":",
                    1 + rng.below(50),
                    rng.pick(INTERACTIONS)
                )
                .expect("writing to memory");
                write_time(out, time_ms);
                out.push(b'}');
            }
        }
    }

    /// The event time of event `n` in a stream of `rate` events per second starting at
    /// `start_ms`, a little out of order: up to `disorder_ms` earlier than its turn.
    pub fn event_time(&self, n: u64, start_ms: i64, rate: f64, disorder_ms: i64) -> i64 {
        let on_time = start_ms + (n as f64 * 1000.0 / rate) as i64;
        let mut rng = EventRng::new(self.seed ^ 0x5EED, self.kind, n);
        on_time - rng.below(disorder_ms.max(0) as u64 + 1) as i64
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
        let mut sources = Vec::new();
        for (source, (kind, share)) in pipeline.sources.iter().zip(shares(pipeline)?) {
            sources.push(GeneratedSource {
                name: source.name.clone(),
                generator: EventGenerator::new(kind, seed, USERS),
                rate: (rate * share).max(0.001),
                protobuf: source.protobuf.clone(),
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

    /// Where every source starts: its first event.
    pub fn start_positions(&self) -> Positions {
        super::from_the_start(self.sources.iter().map(|s| &s.name))
    }

    /// Continues a restored run: the original run's event times, from where it stopped.
    pub fn resume(&mut self, start_ms: Option<i64>, positions: &Positions) {
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
    pub async fn next(&self, positions: &Positions, max_records: usize, interval: Duration) -> Result<InputBatch> {
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

    /// Exactly the events of these ranges (a replay regenerates the same events).
    pub fn read(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> InputBatch {
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

    /// Whether a generator with a duration has produced everything.
    pub fn exhausted(&self, positions: &Positions) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json_and_the_same_for_the_same_seed_and_number() {
        for kind in [
            GeneratorKind::Chat,
            GeneratorKind::Clickstream,
            GeneratorKind::Transactions,
            GeneratorKind::Interactions,
        ] {
            let generator = EventGenerator::new(kind, 7, 100);
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            generator.write_json(42, 1_704_067_200_000, &mut a);
            generator.write_json(42, 1_704_067_200_000, &mut b);
            generator.write_json(43, 1_704_067_200_000, &mut c);
            assert_eq!(a, b);
            assert_ne!(a, c);
            let value: serde_json::Value = serde_json::from_slice(&a).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert!(value.as_object().unwrap().len() >= 4, "{value}");
        }
    }

    #[test]
    fn event_times_follow_the_rate_with_bounded_disorder() {
        let generator = EventGenerator::new(GeneratorKind::Clickstream, 1, 100);
        let times: Vec<i64> = (0..1000).map(|n| generator.event_time(n, 0, 100.0, 2000)).collect();
        assert!(
            times
                .iter()
                .enumerate()
                .all(|(n, t)| *t <= n as i64 * 10 && *t >= n as i64 * 10 - 2000)
        );
        assert!(times.windows(2).any(|w| w[1] < w[0]), "some events come out of order");
    }
}
