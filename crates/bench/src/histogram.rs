//! Latency recording with bounded memory: an HDR histogram of microseconds (1 µs – 1 h,
//! 3 significant digits, a few hundred KB however many samples).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency samples of one measurement.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

/// The percentiles reports show, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

const MAX_MICROS: u64 = 3_600_000_000;

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

/// A recording of these samples: `samples.iter().copied().collect()`.
impl FromIterator<Duration> for Latencies {
    fn from_iter<I: IntoIterator<Item = Duration>>(samples: I) -> Self {
        let mut latencies = Latencies::new();
        for latency in samples {
            latencies.record(latency);
        }
        latencies
    }
}

impl Latencies {
    pub fn new() -> Self {
        // Bounds are constants known to be valid (low 1 ≤ high / 2, sigfig 3 ≤ 5).
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3).unwrap_or_else(|_| {
            Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
        });
        Latencies { histogram }
    }

    /// Records one sample; values beyond an hour are recorded as an hour.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.histogram.saturating_record(micros);
    }

    /// Adds another recording's samples.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            count: self.histogram.len(),
            p50_ms: ms(self.histogram.value_at_quantile(0.50)),
            p95_ms: ms(self.histogram.value_at_quantile(0.95)),
            p99_ms: ms(self.histogram.value_at_quantile(0.99)),
            max_ms: ms(self.histogram.max()),
            mean_ms: self.histogram.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latencies = Latencies::new();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let s = latencies.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
        let mut other = Latencies::new();
        other.record(Duration::from_secs(2));
        latencies.merge(&other);
        assert!((latencies.summary().max_ms - 2000.0).abs() < 2.0);
    }

    #[test]
    fn collecting_samples_records_each() {
        let collected: Latencies = (1..=100).map(Duration::from_millis).collect();
        let s = collected.summary();
        assert_eq!(s.count, 100);
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
    }
}
