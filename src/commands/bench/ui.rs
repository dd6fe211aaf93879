//! `bench --only ui`: what serving the live UI costs a stream. The same event files go through
//! the pipeline with its Delta sinks with the UI off, then on and watched: a headless Chromium
//! (when one is on the machine: `chromium`, or `QUICKCHAT_CHROMIUM`) showing the live page,
//! refreshing every second (twice the page's default), and a client fetching every endpoint the
//! page reads (`/`, `/api/status`, `/api/progress`, `/api/state`, `/api/latest/<output>`, and
//! `/metrics` as a Prometheus scrape would) every 500 ms — twice each, alternating, so that
//! neither side gets the warmer machine. Micro-batches of [`RECORDS_PER_MICRO_BATCH`] records,
//! so that each run commits many of them while watched.

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
            let browser = Browser::open(&format!("http://{}/?refresh=1", ui.address), work);
            serving = Some((ui, poller, browser));
        }
        reset_peak_rss();
        let report = engine.run(&RunOptions::default()).await?;
        let mut browser_requests = None;
        if let Some((ui, poller, browser)) = serving {
            poller.abort();
            browser_requests = browser.map(|browser| {
                drop(browser);
                ui.requests_served().saturating_sub(requests.load(Ordering::Relaxed))
            });
        }
        let rate = report.records as f64 / report.elapsed.as_secs_f64();
        rates[usize::from(ui_on)].push(rate);
        let phase = if ui_on { "ui: on, polled" } else { "ui: off" };
        let served = requests.load(Ordering::Relaxed);
        let browser = match browser_requests {
            Some(n) => format!(" + {n} from Chromium showing the live page"),
            None => " (no Chromium on this machine: the client only)".to_string(),
        };
        let note = if ui_on {
            format!(
                "{served} requests, every endpoint each {} ms{browser}",
                POLL_EVERY.as_millis()
            )
        } else {
            "same files, no UI".to_string()
        };
        println!(
            "{phase}: {rate:.0} events/s, micro-batch p50 {} ms / p99 {} ms{}",
            report.epoch_times.quantile(0.5).as_millis(),
            report.epoch_times.quantile(0.99).as_millis(),
            if ui_on { format!(", {note}") } else { String::new() }
        );
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
        "/api/state".to_string(),
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

/// A headless Chromium showing a page until dropped.
struct Browser(std::process::Child);

/// Chromium's flags for a headless run on a build machine, one a line; the browser tests
/// (web/tests/browser.mjs) read the same file.
const CHROMIUM_FLAGS: &str = include_str!("../../../web/chromium-flags.txt");

impl Browser {
    /// Opens `url` in the machine's Chromium; `None` (said by the caller) when there is none.
    fn open(url: &str, work: &std::path::Path) -> Option<Self> {
        let program = std::env::var("QUICKCHAT_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        // An empty profile of its own each time.
        let profile = work.join(format!("chromium-profile-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).ok()?;
        let child = std::process::Command::new(program)
            .arg("--headless")
            .args(CHROMIUM_FLAGS.lines().filter(|flag| !flag.trim().is_empty()))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(Self(child))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM: Chromium then ends its renderer and GPU processes too (a SIGKILL would leave
        // them to the init process).
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) on our own child's pid, which `wait` below has not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
