//! The Kafka input: every partition of every source topic assigned explicitly, read from the
//! positions the pipeline's checkpoint holds (not from the consumer group, which only receives
//! commits for lag monitoring), and able to read an epoch's offset ranges again exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::positions::{EpochRange, InputBatch, Positions, RawRecords};
use crate::config::stream::{BatchLimit, StartingOffsets};
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::{Error, Result};
use crate::kafka::{cached_high_watermark, client_config, topic_exists, unreachable, watermarks};

/// How far before a position the consumer is pointed, skipping the records it does not need.
/// Some Kafka-protocol brokers (tansu 0.6) answer a fetch from inside a record batch with the
/// batch after it,
/// which would silently skip the rest of that batch; starting earlier than any producer batch
/// is long (librdkafka sends at most 10,000 records per batch) avoids that. With
/// `auto.offset.reset = earliest`, a rewind below the log start starts at the log start.
const REWIND: i64 = 10_000;
/// A poll this long without a record means everything the broker had was read.
const DRAINED_AFTER: Duration = Duration::from_millis(200);
/// How long a replay may wait for records it read before.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the source topics of a pipeline.
///
/// While the engine processes a micro-batch, the next one is already being read: when a batch
/// ends full (not on a quiet poll), a reader thread goes on from where it ended, and the next
/// call takes its records if it asks for the same positions (otherwise — a replay, a restart —
/// they are dropped and read again from the positions asked for). Reading and processing thus
/// overlap, while the records of an epoch are still only those its offset log names.
pub struct KafkaInput {
    /// Shared with the reader (metadata, end offsets and commits are safe from any thread).
    consumer: Arc<BaseConsumer>,
    brokers: String,
    /// source name → topic.
    topics: BTreeMap<String, String>,
    starting: StartingOffsets,
    /// The reader, unless a read ahead holds it.
    reader: Option<Reader>,
    /// The read ahead in flight.
    ahead: Option<ReadAhead>,
    /// End offsets when the run started (for `--until-caught-up`).
    ends_at_start: Option<Positions>,
    /// Whether the last batch ended on a quiet poll: nothing more was there to read.
    drained: bool,
}

/// Polls the consumer: owned by one thread at a time.
struct Reader {
    consumer: Arc<BaseConsumer>,
    brokers: String,
    /// topic → source name.
    sources: HashMap<String, String>,
    /// source name → topic.
    topics: BTreeMap<String, String>,
    /// Where the consumer reads next, when it was last assigned by us.
    reading_from: Option<Positions>,
    /// topic → partition → offset assigned from: records before it are skipped.
    skip_below: HashMap<String, HashMap<i32, i64>>,
    /// Since when every fetch failed (the brokers away), with how many failures.
    failing_since: Option<(Instant, u32)>,
}

/// How long a fetch error waits for the brokers to answer a metadata request (answered: the
/// error passed; not: the brokers are away).
const BROKER_CHECK: Duration = Duration::from_secs(1);

/// A micro-batch and whether reading it ended on a quiet poll.
type Read = Result<(InputBatch, bool)>;

/// The next micro-batch, read on its own thread.
struct ReadAhead {
    from: Positions,
    limit: BatchLimit,
    thread: std::thread::JoinHandle<(Reader, Read)>,
}

impl KafkaInput {
    /// Connects and checks that every source topic exists.
    pub fn connect(pipeline: &StreamPipeline, brokers: &str) -> Result<Self> {
        let group = pipeline
            .kafka
            .group
            .clone()
            .unwrap_or_else(|| format!("quickchat-{}", pipeline.name));
        let consumer: BaseConsumer = client_config(brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            // No transactions are involved; the high watermark is the end to reach.
            .set("isolation.level", "read_uncommitted")
            .set("fetch.wait.max.ms", "100")
            .set("queued.min.messages", "200000")
            .create()
            .map_err(|e| unreachable(brokers, e))?;
        let mut topics = BTreeMap::new();
        for source in &pipeline.sources {
            if !topic_exists(&consumer, brokers, &source.topic)? {
                return Err(Error::Source {
                    source_name: source.name.clone(),
                    location: format!("{brokers} topic {}", source.topic),
                    message: format!(
                        "topic `{}` does not exist; create it (e.g. `kafka-topics.sh --bootstrap-server {brokers} \
                         --create --topic {} --partitions 3`)",
                        source.topic, source.topic
                    ),
                    retryable: false,
                    cause: None,
                });
            }
            topics.insert(source.name.clone(), source.topic.clone());
        }
        let consumer = Arc::new(consumer);
        let reader = Reader {
            consumer: consumer.clone(),
            brokers: brokers.to_string(),
            sources: topics
                .iter()
                .map(|(source, topic)| (topic.clone(), source.clone()))
                .collect(),
            topics: topics.clone(),
            reading_from: None,
            skip_below: HashMap::new(),
            failing_since: None,
        };
        Ok(Self {
            consumer,
            brokers: brokers.to_string(),
            topics,
            starting: pipeline.kafka.starting_offsets,
            reader: Some(reader),
            ahead: None,
            ends_at_start: None,
            drained: false,
        })
    }

    /// Every partition of every source topic, at the offset `pick` chooses from its first and
    /// end offsets.
    fn offsets(&self, pick: impl Fn((i64, i64)) -> i64) -> Result<Positions> {
        let mut positions = Positions::new();
        for (source, topic) in &self.topics {
            let entry = positions.entry(source.clone()).or_default();
            for partition in crate::kafka::partitions(&self.consumer, &self.brokers, topic)? {
                let first_and_end =
                    tokio::task::block_in_place(|| watermarks(&self.consumer, &self.brokers, topic, partition))?;
                entry.insert(partition, pick(first_and_end));
            }
        }
        Ok(positions)
    }

    /// Every partition's first offset to read, per `starting_offsets`.
    pub async fn start_positions(&mut self) -> Result<Positions> {
        let latest = self.starting == StartingOffsets::Latest;
        self.offsets(|(first, end)| if latest { end } else { first })
    }

    /// Takes the reader back, waiting for a read ahead (its records are dropped).
    fn reclaim(&mut self) -> Reader {
        if let Some(ahead) = self.ahead.take() {
            let (reader, _) = tokio::task::block_in_place(|| ahead.thread.join()).expect("the Kafka reader panicked");
            return reader;
        }
        self.reader.take().expect("the reader is here when nothing reads ahead")
    }

    /// Up to `limit` from `positions` on, waiting at most `interval`.
    pub async fn next(&mut self, positions: &Positions, limit: BatchLimit, interval: Duration) -> Result<InputBatch> {
        let ahead_matches = self
            .ahead
            .as_ref()
            .is_some_and(|a| a.from == *positions && a.limit == limit);
        let (reader, read) = if ahead_matches {
            let ahead = self.ahead.take().expect("checked above");
            tokio::task::block_in_place(|| ahead.thread.join()).expect("the Kafka reader panicked")
        } else {
            let mut reader = self.reclaim();
            let read = tokio::task::block_in_place(|| reader.read(positions, limit, interval));
            (reader, read)
        };
        let (batch, drained) = match read {
            Ok(read) => read,
            Err(e) => {
                self.reader = Some(reader);
                return Err(e);
            }
        };
        self.drained = drained;
        if drained {
            // Nothing more was there: the next read starts when it is asked for, so records
            // that arrive meanwhile are read with the least delay.
            self.reader = Some(reader);
        } else {
            let from = end_positions(positions, &batch);
            let mut reader = reader;
            let start = from.clone();
            let thread = std::thread::Builder::new()
                .name("kafka-reader".into())
                .spawn(move || {
                    let read = reader.read(&start, limit, interval);
                    (reader, read)
                })
                .map_err(|e| Error::io("a Kafka reader thread", e))?;
            self.ahead = Some(ReadAhead { from, limit, thread });
        }
        Ok(batch)
    }

    /// Exactly the records of an epoch.
    pub async fn replay(&mut self, range: &EpochRange) -> Result<InputBatch> {
        let mut reader = self.reclaim();
        let replayed = tokio::task::block_in_place(|| reader.replay(range));
        self.reader = Some(reader);
        replayed
    }

    /// Whether `positions` reached the end offsets seen at the first call and the last batch
    /// found nothing more to read (some brokers report end offsets that lag behind the records
    /// they serve, so the offsets alone are not trusted).
    pub async fn caught_up(&mut self, positions: &Positions) -> Result<bool> {
        if !self.drained {
            return Ok(false);
        }
        if self.ends_at_start.is_none() {
            self.ends_at_start = Some(self.offsets(|(_, end)| end)?);
        }
        let ends = self.ends_at_start.as_ref().expect("set above");
        Ok(ends.iter().all(|(source, partitions)| {
            partitions.iter().all(|(partition, end)| {
                positions
                    .get(source)
                    .and_then(|p| p.get(partition))
                    .is_some_and(|at| at >= end)
            })
        }))
    }

    /// Commits positions to the consumer group (for lag monitoring with Kafka tools).
    pub fn commit_offsets(&mut self, positions: &Positions) {
        let mut list = TopicPartitionList::new();
        for (source, partitions) in positions {
            for (partition, offset) in partitions {
                let _ = list.add_partition_offset(&self.topics[source], *partition, Offset::Offset(*offset));
            }
        }
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::debug!(error = %e, "consumer group commit failed (only lag monitoring is affected)");
        }
    }
}

impl Reader {
    /// Points the consumer at `positions`, unless it already reads from there.
    fn assign(&mut self, positions: &Positions) -> Result<()> {
        if self.reading_from.as_ref() == Some(positions) {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        self.skip_below.clear();
        for (source, partitions) in positions {
            let topic = &self.topics[source];
            for (partition, offset) in partitions {
                let from = (*offset - REWIND).max(0);
                list.add_partition_offset(topic, *partition, Offset::Offset(from))
                    .map_err(|e| unreachable(&self.brokers, e))?;
                self.skip_below
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, *offset);
            }
        }
        self.consumer.assign(&list).map_err(|e| unreachable(&self.brokers, e))?;
        self.reading_from = Some(positions.clone());
        Ok(())
    }

    /// Whether a record comes before the position it was assigned from (read because of the
    /// rewind).
    fn before_start(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.skip_below
            .get(topic)
            .and_then(|p| p.get(&partition))
            .is_some_and(|start| offset < *start)
    }

    /// Up to `limit` from `positions` on, waiting at most `interval` (blocking).
    fn read(&mut self, positions: &Positions, limit: BatchLimit, interval: Duration) -> Read {
        self.assign(positions)?;
        let deadline = Instant::now() + interval;
        let mut batch = empty_batch(positions);
        for source in self.topics.keys() {
            batch.records.insert(source.clone(), RawRecords::default());
        }
        let (mut count, mut bytes) = (0, 0);
        let mut drained = false;
        while count < limit.records && bytes < limit.bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wait = left.min(DRAINED_AFTER);
            match self.consumer.poll(wait) {
                Some(Ok(message)) => {
                    self.failing_since = None;
                    let Some(source) = self.sources.get(message.topic()) else {
                        continue;
                    };
                    let (partition, offset) = (message.partition(), message.offset());
                    if self.before_start(message.topic(), partition, offset) {
                        continue;
                    }
                    if let Some(range) = batch.ranges.get_mut(source).and_then(|p| p.get_mut(&partition)) {
                        range.1 = offset + 1;
                    }
                    let records = batch.records.get_mut(source).expect("every source has records");
                    bytes += message.payload_len();
                    records.push(
                        partition,
                        offset,
                        message.timestamp().to_millis(),
                        message.key(),
                        message.payload().unwrap_or_default(),
                    );
                    count += 1;
                }
                Some(Err(e)) => {
                    crate::retry::count_retry(crate::retry::operation::KAFKA_FETCH, "kafka");
                    // librdkafka reconnects with its own backoff; the run gives up once the
                    // brokers were away longer than the process's retries allow.
                    let topic = self.topics.values().next().map(String::as_str);
                    if self.consumer.fetch_metadata(topic, BROKER_CHECK).is_ok() {
                        // The brokers answer: a passing error, not an outage.
                        self.failing_since = None;
                        tracing::warn!(error = %e, brokers = %self.brokers, "Kafka fetch error; retrying");
                        continue;
                    }
                    let (since, failures) = self.failing_since.get_or_insert((Instant::now(), 0));
                    *failures += 1;
                    let bound = crate::retry::policy().give_up_after;
                    tracing::warn!(error = %e, brokers = %self.brokers, failing_for_s = since.elapsed().as_secs(),
                        "Kafka fetch error; retrying");
                    if since.elapsed() > bound {
                        return Err(Error::GaveUp {
                            what: format!("reading from Kafka at {}", self.brokers),
                            tries: *failures,
                            seconds: since.elapsed().as_secs(),
                            limit: humantime::format_duration(bound).to_string(),
                            cause: Box::new(unreachable(&self.brokers, e)),
                        });
                    }
                }
                None => {
                    drained = wait == DRAINED_AFTER;
                    break;
                }
            }
        }
        batch.records.retain(|_, records| !records.is_empty());
        self.reading_from = Some(end_positions(positions, &batch));
        // After a quiet poll every partition is read to its end (idle). Otherwise a partition
        // that gave records has more; the others are asked where their end is.
        for (source, partitions) in &batch.ranges {
            let topic = &self.topics[source];
            let (mut idle, mut latest) = (BTreeMap::new(), BTreeMap::new());
            for (partition, (start, end)) in partitions {
                // The high watermark the last fetch response carried (no request; unknown
                // before the first fetch of the partition).
                let cached = cached_high_watermark(&self.consumer, topic, *partition);
                let is_idle = if drained {
                    true
                } else if end > start {
                    false
                } else {
                    let (_, high) = watermarks(&self.consumer, &self.brokers, topic, *partition)?;
                    latest.insert(*partition, high.max(*end));
                    *end >= high
                };
                if let Some(high) = cached {
                    latest.entry(*partition).or_insert(high.max(*end));
                }
                idle.insert(*partition, is_idle);
            }
            batch.idle.insert(source.clone(), idle);
            batch.latest.insert(source.clone(), latest);
        }
        Ok((batch, drained))
    }

    /// Exactly the records of an epoch (blocking).
    fn replay(&mut self, range: &EpochRange) -> Result<InputBatch> {
        let starts: Positions = range
            .ranges
            .iter()
            .map(|(s, p)| (s.clone(), p.iter().map(|(part, (start, _))| (*part, *start)).collect()))
            .collect();
        self.reading_from = None;
        self.assign(&starts)?;
        let mut batch = InputBatch {
            ranges: range.ranges.clone(),
            ..Default::default()
        };
        // Partitions not read to the end of their range yet (offsets may have gaps: read until
        // an offset at or past the range's last one arrives).
        let mut unfinished: std::collections::HashSet<(String, i32)> = range
            .ranges
            .iter()
            .flat_map(|(source, p)| {
                p.iter()
                    .filter(|(_, (start, end))| end > start)
                    .map(move |(partition, _)| (source.clone(), *partition))
            })
            .collect();
        let deadline = Instant::now() + REPLAY_TIMEOUT;
        while !unfinished.is_empty() && Instant::now() < deadline {
            let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let Some(source) = self.sources.get(message.topic()) else {
                continue;
            };
            let Some((start, end)) = range
                .ranges
                .get(source)
                .and_then(|p| p.get(&message.partition()))
                .copied()
            else {
                continue;
            };
            if message.offset() >= end - 1 {
                unfinished.remove(&(source.clone(), message.partition()));
            }
            if message.offset() < start || message.offset() >= end {
                continue;
            }
            batch.records.entry(source.clone()).or_default().push(
                message.partition(),
                message.offset(),
                message.timestamp().to_millis(),
                message.key(),
                message.payload().unwrap_or_default(),
            );
        }
        self.reading_from = None;
        if !unfinished.is_empty() {
            let missing: Vec<String> = unfinished.iter().map(|(s, p)| format!("{s}/{p}")).collect();
            return Err(Error::Source {
                source_name: "kafka".into(),
                location: self.brokers.clone(),
                message: format!(
                    "cannot replay epoch {}: records of {} are no longer in Kafka (retention?); \
                     `quickchat-etl checkpoints <pipeline> --reset` starts over",
                    range.epoch,
                    missing.join(", ")
                ),
                retryable: false,
                cause: None,
            });
        }
        Ok(batch)
    }
}

fn empty_batch(positions: &Positions) -> InputBatch {
    let ranges = positions
        .iter()
        .map(|(s, p)| (s.clone(), p.iter().map(|(part, at)| (*part, (*at, *at))).collect()))
        .collect();
    InputBatch {
        ranges,
        ..Default::default()
    }
}

fn end_positions(positions: &Positions, batch: &InputBatch) -> Positions {
    let mut after = positions.clone();
    for (source, partitions) in &batch.ranges {
        for (partition, (_, end)) in partitions {
            after.entry(source.clone()).or_default().insert(*partition, *end);
        }
    }
    after
}
