//! `bench --only soak`: the generator at a steady rate (event time 10x wall-clock time, so
//! windows, sessions and the join buffer reach their steady size early) for a long run. Ten
//! samples, each of the time since the one before: state rows, memory, the micro-batch time
//! spent in sinks (mean), elsewhere, and waiting for the state snapshot, the micro-batch p99,
//! the `_delta_log` entries of the lake and the size of its checkpoints. At the end, the sinks
//! whose time per micro-batch grew the most: what to look at when a long run slows down.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Row, lake_at, log_retention_properties, peak_rss_mb, rss_mb};
use crate::cli::BenchArgs;
use crate::config::pipeline::SinkDef;
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::Result;
use crate::metrics::{Latencies, RunReport};
use crate::sources::Input;
use crate::sources::generator::GeneratorInput;
use crate::stream::engine::{Engine, RunOptions, SinkSettings};

/// How many sinks the closing table shows.
const SINKS_SHOWN: usize = 6;

/// One sample: what the engine's cumulative report held at its end.
struct Sample {
    seconds: f64,
    state_rows: usize,
    rss_mb: u64,
    epochs: u64,
    /// Per stage: its time so far, in milliseconds.
    stage_ms: BTreeMap<String, f64>,
}

impl Sample {
    fn take(report: &RunReport, started: Instant) -> Self {
        Self {
            seconds: started.elapsed().as_secs_f64(),
            state_rows: report.state_rows,
            rss_mb: rss_mb().unwrap_or(0),
            epochs: report.epochs,
            stage_ms: report
                .stage_times
                .iter()
                .map(|(stage, time)| (stage.clone(), time.as_secs_f64() * 1000.0))
                .collect(),
        }
    }

    /// Mean milliseconds per micro-batch since `before` of the stages `which` picks.
    fn per_epoch(&self, before: &Sample, which: impl Fn(&str) -> bool) -> f64 {
        let epochs = self.epochs.saturating_sub(before.epochs).max(1) as f64;
        let spent: f64 = self
            .stage_ms
            .iter()
            .filter(|(stage, _)| which(stage))
            .map(|(stage, ms)| ms - before.stage_ms.get(stage).copied().unwrap_or(0.0))
            .sum();
        spent / epochs
    }
}

fn is_sink(stage: &str) -> bool {
    stage.starts_with("sink ")
}

/// The stages that are work (reading waits for the generator's rate).
fn is_other(stage: &str) -> bool {
    stage != "read" && !is_sink(stage)
}

pub(super) async fn soak(pipeline: &StreamPipeline, work: &Path, args: &BenchArgs, rows: &mut Vec<Row>) -> Result<()> {
    println!(
        "soak: {} events/s from the generator for {}s{} ...",
        args.soak_rate,
        args.soak.as_secs(),
        if args.soak_without_sinks { ", without sinks" } else { "" }
    );
    let pipeline = &with_log_retention(pipeline, args.soak_log_retention);
    let lake_path = work.join("lake-soak");
    let lake = lake_at(&lake_path)?;
    let generator = GeneratorInput::new(pipeline, args.soak_rate, None, chrono::Utc::now().timestamp_millis(), 5)?
        .with_time_scale(10.0);
    let mut engine = Engine::open(pipeline, &lake, Input::Generator(generator), SinkSettings::default()).await?;
    let sample_every = (args.soak / 10).max(Duration::from_secs(5));
    let started = Instant::now();
    println!(
        "{:>8} {:>12} {:>12} {:>8} {:>10} {:>10} {:>11} {:>10} {:>12} {:>13}",
        "seconds",
        "events",
        "state rows",
        "RSS MiB",
        "sinks ms",
        "other ms",
        "snapshot ms",
        "p99 ms",
        "_delta_log",
        "checkpoint MB"
    );
    let mut samples = vec![Sample::take(&RunReport::default(), started)];
    let mut latencies_before = Latencies::default();
    let mut last_report = RunReport::default();
    while started.elapsed() < args.soak {
        let stop = Arc::new(AtomicBool::new(false));
        let timer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(sample_every).await;
                stop.store(true, Ordering::SeqCst);
            })
        };
        let options = RunOptions {
            stop,
            without_sinks: args.soak_without_sinks,
            ..Default::default()
        };
        // The engine's report covers all its runs so far.
        let report = engine.run(&options).await?;
        timer.abort();
        let sample = Sample::take(&report, started);
        let before = samples.last().expect("the starting sample");
        let p99 = report.epoch_times.since(&latencies_before).quantile(0.99);
        println!(
            "{:>8.0} {:>12} {:>12} {:>8} {:>10.0} {:>10.0} {:>11.1} {:>10.0} {:>12} {:>13.1}",
            sample.seconds,
            report.records,
            sample.state_rows,
            sample.rss_mb,
            sample.per_epoch(before, is_sink),
            sample.per_epoch(before, is_other),
            sample.per_epoch(before, |stage| stage == "snapshot"),
            p99.as_secs_f64() * 1000.0,
            delta_log_entries(&lake_path),
            folder_bytes(&lake_path.join("_checkpoints")) as f64 / 1e6,
        );
        latencies_before = report.epoch_times.clone();
        samples.push(sample);
        last_report = report;
    }
    print_sink_growth(&samples);

    let measured = &samples[1..];
    let half = &measured[measured.len() / 2..];
    let spread = |values: Vec<u64>| {
        (
            values.iter().min().copied().unwrap_or(0),
            values.iter().max().copied().unwrap_or(0),
        )
    };
    let (state_min, state_max) = spread(half.iter().map(|s| s.state_rows as u64).collect());
    let (rss_min, rss_max) = spread(half.iter().map(|s| s.rss_mb).collect());
    rows.push(Row {
        phase: "generator: soak".into(),
        events: last_report.records,
        seconds: started.elapsed().as_secs_f64(),
        latency: Some((
            last_report.epoch_times.quantile(0.5),
            last_report.epoch_times.quantile(0.99),
        )),
        peak_rss_mb: peak_rss_mb(),
        note: format!("second half: state {state_min}..{state_max} rows, RSS {rss_min}..{rss_max} MiB"),
    });
    Ok(())
}

/// The pipeline with every Delta sink keeping its log and tombstones for `retention`.
fn with_log_retention(pipeline: &StreamPipeline, retention: Option<Duration>) -> StreamPipeline {
    let mut pipeline = pipeline.clone();
    let Some(retention) = retention else { return pipeline };
    for output in &mut pipeline.outputs {
        for sink in &mut output.sinks {
            if let SinkDef::Delta(def) = sink {
                def.table_properties.extend(log_retention_properties(Some(retention)));
            }
        }
    }
    println!(
        "soak: Delta log entries and tombstones kept {}",
        humantime::format_duration(retention)
    );
    pipeline
}

/// The sinks' milliseconds per micro-batch in the first, middle and last sample, the ones that
/// grew most first.
fn print_sink_growth(samples: &[Sample]) {
    if samples.len() < 3 {
        return;
    }
    let per_sample = |i: usize, stage: &str| samples[i].per_epoch(&samples[i - 1], |s| s == stage);
    let (first, middle, last) = (1, samples.len() / 2, samples.len() - 1);
    let mut sinks: Vec<(&String, [f64; 3])> = samples[last]
        .stage_ms
        .keys()
        .filter(|stage| is_sink(stage))
        .map(|stage| {
            (
                stage,
                [
                    per_sample(first, stage),
                    per_sample(middle, stage),
                    per_sample(last, stage),
                ],
            )
        })
        .collect();
    sinks.sort_by(|a, b| (b.1[2] - b.1[0]).total_cmp(&(a.1[2] - a.1[0])));
    println!(
        "sink ms per micro-batch at {:.0}s, {:.0}s and {:.0}s:",
        samples[first].seconds, samples[middle].seconds, samples[last].seconds
    );
    for (stage, [a, b, c]) in sinks.into_iter().take(SINKS_SHOWN) {
        println!("  {a:>7.1} {b:>7.1} {c:>7.1}  {}", stage.trim_start_matches("sink "));
    }
}

/// Files in every `_delta_log` folder under `lake` (checkpoints and commits).
fn delta_log_entries(lake: &Path) -> usize {
    fn walk(dir: &Path, count: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|name| name == "_delta_log") {
                *count += std::fs::read_dir(&path).map(|e| e.count()).unwrap_or(0);
            } else {
                walk(&path, count);
            }
        }
    }
    let mut count = 0;
    walk(lake, &mut count);
    count
}

/// Bytes of the files under `folder`, at any depth.
fn folder_bytes(folder: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
