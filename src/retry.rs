//! Retrying what may succeed later — a broker away, a partition leader moving, a server
//! restarting — with one policy for the whole program: exponential backoff with jitter (so
//! that many clients do not retry in step), every retry logged with what failed and where,
//! bounded in total waiting time. Past the bound the error is returned to the caller, which
//! turns it into exit code 4: a supervisor (Airflow, systemd, Kubernetes) restarting the
//! process resumes where the checkpoint says.

use std::time::Duration;

use backon::ExponentialBuilder;

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
    /// Kafka requests and deliveries: 100 ms doubling to 5 s, for two minutes.
    pub const BROKER: RetryPolicy = RetryPolicy {
        first_wait: Duration::from_millis(100),
        max_wait: Duration::from_secs(5),
        give_up_after: Duration::from_secs(120),
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
