//! Writing to Kafka: a producer that retries failed deliveries with the program's retry policy
//! while the broker is away, used by the Kafka sink of streaming outputs (one JSON object per
//! row, keyed by the sink's key columns) and by `quickchat-etl produce`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use backon::Retryable;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::SinkMetrics;
use super::rows::{key_texts, rows_as_json_lines};
use crate::error::{Error, Result};
use crate::kafka::{client_config, unreachable};
use crate::retry::RetryPolicy;

/// A record to send: optional key, value.
pub type KafkaRecord = (Option<Vec<u8>>, Vec<u8>);

/// A producer.
pub struct KafkaSink {
    producer: FutureProducer,
    brokers: String,
    retry: RetryPolicy,
}

impl KafkaSink {
    /// A producer for `brokers` (connections are made lazily, by librdkafka).
    pub fn connect(brokers: &str) -> Result<Self> {
        let producer: FutureProducer = client_config(brokers)
            .set("message.timeout.ms", "30000")
            .set("retry.backoff.ms", "100")
            .set("retry.backoff.max.ms", "5000")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "500000")
            .create()
            .map_err(|e| unreachable(brokers, e))?;
        Ok(Self {
            producer,
            brokers: brokers.to_string(),
            retry: crate::retry::policy(),
        })
    }

    /// How long a send keeps retrying before it fails (default two minutes).
    pub fn with_give_up_after(mut self, give_up_after: Duration) -> Self {
        self.retry = self.retry.giving_up_after(give_up_after);
        self
    }

    fn error(&self, topic: &str, message: String) -> Error {
        Error::Sink {
            table: format!("kafka:{topic} at {}", self.brokers),
            message,
            retryable: true,
            cause: None,
        }
    }

    /// Sends records to `topic` and waits until all are acknowledged. Failed deliveries (broker
    /// away, leader moving) are sent again per the retry policy; the send fails when records are
    /// still unacknowledged after [`KafkaSink::with_give_up_after`].
    pub async fn send(&self, topic: &str, records: Vec<KafkaRecord>) -> Result<u64> {
        let sent = records.len() as u64;
        let pending = Mutex::new(records);
        let attempt = || async {
            let batch = std::mem::take(&mut *pending.lock().expect("pending lock"));
            match self.deliver(topic, batch).await {
                Ok(()) => Ok(()),
                Err(Undelivered::Records(failed, reason)) => {
                    let count = failed.len();
                    *pending.lock().expect("pending lock") = failed;
                    Err(Undelivered::Records(
                        Vec::new(),
                        format!("{count} records unacknowledged: {reason}"),
                    ))
                }
                Err(fatal) => Err(fatal),
            }
        };
        attempt
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, Undelivered::Records(..)))
            .notify(|e, wait| {
                crate::retry::count_retry(crate::retry::operation::KAFKA_DELIVERY, "kafka");
                tracing::warn!(topic, brokers = %self.brokers, retry_in_ms = wait.as_millis() as u64,
                    "Kafka delivery failed ({e}); retrying")
            })
            .await
            .map_err(|e| match e {
                Undelivered::Records(_, reason) => self.error(
                    topic,
                    format!(
                        "{reason}, still after {}s of retries",
                        self.retry.give_up_after.as_secs()
                    ),
                ),
                Undelivered::Fatal(message) => self.error(topic, message),
            })?;
        Ok(sent)
    }

    /// Sends records once and waits for their acknowledgements; returns the ones that failed.
    async fn deliver(&self, topic: &str, records: Vec<KafkaRecord>) -> std::result::Result<(), Undelivered> {
        let mut deliveries = Vec::with_capacity(records.len());
        for (index, (key, value)) in records.iter().enumerate() {
            let mut record = FutureRecord::to(topic).payload(value.as_slice());
            if let Some(key) = key {
                record = record.key(key.as_slice());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push((index, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(Undelivered::Fatal(e.to_string())),
                }
            }
        }
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for (index, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    last_error = e.to_string();
                    failed.push(index);
                }
                Err(_) => {
                    last_error = "the producer was closed".into();
                    failed.push(index);
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        let mut keep = failed.into_iter().peekable();
        let failed: Vec<KafkaRecord> = records
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.next_if_eq(i).is_some())
            .map(|(_, record)| record)
            .collect();
        Err(Undelivered::Records(failed, last_error))
    }

    /// Sends rows as JSON objects (timestamps as ISO-8601), keyed by the `key` columns' values
    /// joined with `|`.
    pub async fn send_rows(&self, topic: &str, key: &[String], rows: &[RecordBatch]) -> Result<SinkMetrics> {
        let started = Instant::now();
        let mut records = Vec::new();
        for batch in rows {
            let json = rows_as_json_lines(batch).map_err(|e| self.error(topic, e.to_string()))?;
            let keys = if key.is_empty() {
                None
            } else {
                Some(key_texts(batch, key).map_err(|e| self.error(topic, e.to_string()))?)
            };
            for (row, line) in json.into_iter().enumerate() {
                records.push((keys.as_ref().map(|k| k[row].clone().into_bytes()), line.into_bytes()));
            }
        }
        let rows = self.send(topic, records).await?;
        Ok(SinkMetrics {
            rows,
            elapsed: started.elapsed(),
            ..Default::default()
        })
    }

    /// Waits until everything queued is delivered.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer.flush(timeout).map_err(|e| self.error("*", e.to_string()))
    }
}

/// Why a delivery attempt did not complete.
#[derive(Debug)]
enum Undelivered {
    /// These records were not acknowledged (retryable), with the last error.
    Records(Vec<KafkaRecord>, String),
    /// The producer refused the records outright.
    Fatal(String),
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undelivered::Records(_, reason) | Undelivered::Fatal(reason) => f.write_str(reason),
        }
    }
}
