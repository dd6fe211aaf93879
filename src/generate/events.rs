//! Event streams for the streaming pipelines: chat messages, clickstream events, transactions
//! and user-item interactions, shaped like the events of the Spark projects being replaced.
//!
//! Event `n` of a stream depends only on the seed and `n` (and the event time it is given), so
//! a micro-batch replayed after a restart regenerates exactly the same events.

use std::io::Write;

use chrono::DateTime;

/// The built-in event streams (the `generator` of a pipeline source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `chat-stream`: `message_id, channel_id, user_id, content, message_type, sent_at, delivered_at`.
    Chat,
    /// `clickstream`: `event_id, user_id, session_id, product_id, category, action, timestamp, page_url, referrer`.
    Clickstream,
    /// `transactions`: `transaction_id, user_id, session_id, product_id, category, amount, quantity, timestamp, payment_method`.
    Transactions,
    /// `interactions`: `user_id, item_id, interaction_type, timestamp`.
    Interactions,
}

impl EventKind {
    /// Parses a generator name from a pipeline file.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "chat" => Ok(EventKind::Chat),
            "clickstream" => Ok(EventKind::Clickstream),
            "transactions" => Ok(EventKind::Transactions),
            "interactions" => Ok(EventKind::Interactions),
            other => Err(format!(
                "unknown generator `{other}` (known: chat, clickstream, transactions, interactions)"
            )),
        }
    }

    /// The topic the shipped pipelines read this stream from.
    pub fn topic(self) -> &'static str {
        match self {
            EventKind::Chat => "chat-stream",
            EventKind::Clickstream => "clickstream",
            EventKind::Transactions => "transactions",
            EventKind::Interactions => "interactions",
        }
    }

    /// This stream's share of a pipeline's event rate, relative to the others (clickstream and
    /// transactions come 80/20, as in the Spark generator).
    pub fn weight(self) -> f64 {
        match self {
            EventKind::Transactions => 0.25,
            _ => 1.0,
        }
    }
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
    kind: EventKind,
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
    fn new(seed: u64, kind: EventKind, n: u64) -> Self {
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
    pub fn new(kind: EventKind, seed: u64, users: u64) -> Self {
        Self {
            kind,
            seed,
            users: users.max(1),
        }
    }

    /// The stream.
    pub fn kind(&self) -> EventKind {
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
            EventKind::Chat => {
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
            EventKind::Clickstream => {
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
            EventKind::Transactions => {
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
            EventKind::Interactions => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json_and_the_same_for_the_same_seed_and_number() {
        for kind in [
            EventKind::Chat,
            EventKind::Clickstream,
            EventKind::Transactions,
            EventKind::Interactions,
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
        let generator = EventGenerator::new(EventKind::Clickstream, 1, 100);
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
