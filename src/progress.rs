//! Logging and progress. Logs go to standard error, human-readable or JSON. On a terminal, a
//! running job shows a live spinner with its row count; when standard error is not a terminal
//! (Airflow, CI), the same figures come as plain log lines, every ten seconds while a job runs
//! and once when it ends.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// Sets up logging for the process; returns the progress display to use.
pub fn init(format: LogFormat, level: &str) -> Progress {
    JSON_LOGS.store(format == LogFormat::Json, Ordering::Relaxed);
    let interactive = std::io::stderr().is_terminal() && format == LogFormat::Text;
    let bars = MultiProgress::with_draw_target(if interactive {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Dependencies log at info about their own internals; keep them at warn unless asked.
    let filter = quiet_dependencies(filter, level);
    let writer = SuspendingWriter { bars: bars.clone() };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.compact().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests calling twice) keeps the first subscriber.
    let _ = result;
    Progress { bars, interactive }
}

/// Whether log lines are JSON (`--log-format json`).
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Whether log lines are JSON.
pub fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

/// Logs `value` as a JSON object under the key `progress` of an info line with `message`, in the
/// shape of the other JSON lines (`timestamp`, `level`, `message`). Written here rather than
/// through `tracing`, whose JSON lines can carry a structured value only as a string.
pub fn log_json(message: &str, value: &impl serde::Serialize) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let line = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "INFO",
        "message": message,
        "progress": value,
    });
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// Quiets the dependencies that `asked` (the `QUICKCHAT_LOG` filter) does not name itself.
fn quiet_dependencies(filter: EnvFilter, asked: &str) -> EnvFilter {
    // deltalake warns about its own internal metrics; its real failures come back as errors.
    // The Delta kernel logs "no table here yet" at ERROR while probing tables that a first run
    // creates; real failures come back to us as errors and are reported with context. Its
    // commits log each failure at ERROR before returning it ("exceeded maximum commit attempts"
    // when an upkeep beside a fast stream lost its race): we report those, with the table.
    let quiet = [
        ("datafusion", "warn"),
        ("object_store", "warn"),
        ("mysql_async", "warn"),
        ("hyper", "warn"),
        ("reqwest", "warn"),
        ("deltalake", "error"),
        ("deltalake_core", "error"),
        ("deltalake_core::kernel::transaction", "off"),
        ("deltalake_aws", "error"),
        ("buoyant_kernel", "off"),
    ];
    // A directive for a crate also names its modules (`deltalake_core=debug` shows the commits).
    let named = |target: &str| {
        asked
            .split(',')
            .filter_map(|d| d.trim().split('=').next())
            .any(|named| target == named || target.strip_prefix(named).is_some_and(|rest| rest.starts_with("::")))
    };
    quiet
        .iter()
        .filter(|(krate, _)| !named(krate))
        .fold(filter, |f, (krate, level)| {
            f.add_directive(format!("{krate}={level}").parse().expect("valid directive"))
        })
}

/// Writes log lines without tearing the progress bars.
#[derive(Clone)]
struct SuspendingWriter {
    bars: MultiProgress,
}

impl<'a> MakeWriter<'a> for SuspendingWriter {
    type Writer = SuspendedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        SuspendedStderr {
            bars: self.bars.clone(),
            buffer: Vec::new(),
        }
    }
}

/// Buffers one log line and prints it with the bars suspended.
struct SuspendedStderr {
    bars: MultiProgress,
    buffer: Vec<u8>,
}

impl std::io::Write for SuspendedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SuspendedStderr {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.buffer);
        self.bars.suspend(|| {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), &line);
        });
    }
}

/// The progress display of a process.
#[derive(Clone)]
pub struct Progress {
    bars: MultiProgress,
    interactive: bool,
}

impl Progress {
    /// A display that shows nothing (tests, `--format json` output).
    pub fn hidden() -> Self {
        Self {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            interactive: false,
        }
    }

    /// Starts following a job; `rows` is read while it runs.
    pub fn job(&self, job: &str, rows: Arc<AtomicU64>) -> JobProgress {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} ({elapsed})").expect("valid template"),
        );
        bar.set_prefix(job.to_string());
        let ticker = {
            let bar = bar.clone();
            let job = job.to_string();
            let interactive = self.interactive;
            tokio::spawn(async move {
                let mut ticks = 0u64;
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    ticks += 1;
                    let count = rows.load(Ordering::Relaxed);
                    if interactive {
                        bar.set_message(format!("{count} rows"));
                        bar.tick();
                    } else if ticks.is_multiple_of(50) {
                        tracing::info!(job = %job, rows = count, "job running");
                    }
                }
            })
        };
        JobProgress { bar, ticker }
    }
}

/// A running job's display; finishing (or dropping) it clears the spinner.
pub struct JobProgress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for JobProgress {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(asked: &str) -> String {
        quiet_dependencies(EnvFilter::new(asked), asked).to_string()
    }

    #[test]
    fn dependencies_are_quieted_unless_the_filter_names_them_or_their_crate() {
        assert!(directives("info").contains("deltalake_core::kernel::transaction=off"));
        assert!(directives("info").contains("datafusion=warn"));
        let asked = directives("info,deltalake_core=debug");
        assert!(!asked.contains("deltalake_core::kernel::transaction=off"), "{asked}");
        assert!(!asked.contains("deltalake_core=error"), "{asked}");
        assert!(asked.contains("deltalake=error"), "another crate stays quiet: {asked}");
    }
}
