//! Kafka clients, shared by the Kafka source, the Kafka sink and `produce`: the client settings
//! every client starts from, the error for brokers that do not answer, topic administration,
//! and broker requests retried per the process's [`crate::retry::policy`].

use std::sync::OnceLock;
use std::time::Duration;

use backon::BlockingRetryable;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaSecurity;
use crate::error::{Error, Result};

/// How long to wait for brokers before a request counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

static SECURITY: OnceLock<KafkaSecurity> = OnceLock::new();

/// Sets how the process's Kafka clients authenticate and encrypt; the first call wins
/// (commands call it at start, before any client exists).
pub fn configure(security: KafkaSecurity) {
    let _ = SECURITY.set(security);
}

/// Client settings shared by the consumer, the producer and the admin client: the brokers and
/// the process's [`KafkaSecurity`].
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "3");
    for (key, value) in SECURITY.get_or_init(KafkaSecurity::default).client_properties() {
        config.set(key, value);
    }
    config
}

/// The error for brokers that do not answer.
pub fn unreachable(brokers: &str, e: rdkafka::error::KafkaError) -> Error {
    Error::Source {
        source_name: "kafka".into(),
        location: brokers.to_string(),
        message: format!(
            "cannot reach Kafka at {brokers} ({e}). Set KAFKA_BOOTSTRAP_SERVERS (or `brokers` under [kafka] in the \
             pipeline file), or start a broker: `scripts/services.sh start` runs Apache Kafka on 127.0.0.1:9092, \
             `docker compose -f docker/compose.yml up -d kafka` on localhost:29092. Brokers that need TLS or SASL \
             take KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and \
             KAFKA_SSL_CA_LOCATION (now: {})",
            security_shown()
        ),
        retryable: true,
        cause: Some(Box::new(e)),
    }
}

/// The process's Kafka security for messages: protocol, mechanism and user, never the password.
fn security_shown() -> String {
    let security = SECURITY.get_or_init(KafkaSecurity::default);
    match (&security.protocol, &security.sasl_username) {
        (None, _) => "PLAINTEXT".to_string(),
        (Some(protocol), None) => protocol.clone(),
        (Some(protocol), Some(user)) => format!(
            "{protocol} {} as {user}",
            security.sasl_mechanism.as_deref().unwrap_or("PLAIN")
        ),
    }
}

/// Runs a blocking broker request again while it fails (a broker away, a leader moving), per
/// the process's retry policy, logging each retry with the brokers' address.
pub fn with_retries<T>(
    brokers: &str,
    what: &str,
    request: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> Result<T> {
    request
        .retry(crate::retry::policy().backoff())
        .sleep(std::thread::sleep)
        .notify(|e, wait| {
            crate::retry::count_retry(crate::retry::operation::KAFKA_REQUEST, "kafka");
            tracing::warn!(brokers = %brokers, error = %e, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying")
        })
        .call()
        .map_err(|e| unreachable(brokers, e))
}

/// A partition's first and end offsets (blocking).
///
/// librdkafka finds the partition's leader in its metadata cache, and a broker that is
/// restarting can answer a metadata request before it knows its partitions: the cache then
/// says "unknown partition" until its next periodic refresh, minutes later. So each failed try
/// asks for the topic's metadata afresh before the next one.
pub fn watermarks(consumer: &BaseConsumer, brokers: &str, topic: &str, partition: i32) -> Result<(i64, i64)> {
    with_retries(brokers, "reading end offsets", || {
        consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .inspect_err(|_| {
                let _ = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT);
            })
    })
}

/// The high watermark of `topic`/`partition` that the consumer's last fetch response carried:
/// no request is sent (`None` before the partition's first fetch). rdkafka does not wrap
/// librdkafka's `rd_kafka_get_watermark_offsets`, hence the call through its bindings.
pub fn cached_high_watermark(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer lives as long as `consumer`; librdkafka only reads the topic
    // name and writes the two offsets, all valid for the call.
    let status = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (status == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// The partitions of `topic` (blocking).
pub fn partitions(consumer: &BaseConsumer, brokers: &str, topic: &str) -> Result<Vec<i32>> {
    let metadata = with_retries(brokers, "reading topic metadata", || {
        consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)
    })?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Whether `topic` exists with at least one partition (blocking, one try).
pub fn topic_exists(consumer: &BaseConsumer, brokers: &str, topic: &str) -> Result<bool> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| unreachable(brokers, e))?;
    Ok(metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

/// Creates `topic` with `partitions` partitions unless it exists; returns whether it was created.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<bool> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers).create().map_err(|e| unreachable(brokers, e))?;
    let exists = tokio::task::block_in_place(|| {
        admin.inner().fetch_metadata(Some(topic), REQUEST_TIMEOUT).map(|m| {
            m.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
    })
    .map_err(|e| unreachable(brokers, e))?;
    if exists {
        return Ok(false);
    }
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&new_topic],
            &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)),
        )
        .await
        .map_err(|e| unreachable(brokers, e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Sink {
                    table: format!("kafka:{name} at {brokers}"),
                    message: format!("cannot create the topic: {code}"),
                    retryable: false,
                    cause: None,
                });
            }
        }
    }
    Ok(true)
}
