//! Monitoring during the tests (the seed's last section): once a second, this process's CPU and
//! memory, the database pool (size, in use, waiting) and the warnings and errors logged so far,
//! kept as a time series for the reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_store::Store;
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cpu::process_cpu;
use crate::rss::{megabytes, rss_bytes};

/// Warnings and errors logged by any part of the process; fed by [`ErrorCountLayer`].
static LOGGED_PROBLEMS: AtomicU64 = AtomicU64::new(0);

/// A `tracing` layer that counts WARN and ERROR events for the monitor.
#[derive(Debug, Default, Clone, Copy)]
pub struct ErrorCountLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorCountLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() <= tracing::Level::WARN {
            LOGGED_PROBLEMS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One second's reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    /// CPU used by this process in the last second, in percent of one core.
    pub cpu_percent: f64,
    pub rss_mb: f64,
    pub pool_size: u32,
    pub pool_in_use: u32,
    pub pool_waiting: Option<u32>,
    /// Warnings and errors logged since the run started.
    pub log_problems: u64,
}

/// The series, shared with the sampling task.
#[derive(Debug, Clone, Default)]
pub struct Monitor {
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Monitor {
    /// Starts sampling `store`'s pool and the process every second until `stop`.
    pub fn start(store: Store, stop: CancellationToken) -> Monitor {
        let monitor = Monitor::default();
        let samples = monitor.samples.clone();
        let started = Instant::now();
        let problems_at_start = LOGGED_PROBLEMS.load(Ordering::Relaxed);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            // After a stall, one late sample rather than a burst of back-to-back ones (whose
            // CPU figure would divide 10 ms ticks by microseconds).
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_cpu = process_cpu();
            let mut last_at = Instant::now();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let cpu = process_cpu();
                let cpu_percent = match (last_cpu, cpu) {
                    (Some(a), Some(b)) => {
                        // CPU time comes in 10 ms ticks: over less than half a second the
                        // ratio says little, and it can never exceed every core at work.
                        let elapsed = last_at.elapsed().as_secs_f64();
                        if elapsed < 0.5 {
                            f64::NAN
                        } else {
                            ((b - a).as_secs_f64() / elapsed * 100.0).min(cores * 100.0)
                        }
                    }
                    _ => f64::NAN,
                };
                last_cpu = cpu;
                last_at = Instant::now();
                let pool = store.pool_stats();
                samples.lock().push(Sample {
                    t_s: started.elapsed().as_secs_f64(),
                    cpu_percent,
                    rss_mb: rss_bytes().map_or(f64::NAN, megabytes),
                    pool_size: pool.size,
                    pool_in_use: pool.in_use,
                    pool_waiting: pool.waiting,
                    log_problems: LOGGED_PROBLEMS.load(Ordering::Relaxed) - problems_at_start,
                });
            }
        });
        monitor
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().clone()
    }

    /// The latest sample, for live display.
    pub fn latest(&self) -> Option<Sample> {
        self.samples.lock().last().copied()
    }
}

/// The whole run's monitoring in a few figures, for the reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MonitorSummary {
    pub samples: usize,
    pub cpu_median_percent: f64,
    pub cpu_max_percent: f64,
    pub rss_first_mb: f64,
    pub rss_max_mb: f64,
    pub rss_last_mb: f64,
    pub pool_size: u32,
    pub pool_in_use_max: u32,
    pub pool_waiting_max: Option<u32>,
    pub log_problems: u64,
}

impl MonitorSummary {
    /// `None` when no sample was taken (a run shorter than a second).
    pub fn of(samples: &[Sample]) -> Option<MonitorSummary> {
        let first = samples.first()?;
        let last = samples.last()?;
        let mut cpu: Vec<f64> = samples
            .iter()
            .map(|s| s.cpu_percent)
            .filter(|c| c.is_finite())
            .collect();
        cpu.sort_by(f64::total_cmp);
        let finite_max = |f: fn(&Sample) -> f64| {
            samples
                .iter()
                .map(f)
                .filter(|v| v.is_finite())
                .fold(f64::NAN, f64::max)
        };
        Some(MonitorSummary {
            samples: samples.len(),
            cpu_median_percent: cpu.get(cpu.len() / 2).copied().unwrap_or(f64::NAN),
            cpu_max_percent: cpu.last().copied().unwrap_or(f64::NAN),
            rss_first_mb: first.rss_mb,
            rss_max_mb: finite_max(|s| s.rss_mb),
            rss_last_mb: last.rss_mb,
            pool_size: last.pool_size,
            pool_in_use_max: samples.iter().map(|s| s.pool_in_use).max().unwrap_or(0),
            pool_waiting_max: samples.iter().filter_map(|s| s.pool_waiting).max(),
            log_problems: last.log_problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, cpu: f64, rss: f64, in_use: u32) -> Sample {
        Sample {
            t_s,
            cpu_percent: cpu,
            rss_mb: rss,
            pool_size: 8,
            pool_in_use: in_use,
            pool_waiting: Some(0),
            log_problems: t_s as u64,
        }
    }

    #[test]
    fn summary_takes_median_cpu_peak_memory_and_the_last_problem_count() {
        let samples = [
            sample(1.0, f64::NAN, 10.0, 1),
            sample(2.0, 50.0, 30.0, 5),
            sample(3.0, 150.0, 20.0, 2),
            sample(4.0, 100.0, 25.0, 0),
        ];
        let s = MonitorSummary::of(&samples).expect("samples");
        assert_eq!(s.samples, 4);
        assert_eq!(s.cpu_median_percent, 100.0);
        assert_eq!(s.cpu_max_percent, 150.0);
        assert_eq!(
            (s.rss_first_mb, s.rss_max_mb, s.rss_last_mb),
            (10.0, 30.0, 25.0)
        );
        assert_eq!(s.pool_in_use_max, 5);
        assert_eq!(s.log_problems, 4);
        assert!(MonitorSummary::of(&[]).is_none());
    }
}
