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
    /// Every create's answer is held back this long after the prediction exists (a slow
    /// network, or a crash of the client while it waits).
    pub create_response_delay: Duration,
    /// Predictions per page of `GET /v1/predictions` (Replicate's is 100).
    pub list_page_size: usize,
    /// Each output file answers 404 after its first download, as Replicate's do an hour after
    /// the prediction: whoever needs the image later must have kept it.
    pub outputs_served_once: bool,
    /// Webhooks are not sent at all (a receiver that was down for all of Replicate's retries):
    /// only polling finds the end.
    pub drop_webhooks: bool,
}

impl Default for ReplicateMockConfig {
    fn default() -> Self {
        ReplicateMockConfig {
            median_latency: Duration::from_millis(200),
            latency_sigma: 0.0,
            start_delay: Duration::ZERO,
            failure_rate: 0.0,
            rate_limit: None,
            create_response_delay: Duration::ZERO,
            list_page_size: 100,
            outputs_served_once: false,
            drop_webhooks: false,
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
    /// The prediction is created, but its answer is lost: the client gets this instead.
    LoseResponse(LostResponse),
    /// This creation behaves normally (a gap in a script of faults).
    Pass,
    /// The prediction is created and stays `processing` for an hour (a stuck GPU): only the
    /// client's timeout and cancel end it.
    Stall,
}

/// How a create's answer goes missing after the prediction exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostResponse {
    /// This HTTP status (a gateway's 502, say) instead of the 201.
    Status(u16),
    /// No answer at all, until the client gives up.
    Hang,
}
