//! `quickchat-etl bench`: the figures the README quotes, measured on this machine for
//! `clickstream-analytics` — events/s, micro-batch latency p50/p99 and peak memory from files
//! and from Kafka (beside a bare rdkafka consumer reading the same topics), freshness (event
//! produced to MySQL row updated) in update mode, and state rows and memory over a longer run.
//! Each part starts from an empty lake under the system's temporary folder.

mod batch;
mod commits;
mod mongodb;
mod sinks;
mod soak;
mod ui;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::catalog::Lake;
use crate::cli::{BenchArgs, BenchPart};
use crate::config::pipeline::SinkDef;
use crate::config::stream_pipeline::StreamPipeline;
use crate::config::{LakeLocation, Settings};
use crate::error::{Error, Result};
use crate::generate::streams::stream_files;
use crate::kafka::{client_config, ensure_topic, unreachable};
use crate::metrics::RunReport;
use crate::sinks::kafka::KafkaSink;
use crate::sources::Input;
use crate::sources::files::FileInput;
use crate::sources::generator::json_to_protobuf;
use crate::sources::kafka::KafkaInput;
use crate::stream::engine::{Engine, RunOptions, SinkSettings};

const PIPELINE: &str = "clickstream-analytics";
/// The pipeline whose source is Protobuf.
const CHAT_PIPELINE: &str = "chat-analytics";
/// Event time between generated events: 1,000 events per second of event time.
const EVENTS_PER_SECOND: f64 = 1_000.0;

/// One measured phase.
struct Row {
    phase: String,
    events: u64,
    seconds: f64,
    latency: Option<(Duration, Duration)>,
    peak_rss_mb: Option<u64>,
    note: String,
}

/// Runs the chosen parts and prints a table of figures.
pub async fn run(settings: &Settings, args: BenchArgs) -> Result<()> {
    let registry = super::load_registry(settings)?;
    let pipeline = registry
        .stream(PIPELINE)
        .ok_or_else(|| Error::config(format!("no pipeline {PIPELINE}")))?
        .clone();
    let wants = |part: BenchPart| args.only.is_empty() || args.only.contains(&part);
    let work = std::env::temp_dir().join(format!("quickchat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| Error::io(work.display().to_string(), e))?;
    let brokers = settings.brokers_for(&pipeline);
    let mut rows = Vec::new();

    let result = async {
        if wants(BenchPart::Files) {
            files(&pipeline, &work, args.events, &mut rows).await?;
        }
        match (&brokers, wants(BenchPart::Kafka)) {
            (Some(brokers), true) => kafka(&pipeline, &work, brokers, settings, args.kafka_events, &mut rows).await?,
            (None, true) => println!("kafka: skipped (no --brokers or KAFKA_BOOTSTRAP_SERVERS)"),
            _ => {}
        }
        match (&brokers, wants(BenchPart::Freshness)) {
            (Some(brokers), true) => freshness(&pipeline, &work, brokers, settings, &args, &mut rows).await?,
            (None, true) => println!("freshness: skipped (no --brokers or KAFKA_BOOTSTRAP_SERVERS)"),
            _ => {}
        }
        if wants(BenchPart::Soak) {
            soak::soak(&pipeline, &work, &args, &mut rows).await?;
        }
        if wants(BenchPart::Protobuf) {
            let chat = registry
                .stream(CHAT_PIPELINE)
                .ok_or_else(|| Error::config(format!("no pipeline {CHAT_PIPELINE}")))?;
            protobuf(chat, &work, args.events, &mut rows).await?;
        }
        if wants(BenchPart::Batch) {
            batch::batch(settings, &work, &args, &mut rows).await?;
        }
        if wants(BenchPart::Ui) {
            ui::ui(&pipeline, &work, args.events, &mut rows).await?;
        }
        if wants(BenchPart::Commits) {
            commits::commits(&pipeline, &work, &args, &mut rows).await?;
        }
        if wants(BenchPart::Mongodb) {
            mongodb::mongodb(settings, &work, &args, &mut rows).await?;
        }
        if wants(BenchPart::Sinks) {
            sinks::sinks(settings, &args, &mut rows).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result?;
    print_rows(&rows);
    Ok(())
}

/// Delta table properties keeping log entries and removed files' tombstones for `retention`
/// (`delta.logRetentionDuration`, `delta.deletedFileRetentionDuration`); none: the defaults.
fn log_retention_properties(retention: Option<Duration>) -> std::collections::BTreeMap<String, String> {
    let Some(retention) = retention else {
        return Default::default();
    };
    let interval = format!("interval {} seconds", retention.as_secs().max(1));
    ["delta.logRetentionDuration", "delta.deletedFileRetentionDuration"]
        .into_iter()
        .map(|key| (key.to_string(), interval.clone()))
        .collect()
}

fn lake_at(path: &std::path::Path) -> Result<Lake> {
    Ok(Lake::new(LakeLocation::parse(
        &path.display().to_string(),
        Default::default(),
    )?))
}

/// Peak resident memory since the last reset, in MiB.
fn peak_rss_mb() -> Option<u64> {
    crate::observe::process::peak_resident_bytes().map(|b| b >> 20)
}

/// Current resident memory in MiB.
fn rss_mb() -> Option<u64> {
    crate::observe::process::resident_bytes().map(|b| b >> 20)
}

/// Starts a new peak-memory measurement.
fn reset_peak_rss() {
    crate::observe::process::reset_peak();
}

fn row(phase: &str, report: &RunReport, note: String) -> Row {
    Row {
        phase: phase.to_string(),
        events: report.records,
        seconds: report.elapsed.as_secs_f64(),
        latency: Some((report.epoch_times.quantile(0.5), report.epoch_times.quantile(0.99))),
        peak_rss_mb: peak_rss_mb(),
        note,
    }
}

async fn run_engine(
    pipeline: &StreamPipeline,
    lake: &Lake,
    input: Input,
    sinks: SinkSettings,
    options: RunOptions,
) -> Result<RunReport> {
    let mut engine = Engine::open(pipeline, lake, input, sinks).await?;
    engine.run(&options).await
}

/// From files: the compute path alone, then with the Delta sinks.
async fn files(pipeline: &StreamPipeline, work: &std::path::Path, events: u64, rows: &mut Vec<Row>) -> Result<()> {
    println!("files: generating {events} events ...");
    let input_dir = write_event_files(pipeline, work, events)?;
    // The same without the conversions join, the costliest output on dense data (each click
    // matches many purchases of the same user and product in the next 10 minutes).
    let mut without_join = pipeline.clone();
    without_join.outputs.retain(|o| o.name != "conversions");
    let phases = [
        ("files: decode+dedup+4 windows", true, pipeline),
        ("files: same, without the join", true, &without_join),
        ("files: + Delta sinks", false, pipeline),
    ];
    for (n, (phase, without_sinks, pipeline)) in phases.into_iter().enumerate() {
        let lake = lake_at(&work.join(format!("lake-files-{n}")))?;
        let input = Input::Files(FileInput::open(pipeline, &lake, &input_dir.display().to_string()).await?);
        reset_peak_rss();
        let options = RunOptions {
            without_sinks,
            ..Default::default()
        };
        let report = run_engine(pipeline, &lake, input, SinkSettings::default(), options).await?;
        let note = if without_sinks {
            "target > 1,000,000 events/s (bronze copies skipped)".to_string()
        } else {
            "bronze (every event) and gold Delta tables".to_string()
        };
        println!(
            "{phase}: {:.0} events/s",
            report.records as f64 / report.elapsed.as_secs_f64()
        );
        print_stages(&report);
        rows.push(row(phase, &report, note));
    }
    Ok(())
}

/// `events` generated events for `pipeline`, as files in `<work>/input` (written once).
fn write_event_files(pipeline: &StreamPipeline, work: &std::path::Path, events: u64) -> Result<std::path::PathBuf> {
    let input_dir = work.join("input");
    std::fs::create_dir_all(&input_dir).map_err(|e| Error::io(input_dir.display().to_string(), e))?;
    for file in stream_files(pipeline, events, EVENTS_PER_SECOND, 1_704_067_200_000, 42)? {
        let path = input_dir.join(format!("{}.jsonl", file.topic));
        std::fs::write(&path, file.contents).map_err(|e| Error::io(path.display().to_string(), e))?;
    }
    Ok(input_dir)
}

/// The pipeline reading fresh topics named after `tag`.
fn on_topics(pipeline: &StreamPipeline, tag: &str, keep_mysql: bool) -> StreamPipeline {
    let mut copy = pipeline.clone();
    for source in &mut copy.sources {
        source.topic = format!("bench-{tag}-{}", source.topic);
    }
    if !keep_mysql {
        for output in &mut copy.outputs {
            output.sinks.retain(|s| !matches!(s, SinkDef::Mysql(_)));
        }
    }
    copy
}

async fn produce(pipeline: &StreamPipeline, brokers: &str, events: u64) -> Result<(u64, f64)> {
    let sink = KafkaSink::connect(brokers)?;
    let started = Instant::now();
    let mut sent = 0;
    for file in stream_files(pipeline, events, EVENTS_PER_SECOND, 1_704_067_200_000, 7)? {
        ensure_topic(brokers, &file.topic, 3).await?;
        let lines: Vec<(Option<Vec<u8>>, Vec<u8>)> = file
            .contents
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| (None, l.to_vec()))
            .collect();
        for chunk in lines.chunks(20_000) {
            sent += sink.send(&file.topic, chunk.to_vec()).await?;
        }
    }
    Ok((sent, started.elapsed().as_secs_f64()))
}

/// Reads every record of the pipeline's topics with a bare consumer; returns the seconds taken.
fn bare_consumer(pipeline: &StreamPipeline, brokers: &str, expected: u64) -> Result<f64> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", "quickchat-bench-bare")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "200000")
        .create()
        .map_err(|e| unreachable(brokers, e))?;
    let mut list = rdkafka::TopicPartitionList::new();
    for source in &pipeline.sources {
        for partition in 0..3 {
            list.add_partition_offset(&source.topic, partition, rdkafka::Offset::Beginning)
                .map_err(|e| unreachable(brokers, e))?;
        }
    }
    consumer.assign(&list).map_err(|e| unreachable(brokers, e))?;
    let started = Instant::now();
    let mut read = 0u64;
    let mut bytes = 0usize;
    while read < expected && started.elapsed() < Duration::from_secs(600) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            bytes += rdkafka::Message::payload(&message).map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed().as_secs_f64())
}

/// From Kafka: a bare consumer, then the pipeline without and with its sinks.
async fn kafka(
    pipeline: &StreamPipeline,
    work: &std::path::Path,
    brokers: &str,
    settings: &Settings,
    events: u64,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let tag = chrono::Utc::now().format("%H%M%S").to_string();
    let topics = on_topics(pipeline, &tag, settings.mysql_url.is_some());
    println!("kafka: producing {events} events to {brokers} ...");
    let (sent, seconds) = produce(&topics, brokers, events).await?;
    rows.push(Row {
        phase: "kafka: producer (acks=all)".into(),
        events: sent,
        seconds,
        latency: None,
        peak_rss_mb: None,
        note: String::new(),
    });
    reset_peak_rss();
    let bare = tokio::task::block_in_place(|| bare_consumer(&topics, brokers, sent))?;
    let bare_rate = sent as f64 / bare;
    rows.push(Row {
        phase: "kafka: bare rdkafka consumer".into(),
        events: sent,
        seconds: bare,
        latency: None,
        peak_rss_mb: peak_rss_mb(),
        note: "the broker's rate to one consumer".into(),
    });
    for (phase, without_sinks) in [("kafka: pipeline, no sinks", true), ("kafka: pipeline + sinks", false)] {
        let lake = lake_at(&work.join(format!("lake-kafka-{without_sinks}")))?;
        let (input, sinks) = kafka_run(&topics, brokers, settings)?;
        reset_peak_rss();
        let options = RunOptions {
            until_caught_up: true,
            without_sinks,
            ..Default::default()
        };
        let report = run_engine(&topics, &lake, input, sinks, options).await?;
        let rate = report.records as f64 / report.elapsed.as_secs_f64();
        let note = format!("{:.0}% of the bare consumer (target >= 80%)", 100.0 * rate / bare_rate);
        println!("{phase}: {rate:.0} events/s, {note}");
        print_stages(&report);
        rows.push(row(phase, &report, note));
    }
    Ok(())
}

/// A Kafka input of the bench's topics, and its sinks: MySQL where configured, no Kafka sink.
fn kafka_run(topics: &StreamPipeline, brokers: &str, settings: &Settings) -> Result<(Input, SinkSettings)> {
    let input = Input::Kafka(Box::new(tokio::task::block_in_place(|| {
        KafkaInput::connect(topics, brokers)
    })?));
    let sinks = SinkSettings {
        mysql_url: settings.mysql_url.clone(),
        brokers: None,
        ..Default::default()
    };
    Ok((input, sinks))
}

/// Events produced at a steady rate while the pipeline runs continuously in update mode: how
/// old each micro-batch's oldest event is when its sinks have committed.
async fn freshness(
    pipeline: &StreamPipeline,
    work: &std::path::Path,
    brokers: &str,
    settings: &Settings,
    args: &BenchArgs,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let tag = format!("f{}", chrono::Utc::now().format("%H%M%S"));
    let topics = on_topics(pipeline, &tag, settings.mysql_url.is_some());
    let target = if settings.mysql_url.is_some() {
        "MySQL row updated"
    } else {
        "Delta commit (MYSQL_URL not set)"
    };
    println!(
        "freshness: {} events/s for {}s, event produced -> {target} ...",
        args.freshness_rate,
        args.freshness_duration.as_secs()
    );
    for source in &topics.sources {
        ensure_topic(brokers, &source.topic, 3).await?;
    }
    let lake = lake_at(&work.join("lake-freshness"))?;
    let (input, sinks) = kafka_run(&topics, brokers, settings)?;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(steady_producer(
        topics.clone(),
        brokers.to_string(),
        args.freshness_rate,
        args.freshness_duration,
        stop.clone(),
    ));
    let options = RunOptions {
        stop,
        ..Default::default()
    };
    reset_peak_rss();
    let report = run_engine(&topics, &lake, input, sinks, options).await?;
    producer.await.map_err(|e| Error::Internal(e.to_string()))??;
    let (p50, p99) = (report.freshness.quantile(0.5), report.freshness.quantile(0.99));
    println!("freshness: p50 {} ms, p99 {} ms", p50.as_millis(), p99.as_millis());
    rows.push(Row {
        phase: "kafka: freshness, update mode".into(),
        events: report.records,
        seconds: report.elapsed.as_secs_f64(),
        latency: Some((p50, p99)),
        peak_rss_mb: peak_rss_mb(),
        note: format!("event produced -> {target}; target p99 < 2 s"),
    });
    Ok(())
}

/// Sends generated events at `rate` for `duration`, then asks the pipeline to stop once it has
/// had time to read them.
async fn steady_producer(
    pipeline: StreamPipeline,
    brokers: String,
    rate: f64,
    duration: Duration,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let sink = KafkaSink::connect(&brokers)?;
    let now = chrono::Utc::now().timestamp_millis();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut files: Vec<(String, Vec<Vec<u8>>)> = stream_files(&pipeline, total, rate, now, 11)?
        .into_iter()
        .map(|f| {
            let lines = f
                .contents
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            (f.topic, lines)
        })
        .collect();
    let started = Instant::now();
    let tick = Duration::from_millis(50);
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    while started.elapsed() < duration {
        let due = started.elapsed().as_secs_f64() / duration.as_secs_f64();
        for (topic, lines) in &mut files {
            let done = sent.entry(topic.clone()).or_default();
            let upto = ((lines.len() as f64 * due) as usize).min(lines.len());
            if upto > *done {
                let records = lines[*done..upto].iter().map(|l| (None, l.clone())).collect();
                sink.send(topic, records).await?;
                *done = upto;
            }
        }
        tokio::time::sleep(tick).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    Ok(())
}

/// `chat-analytics` over the same generated events held in memory as Protobuf records, then as
/// JSON records, without sinks: events/s of the whole pipeline with each decoder.
async fn protobuf(pipeline: &StreamPipeline, work: &std::path::Path, events: u64, rows: &mut Vec<Row>) -> Result<()> {
    let source = pipeline
        .sources
        .first()
        .ok_or_else(|| Error::config(format!("{} has no source", pipeline.name)))?;
    let descriptor = source
        .protobuf
        .clone()
        .ok_or_else(|| Error::config(format!("source {} of {} is not Protobuf", source.name, pipeline.name)))?;
    println!("protobuf: encoding {events} chat events ...");
    let file = stream_files(pipeline, events, EVENTS_PER_SECOND, 1_704_067_200_000, 42)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("no events generated".into()))?;
    let json: Vec<Vec<u8>> = file
        .contents
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let protobuf: Vec<Vec<u8>> = json.iter().map(|j| json_to_protobuf(&descriptor, j)).collect();
    let bytes = |records: &[Vec<u8>]| records.iter().map(Vec::len).sum::<usize>() / records.len().max(1);
    println!(
        "protobuf: {} bytes per Protobuf record, {} per JSON record",
        bytes(&protobuf),
        bytes(&json)
    );
    for (n, (phase, records, as_json)) in [
        ("protobuf: chat, Protobuf records", protobuf, false),
        ("protobuf: chat, same as JSON", json, true),
    ]
    .into_iter()
    .enumerate()
    {
        let lake = lake_at(&work.join(format!("lake-protobuf-{n}")))?;
        let records = BTreeMap::from([(source.name.clone(), records)]);
        let input = Input::Files(FileInput::in_memory(records, as_json));
        reset_peak_rss();
        let options = RunOptions {
            without_sinks: true,
            ..Default::default()
        };
        let report = run_engine(pipeline, &lake, input, SinkSettings::default(), options).await?;
        println!(
            "{phase}: {:.0} events/s",
            report.records as f64 / report.elapsed.as_secs_f64()
        );
        print_stages(&report);
        rows.push(row(phase, &report, "decode + dedup + 3 windows, no sinks".into()));
    }
    Ok(())
}

/// Where a run's time went: the stages taking the most, with their share of the run. Outputs
/// that do not read one another run side by side, so the shares can add up past 100 %.
fn print_stages(report: &RunReport) {
    let mut stages: Vec<(&String, &Duration)> = report.stage_times.iter().collect();
    stages.sort_by(|a, b| b.1.cmp(a.1));
    let total = report.elapsed.as_secs_f64().max(1e-9);
    let text: Vec<String> = stages
        .iter()
        .take(10)
        .map(|(stage, time)| format!("{stage} {:.0}%", 100.0 * time.as_secs_f64() / total))
        .collect();
    println!("  time: {}", text.join(", "));
}

fn print_rows(rows: &[Row]) {
    println!(
        "\n{:<34} {:>10} {:>8} {:>11} {:>9} {:>9} {:>8}  note",
        "phase", "events", "seconds", "events/s", "p50 ms", "p99 ms", "peak MiB"
    );
    for row in rows {
        let (p50, p99) = row
            .latency
            .map(|(a, b)| (a.as_millis().to_string(), b.as_millis().to_string()))
            .unwrap_or_default();
        println!(
            "{:<34} {:>10} {:>8.2} {:>11.0} {:>9} {:>9} {:>8}  {}",
            row.phase,
            row.events,
            row.seconds,
            row.events as f64 / row.seconds.max(1e-9),
            p50,
            p99,
            row.peak_rss_mb.map(|m| m.to_string()).unwrap_or_default(),
            row.note
        );
    }
    println!("p50/p99: micro-batch wall time (freshness row: event age when its micro-batch committed)");
}
