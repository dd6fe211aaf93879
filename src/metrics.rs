//! What a streaming run did — counts, per-stage times and latency distributions, kept in
//! constant memory however long the run (a continuous pipeline commits an epoch a second for
//! months) — the figures the run's summary, its progress log lines and `bench` read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Why a run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ended {
    /// A bounded input (files, a generator with a duration) was consumed and every window closed.
    #[default]
    EndOfInput,
    /// `--until-caught-up`: the input's end was reached.
    CaughtUp,
    /// Stopped by a signal after committing the epoch in progress.
    Stopped,
    /// `--max-epochs` micro-batches were processed.
    EpochLimit,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Epochs processed (replayed ones included).
    pub epochs: u64,
    /// Epochs processed again after a restart.
    pub replayed: u64,
    /// The last epoch committed.
    pub last_epoch: u64,
    /// Records read.
    pub records: u64,
    /// Records quarantined (undecodable, wrong types, no event time).
    pub rejected: u64,
    /// Records behind the watermark, written to late tables.
    pub late: u64,
    /// Records dropped as repeats of a key.
    pub duplicates: u64,
    /// Per source: what it read and set aside.
    pub sources: BTreeMap<String, SourceCounts>,
    /// Rows written per `output -> sink`.
    pub written: BTreeMap<String, u64>,
    /// Wall time of each epoch (read to commit).
    pub epoch_times: Latencies,
    /// For Kafka input: per epoch, the age of its oldest record when its sinks had committed.
    pub freshness: Latencies,
    /// Rows held in state at the end (windows, groups, sessions, join buffers).
    pub state_rows: usize,
    /// Wall time spent per stage (`read`, `decode <source>`, `ingest <source>`, `query <output>`,
    /// `sink <output> -> <sink>`, `checkpoint`...), to see where an epoch's time goes.
    pub stage_times: BTreeMap<String, Duration>,
    /// Run time.
    pub elapsed: Duration,
    /// Why it ended.
    pub ended: Ended,
}

/// What one source of a streaming run read and set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Records read.
    pub records: u64,
    /// Records behind the watermark.
    pub late: u64,
    /// Records dropped as repeats of a key.
    pub duplicates: u64,
    /// Records quarantined.
    pub rejected: u64,
}

impl RunReport {
    /// Adds the time since `since` to a stage's total.
    pub(crate) fn timed(&mut self, stage: impl Into<String>, since: Instant) {
        *self.stage_times.entry(stage.into()).or_default() += since.elapsed();
    }
}

/// A distribution of durations in constant memory: an HDR histogram of microseconds with three
/// significant digits, so a percentile is within 0.1 % of the exact one at any run length.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // Auto-resizing: it grows (a few KiB per doubling of the largest value), never per sample.
        Self(Histogram::new(3).expect("3 significant digits is a valid precision"))
    }
}

impl Latencies {
    /// Counts one duration.
    pub fn record(&mut self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).max(1);
        // Growing only fails past i64::MAX / 2 µs (146 000 years): clamp such a value.
        if self.0.record(micros).is_err() {
            self.0.saturating_record(micros);
        }
    }

    /// How many durations were counted.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The durations counted after `earlier`, a copy of these taken before.
    pub fn since(&self, earlier: &Latencies) -> Latencies {
        let mut later = self.0.clone();
        // Fails only when `earlier` counted what this did not: then nothing is subtracted.
        if later.subtract(&earlier.0).is_err() {
            return self.clone();
        }
        Latencies(later)
    }

    /// The duration at quantile `q` (0.5 = median), zero when nothing was counted.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.0.value_at_quantile(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_stay_within_a_tenth_of_a_percent_in_constant_memory() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.quantile(0.99), Duration::ZERO);
        for millis in 1..=1000u64 {
            latencies.record(Duration::from_millis(millis));
        }
        let size = latencies.0.distinct_values();
        for _ in 0..100 {
            for millis in 1..=1000u64 {
                latencies.record(Duration::from_millis(millis));
            }
        }
        assert_eq!(latencies.len(), 101_000);
        assert_eq!(latencies.0.distinct_values(), size, "no growth per sample");
        for (q, exact_ms) in [(0.5, 500.0), (0.99, 990.0), (1.0, 1000.0)] {
            let got = latencies.quantile(q).as_secs_f64() * 1000.0;
            assert!(
                (got - exact_ms).abs() <= exact_ms * 0.001,
                "q{q}: {got} ms, exact {exact_ms} ms"
            );
        }
    }

    #[test]
    fn since_counts_only_what_came_after_the_copy() {
        let mut latencies = Latencies::default();
        for millis in 1..=1000u64 {
            latencies.record(Duration::from_millis(millis));
        }
        let earlier = latencies.clone();
        latencies.record(Duration::from_secs(5));
        let later = latencies.since(&earlier);
        assert_eq!(later.len(), 1);
        assert_eq!(later.quantile(0.5).as_secs(), 5);
        assert_eq!(latencies.len(), 1001);
    }
}
