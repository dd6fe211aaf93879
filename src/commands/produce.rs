//! `quickchat-etl produce <stream>`: generated events to a Kafka topic at a steady rate, in
//! acknowledged batches, retrying with exponential backoff while the broker is away.

use std::time::{Duration, Instant};

use prost_reflect::DescriptorPool;

use backon::Retryable;

use crate::cli::{EventFormat, ProduceArgs};
use crate::config::Settings;
use crate::config::pipeline::GeneratorKind;
use crate::error::{Error, Result};
use crate::kafka::ensure_topic;
use crate::project::Project;
use crate::retry::RetryPolicy;
use crate::sinks::kafka::KafkaSink;
use crate::sources::generator::{DISORDER_MS, EventGenerator, USERS, json_to_protobuf};

/// The descriptor set and message chat events are encoded with.
const CHAT_DESCRIPTOR_SET: &str = "proto/chat.desc";
const CHAT_MESSAGE: &str = "quickchat.ChatMessage";
/// How long `produce` keeps retrying a broker that is away.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Sends events until the count or duration is reached, or Ctrl-C.
pub async fn run(settings: &Settings, args: ProduceArgs) -> Result<()> {
    let kind = GeneratorKind::parse(&args.stream).map_err(Error::Usage)?;
    let brokers = settings
        .kafka_brokers
        .clone()
        .ok_or_else(|| Error::config("no Kafka brokers: pass --brokers or set KAFKA_BOOTSTRAP_SERVERS"))?;
    if args.rate <= 0.0 || args.batch == 0 {
        return Err(Error::Usage("--rate and --batch must be positive".into()));
    }
    let topic = args.topic.clone().unwrap_or_else(|| kind.topic().to_string());
    let format = args.format.unwrap_or(match kind {
        GeneratorKind::Chat => EventFormat::Protobuf,
        _ => EventFormat::Json,
    });
    let protobuf = match (format, kind) {
        (EventFormat::Json, _) => None,
        (EventFormat::Protobuf, GeneratorKind::Chat) => {
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

    let retry = RetryPolicy::DEFAULT.giving_up_after(GIVE_UP_AFTER);
    (|| ensure_topic(&brokers, &topic, args.partitions))
        .retry(retry.backoff())
        .sleep(tokio::time::sleep)
        .when(Error::is_retryable)
        .notify(|e, wait| tracing::warn!(%brokers, retry_in_ms = wait.as_millis() as u64, "{e}"))
        .await?;
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
