//! Writing to Kafka: a producer that retries with exponential backoff while the broker is away,
//! used by the Kafka sink of streaming outputs (one JSON object per row, keyed by the sink's key
//! columns) and by `quickchat-etl produce`.

use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::SinkMetrics;
use crate::error::{Error, Result};
use crate::stream::kafka::client_config;

/// How long one send keeps retrying before the write fails, unless set otherwise.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// First wait after a failed delivery; doubled after each failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A record to send: optional key, value.
pub type KafkaRecord = (Option<Vec<u8>>, Vec<u8>);

/// A producer.
pub struct KafkaSink {
    producer: FutureProducer,
    brokers: String,
    give_up_after: Duration,
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
            .map_err(|e| crate::stream::kafka::unreachable(brokers, e))?;
        Ok(Self {
            producer,
            brokers: brokers.to_string(),
            give_up_after: GIVE_UP_AFTER,
        })
    }

    /// How long a send keeps retrying before it fails (default two minutes).
    pub fn with_give_up_after(mut self, give_up_after: Duration) -> Self {
        self.give_up_after = give_up_after;
        self
    }

    fn error(&self, topic: &str, message: String) -> Error {
        Error::Sink {
            table: format!("kafka:{topic} at {}", self.brokers),
            message,
            retryable: true,
        }
    }

    /// Sends records to `topic` and waits until all are acknowledged. Failed deliveries (broker
    /// away, leader moving) are sent again after an exponentially growing wait; the send fails
    /// when records are still unacknowledged after [`KafkaSink::with_give_up_after`].
    pub async fn send(&self, topic: &str, records: Vec<KafkaRecord>) -> Result<u64> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut pending = records;
        let sent = pending.len() as u64;
        loop {
            let mut deliveries = Vec::with_capacity(pending.len());
            for (index, (key, value)) in pending.iter().enumerate() {
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
                        Err((e, _)) => return Err(self.error(topic, e.to_string())),
                    }
                }
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for (index, delivery) in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => {
                        last_error = Some(e.to_string());
                        failed.push(index);
                    }
                    Err(_) => {
                        last_error = Some("the producer was closed".into());
                        failed.push(index);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(sent);
            }
            let reason = last_error.unwrap_or_default();
            if started.elapsed() > self.give_up_after {
                return Err(self.error(
                    topic,
                    format!(
                        "{} records still unacknowledged after {}s: {reason}",
                        failed.len(),
                        self.give_up_after.as_secs()
                    ),
                ));
            }
            tracing::warn!(topic, brokers = %self.brokers, failed = failed.len(), retry_in_ms = backoff.as_millis() as u64,
                "Kafka delivery failed ({reason}); retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let mut keep = failed.into_iter().peekable();
            pending = pending
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.next_if_eq(i).is_some())
                .map(|(_, record)| record)
                .collect();
        }
    }

    /// Sends rows as JSON objects (timestamps as ISO-8601), keyed by the `key` columns' values
    /// joined with `|`.
    pub async fn send_rows(&self, topic: &str, key: &[String], rows: &[RecordBatch]) -> Result<SinkMetrics> {
        let started = Instant::now();
        let mut records = Vec::new();
        for batch in rows {
            let mut json = Vec::new();
            {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut json);
                writer.write(batch).map_err(|e| self.error(topic, e.to_string()))?;
                writer.finish().map_err(|e| self.error(topic, e.to_string()))?;
            }
            let keys = row_keys(batch, key).map_err(|e| self.error(topic, e))?;
            for (row, line) in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
                records.push((keys.as_ref().map(|k| k[row].clone().into_bytes()), line.to_vec()));
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

/// Each row's key: its `key` columns' values as text joined with `|`; `None` without key columns.
fn row_keys(batch: &RecordBatch, key: &[String]) -> std::result::Result<Option<Vec<String>>, String> {
    if key.is_empty() {
        return Ok(None);
    }
    let mut columns = Vec::new();
    for name in key {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| format!("key column `{name}` is not in the output"))?;
        columns.push(arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?);
    }
    Ok(Some(
        (0..batch.num_rows())
            .map(|row| {
                columns
                    .iter()
                    .map(|c| c.as_string::<i32>().value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect(),
    ))
}
