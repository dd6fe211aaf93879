//! The QuickChat sample data set: users with activity profiles (power, regular, casual,
//! fading, dormant), direct and group conversations, messages with a daily rhythm and delivery
//! latencies, and calls — exported as `mongo/messages.json`, `mongo/conversations.json`
//! (relaxed Extended JSON), `mongo/calls.json` (canonical Extended JSON) and
//! `mysql/users.csv` (MySQL `DATETIME` text, `\N` for NULL).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::mongo_json::{Doc, Mode, ObjectId};
use super::users::{User, make_users, write_users_csv};
use super::{Counts, DataSetFiles, DataSetSpec, pick};

struct Conversation {
    id: ObjectId,
    group_name: Option<String>,
    participants: Vec<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const GROUP_NAMES: &[&str] = &[
    "Weekend plans",
    "Book club",
    "Team standup",
    "Family",
    "Climbing crew",
    "Flatmates",
];
const WORDS: &[&str] = &[
    "hey", "hi", "ok", "sure", "see", "you", "tomorrow", "tonight", "lunch", "meeting", "call", "me", "later",
    "thanks", "great", "idea", "what", "about", "the", "report", "photos", "from", "trip", "sounds", "good", "running",
    "late", "on", "my", "way", "haha", "lol", "café", "déjà", "vu", "👍", "🎉", "did", "send", "it", "yes", "no",
    "maybe", "let's", "do", "this", "weekend", "happy", "birthday", "where", "are", "we", "meeting", "now",
];
const MESSAGE_TYPES: &[(&str, f64)] = &[
    ("text", 0.80),
    ("image", 0.07),
    ("audio", 0.05),
    ("video", 0.03),
    ("file", 0.03),
    ("location", 0.02),
];

/// Generates the whole data set.
pub fn generate(spec: &DataSetSpec) -> DataSetFiles {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let start = midnight(spec.start_date);
    let end = start + Duration::days(i64::from(spec.days));
    let users = make_users(&mut rng, spec, start, end);
    let conversations = make_conversations(&mut rng, &users, end);

    let mut membership: Vec<Vec<usize>> = vec![Vec::new(); users.len()];
    for (index, conversation) in conversations.iter().enumerate() {
        for participant in &conversation.participants {
            membership[(*participant - 1) as usize].push(index);
        }
    }

    let mut counts = Counts {
        users: users.len(),
        conversations: conversations.len(),
        ..Counts::default()
    };
    let messages = write_messages(&mut rng, spec, start, &users, &conversations, &membership, &mut counts);
    let calls = write_calls(&mut rng, spec, start, &users, &conversations, &membership, &mut counts);
    let files = vec![
        ("mongo/messages.json", messages),
        ("mongo/conversations.json", write_conversations(&conversations)),
        ("mongo/calls.json", calls),
        ("mysql/users.csv", write_users_csv(&users)),
    ];
    DataSetFiles { files, counts, users }
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson sample (Knuth), for the small rates used here.
fn poisson(rng: &mut ChaCha8Rng, rate: f64) -> u32 {
    if rate <= 0.0 {
        return 0;
    }
    let limit = (-rate).exp();
    let mut product: f64 = rng.random();
    let mut count = 0;
    while product > limit {
        product *= rng.random::<f64>();
        count += 1;
    }
    count
}

fn make_conversations(rng: &mut ChaCha8Rng, users: &[User], end: DateTime<Utc>) -> Vec<Conversation> {
    let mut conversations = Vec::new();
    let mut pairs = std::collections::BTreeSet::new();
    let n = users.len() as i64;
    if n < 2 {
        return conversations;
    }
    let mut add = |rng: &mut ChaCha8Rng, participants: Vec<i64>, group_name: Option<String>| {
        let joined = participants
            .iter()
            .map(|p| users[(*p - 1) as usize].created_at)
            .max()
            .expect("participants");
        let created_at = joined + Duration::seconds(rng.random_range(60..5 * 86_400));
        if created_at < end - Duration::hours(1) {
            let tail = rng.random::<u64>();
            conversations.push(Conversation {
                id: ObjectId::new(created_at, tail),
                group_name,
                participants,
                created_at,
                updated_at: created_at + Duration::seconds(rng.random_range(0..3600)),
            });
        }
    };
    for user in users {
        for _ in 0..3 {
            let other = rng.random_range(1..=n);
            let pair = (user.id.min(other), user.id.max(other));
            if other != user.id && pairs.insert(pair) {
                add(rng, vec![pair.0, pair.1], None);
            }
        }
    }
    for _ in 0..(n / 6).max(1) {
        let size = rng.random_range(3..=8usize).min(n as usize);
        let mut members: Vec<i64> = Vec::with_capacity(size);
        while members.len() < size {
            let candidate = rng.random_range(1..=n);
            if !members.contains(&candidate) {
                members.push(candidate);
            }
        }
        let name = pick(rng, GROUP_NAMES).to_string();
        add(rng, members, Some(name));
    }
    conversations.sort_by_key(|c| c.created_at);
    conversations
}

/// Seconds into a day for a user's message: around their preferred hour.
fn time_of_day(rng: &mut ChaCha8Rng, user: &User) -> i64 {
    let hour = (user.preferred_hour + (normal(rng) * 3.0).round() as i64).rem_euclid(24);
    hour * 3600 + rng.random_range(0..3600)
}

#[allow(clippy::too_many_arguments)]
fn write_messages(
    rng: &mut ChaCha8Rng,
    spec: &DataSetSpec,
    start: DateTime<Utc>,
    users: &[User],
    conversations: &[Conversation],
    membership: &[Vec<usize>],
    counts: &mut Counts,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last_in_conversation: Vec<Option<ObjectId>> = vec![None; conversations.len()];
    for day in 0..spec.days {
        let day_start = start + Duration::days(i64::from(day));
        let weekend = matches!(day_start.format("%u").to_string().as_str(), "6" | "7");
        let mut day_messages: Vec<(DateTime<Utc>, Vec<u8>)> = Vec::new();
        for user in users {
            let rate = user.activity.messages_per_day(day, spec.days) * if weekend { 0.7 } else { 1.0 };
            for _ in 0..poisson(rng, rate) {
                let sent_at = day_start
                    + Duration::seconds(time_of_day(rng, user))
                    + Duration::milliseconds(rng.random_range(0..1000));
                let open: Vec<usize> = membership[(user.id - 1) as usize]
                    .iter()
                    .copied()
                    .filter(|&c| conversations[c].created_at <= sent_at)
                    .collect();
                if open.is_empty() || user.created_at > sent_at {
                    continue;
                }
                let conversation = *pick(rng, &open);
                let id = ObjectId::new(sent_at, rng.random::<u64>());
                let line = message_line(
                    rng,
                    user,
                    sent_at,
                    &id,
                    conversation,
                    conversations,
                    &last_in_conversation,
                );
                last_in_conversation[conversation] = Some(id);
                day_messages.push((sent_at, line));
            }
        }
        // mongoexport writes in natural (insertion) order.
        day_messages.sort_by_key(|(sent_at, _)| *sent_at);
        let mut re_exported = Vec::new();
        for (_, line) in day_messages {
            counts.messages += 1;
            if rng.random::<f64>() < 0.0005 {
                // A line cut short by an interrupted export.
                out.extend_from_slice(&line[..line.len() / 2]);
                out.push(b'\n');
                continue;
            }
            if rng.random::<f64>() < 0.005 {
                re_exported.push(line.clone());
            }
            out.extend_from_slice(&line);
        }
        for line in re_exported {
            counts.messages += 1;
            out.extend_from_slice(&line);
        }
    }
    out
}

fn message_line(
    rng: &mut ChaCha8Rng,
    user: &User,
    sent_at: DateTime<Utc>,
    id: &ObjectId,
    conversation: usize,
    conversations: &[Conversation],
    last_in_conversation: &[Option<ObjectId>],
) -> Vec<u8> {
    let latency_ms = (4.6 + 0.9 * normal(rng)).exp().round() as i64;
    let delivered_at = match rng.random::<f64>() {
        x if x < 0.01 => None,
        // Clock skew between client and server: delivered "before" sent.
        x if x < 0.013 => Some(sent_at - Duration::milliseconds(rng.random_range(1000..5000))),
        _ => Some(sent_at + Duration::milliseconds(latency_ms)),
    };
    let read_at = delivered_at
        .filter(|_| rng.random::<f64>() < 0.7)
        .map(|d| d + Duration::seconds(rng.random_range(1..7200)));
    let message_type = {
        let mut x = rng.random::<f64>();
        MESSAGE_TYPES
            .iter()
            .find(|(_, p)| {
                x -= p;
                x < 0.0
            })
            .map_or("text", |(t, _)| t)
    };
    let words = rng.random_range(1..=25);
    let content: Vec<&str> = (0..words).map(|_| *pick(rng, WORDS)).collect();
    let reply_to = last_in_conversation[conversation].filter(|_| rng.random::<f64>() < 0.1);
    let mut line = Vec::with_capacity(320);
    let mut doc = Doc::begin(&mut line, Mode::Relaxed);
    doc.oid("_id", id)
        .oid("conversation_id", &conversations[conversation].id);
    match rng.random::<f64>() {
        // An exporter bug: a string where a number belongs.
        x if x < 0.0003 => doc.str("sender_id", "unknown"),
        // A sender whose account was deleted from MySQL.
        x if x < 0.0023 => doc.long("sender_id", 100_000 + user.id),
        _ => doc.long("sender_id", user.id),
    };
    doc.str("content", &content.join(" ")).str("message_type", message_type);
    // A document that lost its timestamp.
    if rng.random::<f64>() >= 0.0003 {
        doc.date("created_at", sent_at);
    }
    doc.date_or_null("delivered_at", delivered_at)
        .date_or_null("read_at", read_at)
        .bool("is_edited", rng.random::<f64>() < 0.03)
        .oid_or_null("reply_to", reply_to.as_ref())
        .end();
    line
}

#[allow(clippy::too_many_arguments)]
fn write_calls(
    rng: &mut ChaCha8Rng,
    spec: &DataSetSpec,
    start: DateTime<Utc>,
    users: &[User],
    conversations: &[Conversation],
    membership: &[Vec<usize>],
    counts: &mut Counts,
) -> Vec<u8> {
    let mut out = Vec::new();
    for day in 0..spec.days {
        let day_start = start + Duration::days(i64::from(day));
        let mut day_calls: Vec<(DateTime<Utc>, Vec<u8>)> = Vec::new();
        for user in users {
            for _ in 0..poisson(rng, user.activity.calls_per_day(day, spec.days)) {
                let started_at = day_start + Duration::seconds(time_of_day(rng, user));
                let open: Vec<usize> = membership[(user.id - 1) as usize]
                    .iter()
                    .copied()
                    .filter(|&c| conversations[c].created_at <= started_at)
                    .collect();
                if open.is_empty() || user.created_at > started_at {
                    continue;
                }
                let conversation = &conversations[*pick(rng, &open)];
                let (status, duration) = match rng.random::<f64>() {
                    x if x < 0.75 => ("completed", ((5.5 + 0.9 * normal(rng)).exp() as i32).clamp(5, 4 * 3600)),
                    x if x < 0.90 => ("missed", 0),
                    _ => ("declined", 0),
                };
                let ended_at = started_at + Duration::seconds(i64::from(duration.max(20)));
                let mut line = Vec::with_capacity(256);
                Doc::begin(&mut line, Mode::Canonical)
                    .oid("_id", &ObjectId::new(started_at, rng.random::<u64>()))
                    .oid("conversation_id", &conversation.id)
                    .long("caller_id", user.id)
                    .longs("participants", &conversation.participants)
                    .str("call_type", if rng.random::<f64>() < 0.6 { "audio" } else { "video" })
                    .str("status", status)
                    .date("started_at", started_at)
                    .date("ended_at", ended_at)
                    .int("duration_seconds", duration)
                    .end();
                day_calls.push((started_at, line));
            }
        }
        day_calls.sort_by_key(|(started_at, _)| *started_at);
        for (_, line) in day_calls {
            counts.calls += 1;
            if rng.random::<f64>() < 0.002 {
                out.extend_from_slice(&line[..line.len() / 3]);
                out.push(b'\n');
            } else {
                out.extend_from_slice(&line);
            }
        }
    }
    out
}

fn write_conversations(conversations: &[Conversation]) -> Vec<u8> {
    let mut out = Vec::new();
    for conversation in conversations {
        Doc::begin(&mut out, Mode::Relaxed)
            .oid("_id", &conversation.id)
            .str(
                "type",
                if conversation.group_name.is_some() {
                    "group"
                } else {
                    "direct"
                },
            )
            .str_or_null("name", conversation.group_name.as_deref())
            .longs("participants", &conversation.participants)
            .long("created_by", conversation.participants[0])
            .date("created_at", conversation.created_at)
            .date("updated_at", conversation.updated_at)
            .end();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> DataSetSpec {
        DataSetSpec {
            seed,
            users: 30,
            days: 5,
            start_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        }
    }

    #[test]
    fn the_same_seed_gives_identical_files_and_another_seed_does_not() {
        let a = generate(&spec(1));
        let b = generate(&spec(1));
        let c = generate(&spec(2));
        for ((name, x), (_, y)) in a.files.iter().zip(&b.files) {
            assert_eq!(x, y, "{name} differs between runs of the same seed");
        }
        assert_ne!(a.files[0].1, c.files[0].1);
        assert!(a.counts.messages > 100, "{}", a.counts);
        assert_eq!(a.counts.users, 30);
    }

    #[test]
    fn poisson_and_normal_have_the_right_means() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 20_000;
        let mean = (0..n).map(|_| f64::from(poisson(&mut rng, 4.0))).sum::<f64>() / f64::from(n);
        assert!((mean - 4.0).abs() < 0.1, "{mean}");
        let mean = (0..n).map(|_| normal(&mut rng)).sum::<f64>() / f64::from(n);
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
