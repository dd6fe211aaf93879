//! Retrying what may succeed later — a broker away, a partition leader moving, a server
//! restarting — with one policy for the whole program: exponential backoff with jitter (so
//! that many clients do not retry in step), every retry logged with what failed and where,
//! bounded in total waiting time. Past the bound the error is returned to the caller, which
//! turns it into exit code 4: a supervisor (Airflow, systemd, Kubernetes) restarting the
//! process resumes where the checkpoint says.
//!
//! The bound is the process's `--retry-for` (`[engine] retry_for`, default two minutes), set once
//! at start ([`configure`]) and read by every client ([`policy`]): Kafka requests and
//! deliveries, sink writes of an epoch, checkpoint files.
//!
//! Every retry is counted by operation and kind of error ([`count_retry`]): the live UI's
//! `quickchat_retries_total`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::error::Error;

/// The default `--retry-for`.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(120);

static POLICY: OnceLock<RetryPolicy> = OnceLock::new();

/// Sets how long the process keeps retrying; the first call wins (commands call it at start).
pub fn configure(give_up_after: Duration) {
    let _ = POLICY.set(RetryPolicy::DEFAULT.giving_up_after(give_up_after));
}

/// The process's retry policy: [`RetryPolicy::DEFAULT`] with the configured bound.
pub fn policy() -> RetryPolicy {
    *POLICY.get_or_init(|| RetryPolicy::DEFAULT)
}

/// What the process retries, as `quickchat_retries_total` names it in its `operation` label.
pub mod operation {
    /// A request to the Kafka brokers (metadata, offsets, transactions).
    pub const KAFKA_REQUEST: &str = "kafka_request";
    /// Records produced to Kafka and not acknowledged.
    pub const KAFKA_DELIVERY: &str = "kafka_delivery";
    /// A fetch of records from Kafka.
    pub const KAFKA_FETCH: &str = "kafka_fetch";
    /// A micro-batch's write to a sink (Delta, MySQL, Parquet).
    pub const SINK_WRITE: &str = "sink_write";
    /// Writing a checkpoint file (commit log, offsets, state snapshot).
    pub const CHECKPOINT_WRITE: &str = "checkpoint_write";
    /// Reading a checkpoint file.
    pub const CHECKPOINT_READ: &str = "checkpoint_read";
}

/// Failed tries tried again since the process started, by operation and kind of error.
static RETRIED: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts a failed try of `operation` (one of [`operation`]) that is tried again; `error` is
/// the kind of error (see [`Error::kind`]).
pub fn count_retry(operation: &'static str, error: &'static str) {
    *RETRIED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry((operation, error))
        .or_default() += 1;
}

/// The retries counted since the process started: `((operation, error kind), count)`.
pub fn retries_counted() -> Vec<((&'static str, &'static str), u64)> {
    let counts = RETRIED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    counts.iter().map(|(key, count)| (*key, *count)).collect()
}

/// How long to wait between tries and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first wait; each next one doubles.
    pub first_wait: Duration,
    /// The longest wait between two tries.
    pub max_wait: Duration,
    /// Waiting more than this in all ends the retries.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// Every server away (Kafka, MySQL, S3) and a full disk: 100 ms doubling to 5 s, for
    /// [`DEFAULT_RETRY_FOR`].
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        first_wait: Duration::from_millis(100),
        max_wait: Duration::from_secs(5),
        give_up_after: DEFAULT_RETRY_FOR,
    };

    /// The same policy giving up after `give_up_after`.
    pub fn giving_up_after(self, give_up_after: Duration) -> Self {
        Self { give_up_after, ..self }
    }

    /// The backoff to hand to `backon`'s `retry`.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.first_wait)
            .with_max_delay(self.max_wait)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(self.give_up_after))
    }
}

/// The retries of one operation that cannot be handed to `backon` as a closure (it needs the
/// caller's `&mut self` between tries): ask [`Retries::wait_after`] after each failure.
pub struct Retries {
    operation: &'static str,
    policy: RetryPolicy,
    waits: ExponentialBackoff,
    started: Instant,
    tries: u32,
}

impl Retries {
    /// Retries of `operation` (one of [`operation`]) per `policy`, counted from now.
    pub fn new(operation: &'static str, policy: RetryPolicy) -> Self {
        Self {
            operation,
            policy,
            waits: policy.backoff().build(),
            started: Instant::now(),
            tries: 0,
        }
    }

    /// After a failed try of `what`: when `error` may pass and the bound is not reached, logs
    /// the retry, waits and returns `None` (try again); otherwise returns the error to give up
    /// with, saying how long it was retried.
    pub async fn wait_after(&mut self, what: &str, error: Error) -> Option<Error> {
        // An error that was retried already (by the Kafka client) is not retried again.
        if !error.is_retryable() || matches!(error, Error::GaveUp { .. }) {
            return Some(error);
        }
        match self.waits.next() {
            Some(wait) => {
                self.tries += 1;
                count_retry(self.operation, error.kind());
                tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, try_number = self.tries,
                    "{what} failed; retrying");
                tokio::time::sleep(wait).await;
                None
            }
            None if self.tries == 0 => Some(error),
            None => Some(Error::GaveUp {
                what: what.to_string(),
                tries: self.tries + 1,
                seconds: self.started.elapsed().as_secs(),
                limit: humantime::format_duration(self.policy.give_up_after).to_string(),
                cause: Box::new(error),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use backon::{BlockingRetryable, Retryable};

    use super::*;

    const QUICK: RetryPolicy = RetryPolicy {
        first_wait: Duration::from_millis(1),
        max_wait: Duration::from_millis(4),
        give_up_after: Duration::from_millis(50),
    };

    #[test]
    fn a_request_that_fails_twice_then_succeeds_is_tried_three_times() {
        let tries = AtomicU32::new(0);
        let result = (|| {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            if n < 2 { Err("broker away") } else { Ok(n) }
        })
        .retry(QUICK.backoff())
        .sleep(std::thread::sleep)
        .call();
        assert_eq!(result, Ok(2));
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_of_a_stateful_operation_end_with_the_cause_and_the_bound() {
        let mut retries = Retries::new("writing_in_a_test", QUICK);
        let away = || Error::Sink {
            table: "mysql:page_views".into(),
            message: "cannot connect".into(),
            retryable: true,
            cause: None,
        };
        let mut tries = 1;
        let given_up = loop {
            match retries.wait_after("writing page_views", away()).await {
                None => tries += 1,
                Some(error) => break error,
            }
        };
        assert!(tries > 3, "{tries}");
        let counted = retries_counted();
        assert!(
            counted.contains(&(("writing_in_a_test", "sink"), (tries - 1) as u64)),
            "each retry counted once, by operation and error: {counted:?}"
        );
        let text = given_up.to_string();
        assert!(
            text.contains("writing page_views") && text.contains("cannot connect"),
            "{text}"
        );
        assert!(
            text.contains(&format!("{tries} tries")) && text.contains("--retry-for 50ms"),
            "{text}"
        );
        assert_eq!(given_up.exit_code(), crate::error::ExitCode::JobFailed);

        let fatal = Error::Usage("no such table".into());
        assert!(matches!(
            Retries::new(operation::SINK_WRITE, QUICK).wait_after("x", fatal).await,
            Some(Error::Usage(_))
        ));
    }

    #[tokio::test]
    async fn retries_stop_once_the_waits_add_up_to_the_bound() {
        let tries = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result: Result<(), &str> = (|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err("still away")
        })
        .retry(QUICK.backoff())
        .sleep(tokio::time::sleep)
        .await;
        assert_eq!(result, Err("still away"));
        assert!(tries.load(Ordering::SeqCst) > 3, "{tries:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded: {:?}",
            started.elapsed()
        );
    }
}
