//! Counters the front end exposes at `GET /metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the handler-latency histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Updates handled and how long handling took; lock-free.
#[derive(Debug, Default)]
pub struct Metrics {
    updates: AtomicU64,
    dropped_flood: AtomicU64,
    delivered: AtomicU64,
    send_failures: AtomicU64,
    progress_dropped: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
}

impl Metrics {
    pub(crate) fn observe(&self, elapsed: Duration) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| seconds <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn progress_dropped(&self) {
        self.progress_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_failed(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.dropped_flood.fetch_add(1, Ordering::Relaxed);
    }

    /// Updates handled so far.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Updates skipped because their user sent faster than the per-user limit.
    pub fn dropped_flood(&self) -> u64 {
        self.dropped_flood.load(Ordering::Relaxed)
    }

    /// The Prometheus exposition, with the engine's and the cache's gauges appended by the caller.
    pub(crate) fn render(&self, out: &mut String) {
        let updates = self.updates();
        let _ = writeln!(out, "# HELP genbot_updates_total Telegram updates handled.");
        let _ = writeln!(out, "# TYPE genbot_updates_total counter");
        let _ = writeln!(out, "genbot_updates_total {updates}");
        let _ = writeln!(
            out,
            "# HELP genbot_updates_dropped_flood_total Updates skipped by the per-user limit."
        );
        let _ = writeln!(out, "# TYPE genbot_updates_dropped_flood_total counter");
        let _ = writeln!(
            out,
            "genbot_updates_dropped_flood_total {}",
            self.dropped_flood()
        );
        for (name, help, value) in [
            (
                "genbot_deliveries_total",
                "Results (images or failure messages) delivered from the outbox.",
                &self.delivered,
            ),
            (
                "genbot_delivery_failures_total",
                "Delivery attempts that failed (retried later or given up).",
                &self.send_failures,
            ),
            (
                "genbot_progress_dropped_total",
                "Progress messages (chat actions, status edits) dropped to leave the send budget to answers.",
                &self.progress_dropped,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP genbot_update_seconds Time to handle one update."
        );
        let _ = writeln!(out, "# TYPE genbot_update_seconds histogram");
        let mut cumulative = 0;
        for (le, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "genbot_update_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "genbot_update_seconds_bucket{{le=\"+Inf\"}} {updates}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "genbot_update_seconds_sum {sum}");
        let _ = writeln!(out, "genbot_update_seconds_count {updates}");
    }
}

/// Appends one gauge.
pub(crate) fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.observe(Duration::from_micros(500));
        metrics.observe(Duration::from_millis(20));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("genbot_update_seconds_bucket{le=\"0.001\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("genbot_update_seconds_bucket{le=\"0.025\"} 2"),
            "{out}"
        );
        assert!(out.contains("genbot_updates_total 2"), "{out}");
    }
}
