//! [`JobMetrics`]: the final figures of a batch run (`run <job|group>`), per job, for the two
//! places Airflow-scheduled jobs leave them, since a batch run ends before a scraper comes by:
//! a Prometheus Pushgateway (`--metrics-push URL`, `[metrics] push_url`) and a node exporter
//! textfile (`--metrics-file PATH`). Gauges, as both conventions want for the last run's
//! result; the Pushgateway adds `push_time_seconds` itself.
//!
//! A failed push or write is logged as an error and leaves the run's exit code alone: the exit
//! code says what the jobs did, and a monitoring outage must not fail an ETL run that succeeded.

use std::path::Path;

use prometheus::{Encoder, GaugeVec, Opts, Registry};
use url::Url;

use crate::error::{Error, Result};
use crate::jobs::runner::JobReport;

/// The Pushgateway grouping key's `job` label: every run of this binary is under it, with the
/// run's target as a second label (`/metrics/job/quickchat-etl/target/<target>`), so one
/// target's push replaces only its own previous one.
pub const PUSH_JOB: &str = "quickchat-etl";

/// The metrics of one batch run, in Prometheus's text format.
pub struct JobMetrics {
    target: String,
    text: String,
    content_type: String,
}

/// One job's figures, as the metrics give them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobFigures {
    /// The job.
    pub job: String,
    /// How it ended: `ok`, `failed`, `dq-failed`, `skipped`.
    pub status: &'static str,
    /// Rows read from its sources.
    pub rows_read: u64,
    /// Rows written to its sink.
    pub rows_written: u64,
    /// Source records quarantined.
    pub rows_quarantined: u64,
    /// Rows its expectations kept out of the sink.
    pub rows_dropped: u64,
    /// Wall time.
    pub seconds: f64,
}

impl From<&JobReport> for JobFigures {
    fn from(report: &JobReport) -> Self {
        Self {
            job: report.job.clone(),
            status: report.status(),
            rows_read: report.rows_read,
            rows_written: report.sink.rows,
            rows_quarantined: report.rows_rejected,
            rows_dropped: report.rows_dropped,
            seconds: report.elapsed.as_secs_f64(),
        }
    }
}

/// The job a run is in the middle of, for a scrape while it runs.
#[derive(Debug, Clone)]
pub struct RunningJob {
    /// The job.
    pub job: String,
    /// Rows it has passed to its sink so far.
    pub rows_written: u64,
    /// Time since it started.
    pub seconds: f64,
}

impl JobMetrics {
    /// The figures of `finished`, the jobs a run of `target` ran (or skipped).
    pub fn of(target: &str, finished: &[JobFigures]) -> Self {
        Self::build(target, finished, None)
    }

    /// The figures of a run still going: the jobs `finished`, the one `running` (its rows so
    /// far, in `quickchat_job_rows_written`, and `quickchat_job_running` 1), the jobs left
    /// (`quickchat_run_jobs_waiting`), and the process's own figures.
    pub fn while_running(target: &str, finished: &[JobFigures], running: Option<&RunningJob>, waiting: usize) -> Self {
        Self::build(target, finished, Some((running, waiting)))
    }

    fn build(target: &str, finished: &[JobFigures], live: Option<(Option<&RunningJob>, usize)>) -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let gauge = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(gauge.clone()))
                .expect("names registered once");
            gauge
        };
        let job = &["job_name"];
        let rows_read = gauge("quickchat_job_rows_read", "Rows the job read from its sources", job);
        let rows_written = gauge("quickchat_job_rows_written", "Rows the job wrote to its sink", job);
        let quarantined = gauge(
            "quickchat_job_rows_quarantined",
            "Source records the job wrote to meta.quarantine with their reason",
            job,
        );
        let dropped = gauge(
            "quickchat_job_rows_dropped",
            "Rows the job's expectations kept out of its sink",
            job,
        );
        let duration = gauge("quickchat_job_duration_seconds", "Wall time of the job", job);
        let success = gauge(
            "quickchat_job_success",
            "1 if the job succeeded, else 0; status says how it ended (ok, failed, dq-failed, skipped)",
            &["job_name", "status"],
        );
        let finished_at = gauge(
            "quickchat_job_last_run_timestamp_seconds",
            "When the job's run ended, as a Unix time",
            job,
        );
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        for figures in finished {
            let name = [figures.job.as_str()];
            rows_read.with_label_values(&name).set(figures.rows_read as f64);
            rows_written.with_label_values(&name).set(figures.rows_written as f64);
            quarantined
                .with_label_values(&name)
                .set(figures.rows_quarantined as f64);
            dropped.with_label_values(&name).set(figures.rows_dropped as f64);
            duration.with_label_values(&name).set(figures.seconds);
            success
                .with_label_values(&[figures.job.as_str(), figures.status])
                .set(if figures.status == "ok" { 1.0 } else { 0.0 });
            finished_at.with_label_values(&name).set(now);
        }
        if let Some((running, waiting)) = live {
            let running_gauge = gauge("quickchat_job_running", "1 while the job runs", job);
            if let Some(running) = running {
                let name = [running.job.as_str()];
                running_gauge.with_label_values(&name).set(1.0);
                rows_written.with_label_values(&name).set(running.rows_written as f64);
                duration.with_label_values(&name).set(running.seconds);
            }
            gauge(
                "quickchat_run_jobs_waiting",
                "Jobs of the run not started yet",
                &["target"],
            )
            .with_label_values(&[target])
            .set(waiting as f64);
            registry
                .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
                .expect("the process collector registered once");
        }
        let encoder = prometheus::TextEncoder::new();
        let text = encoder
            .encode_to_string(&registry.gather())
            .expect("the text encoder writes any metric");
        Self {
            target: target.to_string(),
            text,
            content_type: encoder.format_type().to_string(),
        }
    }

    /// The exposition text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Its content type.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Replaces this target's group on the Pushgateway at `gateway` (HTTP PUT).
    pub async fn push(&self, gateway: &Url) -> Result<()> {
        let url = push_url(gateway, &self.target)?;
        let failed = |message: String| Error::Sink {
            table: format!("pushgateway {url}"),
            message,
            retryable: true,
            cause: None,
        };
        let response = reqwest::Client::new()
            .put(url.clone())
            .header(reqwest::header::CONTENT_TYPE, &self.content_type)
            .body(self.text.clone())
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| failed(format!("cannot push the run's metrics: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(failed(format!("the Pushgateway answered {status}: {}", body.trim())));
        }
        Ok(())
    }

    /// Writes the text to `path` through a temporary file beside it and a rename, so the
    /// textfile collector never reads half a file.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let failed = |e: std::io::Error| Error::Sink {
            table: format!("metrics file {}", path.display()),
            message: format!("cannot write the run's metrics: {e}"),
            retryable: false,
            cause: None,
        };
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&temporary, &self.text).map_err(failed)?;
        std::fs::rename(&temporary, path).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            failed(e)
        })
    }
}

/// `<gateway>/metrics/job/quickchat-etl/target/<target>`, the target path-escaped.
fn push_url(gateway: &Url, target: &str) -> Result<Url> {
    let mut url = gateway.clone();
    url.path_segments_mut()
        .map_err(|()| Error::Usage(format!("--metrics-push `{gateway}` is not an http(s) URL")))?
        .pop_if_empty()
        .extend(["metrics", "job", PUSH_JOB, "target", target]);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_url_names_the_binary_and_the_target_under_any_base_path() {
        let at = |base: &str| push_url(&Url::parse(base).unwrap(), "gold-all").unwrap().to_string();
        assert_eq!(
            at("http://gw:9091"),
            "http://gw:9091/metrics/job/quickchat-etl/target/gold-all"
        );
        assert_eq!(
            at("http://gw:9091/prefix/"),
            "http://gw:9091/prefix/metrics/job/quickchat-etl/target/gold-all"
        );
    }
}
