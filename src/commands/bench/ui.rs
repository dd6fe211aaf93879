//! `bench --only ui`: what serving the live UI costs a stream. The same event files go through
//! the pipeline with its Delta sinks with the UI off, then on with a client fetching every
//! endpoint the live page reads (`/`, `/api/status`, `/api/progress`, `/api/latest/<output>`,
//! and `/metrics` as a Prometheus scrape would) every 500 ms, four times as often as the page
//! does — twice each, alternating, so that neither side gets the warmer machine. Micro-batches
//! of [`RECORDS_PER_MICRO_BATCH`] records, so that each run commits many of them while polled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Row, lake_at, reset_peak_rss, row, write_event_files};
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::Result;
use crate::observe::server;
use crate::observe::telemetry::Telemetry;
use crate::sources::Input;
use crate::sources::files::FileInput;
use crate::stream::engine::{Engine, RunOptions, SinkSettings};

/// How often the client polls: the page's default is every 2 s.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Records per micro-batch (the pipeline's own limit is 100,000).
const RECORDS_PER_MICRO_BATCH: usize = 500;

pub(super) async fn ui(
    pipeline: &StreamPipeline,
    work: &std::path::Path,
    events: u64,
    rows: &mut Vec<Row>,
) -> Result<()> {
    println!("ui: generating {events} events ...");
    let input_dir = write_event_files(pipeline, work, events)?;
    let mut pipeline = pipeline.clone();
    pipeline.batch_limit.records = RECORDS_PER_MICRO_BATCH;
    let pipeline = &pipeline;
    let mut rates = [Vec::new(), Vec::new()];
    for (n, ui_on) in [false, true, false, true].into_iter().enumerate() {
        let lake = lake_at(&work.join(format!("lake-ui-{n}")))?;
        let input = Input::Files(FileInput::open(pipeline, &lake, &input_dir.display().to_string()).await?);
        let mut engine = Engine::open(pipeline, &lake, input, SinkSettings::default()).await?;
        let requests = Arc::new(AtomicU64::new(0));
        let mut serving = None;
        if ui_on {
            let outputs: Vec<String> = pipeline.outputs.iter().map(|o| o.name.clone()).collect();
            let telemetry = Arc::new(Telemetry::new().watching(&pipeline.name, outputs.clone(), pipeline.interval));
            let ui = server::start("127.0.0.1:0".parse().expect("an address"), telemetry.clone()).await?;
            engine.observed_by(telemetry);
            let poller = tokio::spawn(poll(ui.address, outputs, requests.clone()));
            serving = Some((ui, poller));
        }
        reset_peak_rss();
        let report = engine.run(&RunOptions::default()).await?;
        if let Some((_ui, poller)) = serving {
            poller.abort();
        }
        let rate = report.records as f64 / report.elapsed.as_secs_f64();
        rates[usize::from(ui_on)].push(rate);
        let phase = if ui_on { "ui: on, polled" } else { "ui: off" };
        let served = requests.load(Ordering::Relaxed);
        println!(
            "{phase}: {rate:.0} events/s, micro-batch p50 {} ms / p99 {} ms{}",
            report.epoch_times.quantile(0.5).as_millis(),
            report.epoch_times.quantile(0.99).as_millis(),
            if ui_on {
                format!(", {served} requests served")
            } else {
                String::new()
            }
        );
        let note = if ui_on {
            format!("{served} requests, every endpoint each {} ms", POLL_EVERY.as_millis())
        } else {
            "same files, no UI".to_string()
        };
        rows.push(row(phase, &report, note));
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (off, on) = (mean(&rates[0]), mean(&rates[1]));
    println!(
        "ui: the UI on and polled runs at {:.1}% of the events/s without it (means of two runs each)",
        100.0 * on / off
    );
    Ok(())
}

/// Fetches what the live page reads, and `/metrics`, every [`POLL_EVERY`], counting answers.
async fn poll(address: std::net::SocketAddr, outputs: Vec<String>, requests: Arc<AtomicU64>) {
    let client = reqwest::Client::new();
    let mut paths = vec![
        "/".to_string(),
        "/api/status".to_string(),
        "/api/progress?last=100".to_string(),
        "/metrics".to_string(),
    ];
    paths.extend(outputs.iter().map(|o| format!("/api/latest/{o}")));
    loop {
        for path in &paths {
            let answered = client.get(format!("http://{address}{path}")).send().await;
            if let Ok(response) = answered
                && response.bytes().await.is_ok()
            {
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
