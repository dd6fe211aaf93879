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

impl JobMetrics {
    /// The figures of `reports`, the jobs a run of `target` ran (or skipped).
    pub fn of(target: &str, reports: &[JobReport]) -> Self {
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
        let finished = gauge(
            "quickchat_job_last_run_timestamp_seconds",
            "When the job's run ended, as a Unix time",
            job,
        );
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        for report in reports {
            let name = [report.job.as_str()];
            rows_read.with_label_values(&name).set(report.rows_read as f64);
            rows_written.with_label_values(&name).set(report.sink.rows as f64);
            quarantined.with_label_values(&name).set(report.rows_rejected as f64);
            dropped.with_label_values(&name).set(report.rows_dropped as f64);
            duration.with_label_values(&name).set(report.elapsed.as_secs_f64());
            success
                .with_label_values(&[report.job.as_str(), report.status()])
                .set(if report.outcome.is_ok() { 1.0 } else { 0.0 });
            finished.with_label_values(&name).set(now);
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
