//! [`BatchRun`]: a batch run (`run <job|group>`) as it goes — the jobs done with their figures,
//! the one running with the rows it has passed to its sink so far, the ones waiting — and the
//! UI a batch run serves on `--ui` / `[ui] listen` while it runs: `/metrics` (the gauges
//! `--metrics-push` pushes at the end, plus `quickchat_job_running`, the jobs waiting and the
//! process's own figures) and `/api/status` (the same as JSON). A scraper that comes by during a
//! long run sees it; the final figures still go to the Pushgateway or the textfile.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::job_metrics::{JobFigures, JobMetrics, RunningJob};
use crate::error::Result;
use crate::http::{Server, text};
use crate::jobs::runner::JobReport;

/// A batch run's jobs as they go.
#[derive(Debug)]
pub struct BatchRun {
    target: String,
    /// The jobs to run, in order.
    planned: Vec<String>,
    started: (Instant, chrono::DateTime<chrono::Utc>),
    jobs: Mutex<Jobs>,
}

#[derive(Debug, Default)]
struct Jobs {
    finished: Vec<JobFigures>,
    running: Option<(String, Instant, Arc<AtomicU64>)>,
}

impl BatchRun {
    /// A run of `target` that runs `planned`, in that order.
    pub fn new(target: &str, planned: Vec<String>) -> Self {
        Self {
            target: target.to_string(),
            planned,
            started: (Instant::now(), chrono::Utc::now()),
            jobs: Mutex::default(),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `job` starts; `rows_out` counts the rows it passes to its sink.
    pub fn job_started(&self, job: &str, rows_out: Arc<AtomicU64>) {
        self.jobs().running = Some((job.to_string(), Instant::now(), rows_out));
    }

    /// A job ended (or was skipped).
    pub fn job_finished(&self, report: &JobReport) {
        let mut jobs = self.jobs();
        if jobs.running.as_ref().is_some_and(|(job, _, _)| *job == report.job) {
            jobs.running = None;
        }
        jobs.finished.push(JobFigures::from(report));
    }

    /// The jobs done, the one running, and how many wait.
    fn snapshot(&self) -> (Vec<JobFigures>, Option<RunningJob>, usize) {
        let jobs = self.jobs();
        let running = jobs.running.as_ref().map(|(job, started, rows)| RunningJob {
            job: job.clone(),
            rows_written: rows.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
        });
        let waiting = self.planned.len() - jobs.finished.len() - usize::from(running.is_some());
        (jobs.finished.clone(), running, waiting)
    }

    /// `/metrics`.
    pub fn exposition(&self) -> JobMetrics {
        let (finished, running, waiting) = self.snapshot();
        JobMetrics::while_running(&self.target, &finished, running.as_ref(), waiting)
    }

    /// `/api/status`: the run, and each planned job with its state (`waiting`, `running`, or
    /// how it ended) and figures.
    pub fn status(&self) -> Value {
        let (finished, running, _) = self.snapshot();
        let jobs: Vec<Value> = self
            .planned
            .iter()
            .map(|job| match finished.iter().find(|f| &f.job == job) {
                Some(figures) => json!(figures),
                None => match &running {
                    Some(running) if &running.job == job => json!({
                        "job": job,
                        "status": "running",
                        "rows_written": running.rows_written,
                        "seconds": running.seconds,
                    }),
                    _ => json!({"job": job, "status": "waiting"}),
                },
            })
            .collect();
        json!({
            "target": self.target,
            "status": if finished.len() < self.planned.len() { "running" } else { "finished" },
            "started": self.started.1.to_rfc3339(),
            "uptime_seconds": self.started.0.elapsed().as_secs_f64(),
            "version": env!("CARGO_PKG_VERSION"),
            "jobs": jobs,
        })
    }
}

/// Serves `run` on `listen`, or the next free port; dropping the server stops it.
pub async fn serve(listen: SocketAddr, run: Arc<BatchRun>) -> Result<Server> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .fallback(not_found)
        .with_state(run);
    Server::start(listen, app, &[]).await
}

async fn metrics(State(run): State<Arc<BatchRun>>) -> Response {
    let metrics = run.exposition();
    (
        [(header::CONTENT_TYPE, metrics.content_type().to_string())],
        metrics.text().to_string(),
    )
        .into_response()
}

async fn status(State(run): State<Arc<BatchRun>>) -> impl IntoResponse {
    Json(run.status())
}

async fn not_found(request: Request) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no {} here: a batch run serves /metrics and /api/status (the live page is a streaming run's)",
            request.uri().path()
        ),
    )
}
