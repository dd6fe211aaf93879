//! `quickchat-etl produce <stream>`: generated events to a Kafka topic at a steady rate, in
//! acknowledged batches, retrying with exponential backoff while the broker is away.

use std::time::{Duration, Instant};

use prost_reflect::DescriptorPool;

use crate::cli::{EventFormat, ProduceArgs};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::generate::events::{EventGenerator, EventKind};
use crate::generate::streams::{DISORDER_MS, USERS};
use crate::project::Project;
use crate::sinks::kafka::KafkaSink;
use crate::stream::input::json_to_protobuf;
use crate::stream::kafka::ensure_topic;

/// The descriptor set and message chat events are encoded with.
const CHAT_DESCRIPTOR_SET: &str = "proto/chat.desc";
const CHAT_MESSAGE: &str = "quickchat.ChatMessage";
/// How long `produce` keeps retrying a broker that is away.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Sends events until the count or duration is reached, or Ctrl-C.
pub async fn run(settings: &Settings, args: ProduceArgs) -> Result<()> {
    let kind = EventKind::parse(&args.stream).map_err(Error::Usage)?;
    let brokers = args
        .brokers
        .clone()
        .or(settings.kafka_bootstrap_servers.clone())
        .ok_or_else(|| Error::config("no Kafka brokers: pass --brokers or set KAFKA_BOOTSTRAP_SERVERS"))?;
    if args.rate <= 0.0 || args.batch == 0 {
        return Err(Error::Usage("--rate and --batch must be positive".into()));
    }
    let topic = args.topic.clone().unwrap_or_else(|| kind.topic().to_string());
    let format = args.format.unwrap_or(match kind {
        EventKind::Chat => EventFormat::Protobuf,
        _ => EventFormat::Json,
    });
    let protobuf = match (format, kind) {
        (EventFormat::Json, _) => None,
        (EventFormat::Protobuf, EventKind::Chat) => {
            let project = Project::new(settings.project.clone());
            let bytes = project.read_bytes(CHAT_DESCRIPTOR_SET)?;
            let pool = DescriptorPool::decode(bytes.as_slice())
                .map_err(|e| Error::config_in(CHAT_DESCRIPTOR_SET, e.to_string()))?;
            Some(
                pool.get_message_by_name(CHAT_MESSAGE)
                    .ok_or_else(|| Error::config_in(CHAT_DESCRIPTOR_SET, format!("no message {CHAT_MESSAGE}")))?,
            )
        }
        (EventFormat::Protobuf, _) => {
            return Err(Error::Usage(format!(
                "--format protobuf is for chat events only ({} events have no .proto)",
                args.stream
            )));
        }
    };
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64);

    with_backoff(&brokers, || ensure_topic(&brokers, &topic, args.partitions)).await?;
    let sink = KafkaSink::connect(&brokers)?.with_give_up_after(GIVE_UP_AFTER);
    let generator = EventGenerator::new(kind, seed, USERS);
    let start_ms = chrono::Utc::now().timestamp_millis();
    let limit = match (args.count, args.duration) {
        (Some(count), _) => Some(count),
        (None, Some(duration)) => Some((duration.as_secs_f64() * args.rate) as u64),
        (None, None) => None,
    };
    tracing::info!(stream = %args.stream, %topic, %brokers, rate = args.rate, batch = args.batch, seed,
        first = args.first, "producing");

    let started = Instant::now();
    let mut sent = 0u64;
    let interrupted = super::run::shutdown_signal();
    tokio::pin!(interrupted);
    let mut json = Vec::with_capacity(256);
    while limit.is_none_or(|limit| sent < limit) {
        let size = limit.map_or(args.batch as u64, |limit| (limit - sent).min(args.batch as u64));
        let mut records = Vec::with_capacity(size as usize);
        for i in 0..size {
            let offset = sent + i;
            let time = generator.event_time(offset, start_ms, args.rate, DISORDER_MS);
            json.clear();
            generator.write_json(args.first + offset, time, &mut json);
            let value = match &protobuf {
                Some(descriptor) => json_to_protobuf(descriptor, &json),
                None => json.clone(),
            };
            records.push((None, value));
        }
        tokio::select! {
            result = sink.send(&topic, records) => { sent += result?; }
            () = &mut interrupted => break,
        }
        // Keep to the rate: the next batch leaves when its first event is due.
        let due = Duration::from_secs_f64(sent as f64 / args.rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut interrupted => break,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "sent {sent} {} events to {topic} at {brokers} in {seconds:.1}s ({:.0}/s); seed {seed}, continue with --seed {seed} --first {}",
        args.stream,
        sent as f64 / seconds,
        args.first + sent
    );
    Ok(())
}

/// Retries `attempt` while the broker cannot be reached, waiting 0.5 s, 1 s, 2 s ... up to 10 s
/// between tries, for at most ten minutes.
async fn with_backoff<T, F, Fut>(brokers: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_retryable() && started.elapsed() < GIVE_UP_AFTER => {
                tracing::warn!(%brokers, retry_in_ms = wait.as_millis() as u64, "{e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}
