//! How the mock behaves: latency, failures, rate limit, scripted faults.

use std::time::Duration;

/// The mock's model of Replicate.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicateMockConfig {
    /// Median time from creation to a final status.
    pub median_latency: Duration,
    /// Spread of the log-normal latency (0 = every prediction takes the median).
    pub latency_sigma: f64,
    /// Time spent `starting` (queued at Replicate) before `processing`.
    pub start_delay: Duration,
    /// Fraction of predictions that end `failed`, from 0 to 1.
    pub failure_rate: f64,
    /// Answer 429 to creations above this rate, like Replicate does.
    pub rate_limit: Option<ServerRateLimit>,
}

impl Default for ReplicateMockConfig {
    fn default() -> Self {
        ReplicateMockConfig {
            median_latency: Duration::from_millis(200),
            latency_sigma: 0.0,
            start_delay: Duration::ZERO,
            failure_rate: 0.0,
            rate_limit: None,
        }
    }
}

/// A server-side limit on prediction creations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRateLimit {
    /// Creations accepted per second; more get 429.
    pub per_second: u32,
    /// Whether the 429 carries a `Retry-After` header (Replicate's often does not).
    pub retry_after_header: bool,
}

/// A fault answered to one prediction creation instead of the normal behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptedFault {
    /// 429 with the given `Retry-After` seconds (or none), nothing created.
    Throttle { retry_after_secs: Option<u64> },
    /// This HTTP status (e.g. 500, 503, 422) with a Replicate-shaped error body, nothing created.
    Status(u16),
    /// The prediction is created but ends `failed` with this error.
    FailPrediction(String),
}
