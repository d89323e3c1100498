//! The mock's predictions and counters. A prediction's status is computed from its timestamps
//! when asked, so the mock runs no task per prediction.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::config::{LostResponse, ReplicateMockConfig, ScriptedFault};
use super::webhooks::{WebhookCount, Webhooks};

#[derive(Debug)]
pub(super) struct MockState {
    config: RwLock<ReplicateMockConfig>,
    base_url: String,
    epoch: Instant,
    epoch_utc: DateTime<Utc>,
    predictions: Mutex<HashMap<String, Prediction>>,
    /// Prediction ids in creation order (the list endpoint walks it newest first).
    order: Mutex<Vec<String>>,
    script: Mutex<VecDeque<ScriptedFault>>,
    window: Mutex<RateWindow>,
    counters: Mutex<Counters>,
    /// Output files already downloaded once.
    served: Mutex<HashSet<String>>,
    /// What output files are and how the next downloads fare.
    outputs: Mutex<Outputs>,
    /// Each create request's JSON body, as received, oldest first.
    create_bodies: Mutex<Vec<Value>>,
    webhooks: Webhooks,
}

/// The output files the mock serves: their size, and scripted failures of their downloads.
#[derive(Debug, Default)]
struct Outputs {
    /// Bytes of every output file (a PNG padded at its end); `None` = the 67-byte PNG.
    size: Option<usize>,
    /// Width and height of every output image; `None` = 1 × 1.
    dimensions: Option<(u32, u32)>,
    /// The next this many downloads answer 500.
    failing: u32,
}

/// What to answer a request for an output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutputAnswer {
    /// The image, of this many bytes (`None`: the 67-byte PNG).
    Image {
        /// Bytes, padding included (`None`: as the image is).
        size: Option<usize>,
        /// Width and height (`None`: the 1 × 1 PNG).
        dimensions: Option<(u32, u32)>,
    },
    /// Gone (404), as Replicate's outputs are after an hour.
    Gone,
    /// A scripted server error (500).
    Failed,
}

#[derive(Debug, Default)]
struct RateWindow {
    second: u64,
    used: u32,
}

#[derive(Debug, Default)]
struct Counters {
    throttled: u64,
    faults: u64,
    polls: u64,
    cancels: u64,
    output_downloads: u64,
    outputs_gone: u64,
    output_downloads_failed: u64,
    output_requests_with_token: u64,
    webhooks_delivered: u64,
    webhook_attempts_failed: u64,
    webhooks_dropped: u64,
}

#[derive(Debug)]
struct Prediction {
    model: String,
    version: Option<String>,
    input: Value,
    /// Offsets from the mock's epoch.
    created: Duration,
    started: Duration,
    ends: Duration,
    canceled: Option<Duration>,
    failure: Option<String>,
}

/// A prediction's life as the mock sees it at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Processing => "processing",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Canceled => "canceled",
        }
    }
}

impl Prediction {
    fn phase(&self, now: Duration) -> Phase {
        match self.canceled {
            Some(at) if at < self.ends => return Phase::Canceled,
            _ => {}
        }
        if now < self.started {
            Phase::Starting
        } else if now < self.ends {
            Phase::Processing
        } else if self.failure.is_some() {
            Phase::Failed
        } else {
            Phase::Succeeded
        }
    }

    /// When it stopped running (or will): its end, or its cancellation if earlier.
    fn stops(&self) -> Duration {
        self.canceled.map_or(self.ends, |c| c.min(self.ends))
    }
}

/// What the mock has seen, for the readiness suite and tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplicateMockStats {
    /// Predictions created (429s and scripted errors excluded).
    pub created: u64,
    /// Seconds since the mock started at which each prediction was created, in order.
    pub creation_times: Vec<f64>,
    /// Most predictions running (created, not yet final) at the same moment.
    pub max_running: u64,
    /// Predictions running now.
    pub running_now: u64,
    /// Predictions by status now (`starting`, `processing`, `succeeded`, `failed`, `canceled`).
    pub by_status: BTreeMap<String, u64>,
    /// Predictions created per model (`owner/name`, or the version id when created by version).
    pub models: BTreeMap<String, u64>,
    /// Each prediction's `input.prompt` (empty if none), in creation order.
    pub prompts: Vec<String>,
    /// Creations answered 429 by the server-side rate limit or a script.
    pub throttled: u64,
    /// Creations answered with a scripted error status.
    pub faults: u64,
    /// `GET /v1/predictions/{id}` requests.
    pub polls: u64,
    /// Cancel requests.
    pub cancels: u64,
    /// Output files served…
    pub output_downloads: u64,
    /// …requests for outputs already gone (404)…
    pub outputs_gone: u64,
    /// …and requests answered a scripted 500 ([`crate::replicate::ReplicateMock::fail_output_downloads`]).
    pub output_downloads_failed: u64,
    /// Requests for output files that carried an `Authorization` header: output URLs are
    /// public and often on another host, so a client should send its token to none of them.
    pub output_requests_with_token: u64,
    /// Webhooks answered 2xx by the receiver…
    pub webhooks_delivered: u64,
    /// …attempts that got no 2xx (each retried)…
    pub webhook_attempts_failed: u64,
    /// …and webhooks not sent because `drop_webhooks` was set.
    pub webhooks_dropped: u64,
}

impl ReplicateMockStats {
    /// Creations per minute: the inverse of the slope of a least-squares line through the
    /// creation times in order. Unlike first-to-last, one creation held up at either end (a
    /// stall of a shared machine) moves it by about 1 % for 30 creations, not by 5 %.
    pub fn creation_rate_per_min(&self) -> Option<f64> {
        let times = &self.creation_times;
        let n = times.len() as f64;
        if times.len() < 2 {
            return None;
        }
        let mean_index = (n - 1.0) / 2.0;
        let mean_time = times.iter().sum::<f64>() / n;
        let (mut covariance, mut variance) = (0.0, 0.0);
        for (i, t) in times.iter().enumerate() {
            let dx = i as f64 - mean_index;
            covariance += dx * (t - mean_time);
            variance += dx * dx;
        }
        let seconds_per_creation = covariance / variance;
        (seconds_per_creation > 0.0).then(|| 60.0 / seconds_per_creation)
    }
}

/// The answer to a creation request.
pub(super) enum Created {
    /// Created; answer `body` after `delay`, or lose the answer.
    Prediction {
        body: Value,
        delay: Duration,
        lost: Option<LostResponse>,
    },
    Throttled {
        retry_after_secs: Option<u64>,
    },
    Fault(u16),
}

impl MockState {
    pub(super) fn new(config: ReplicateMockConfig, base_url: String) -> Self {
        MockState {
            config: RwLock::new(config),
            base_url,
            epoch: Instant::now(),
            epoch_utc: Utc::now(),
            predictions: Mutex::new(HashMap::new()),
            order: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            window: Mutex::new(RateWindow::default()),
            counters: Mutex::new(Counters::default()),
            served: Mutex::new(HashSet::new()),
            outputs: Mutex::new(Outputs::default()),
            create_bodies: Mutex::new(Vec::new()),
            webhooks: Webhooks::new(),
        }
    }

    pub(super) fn base_url(&self) -> &str {
        &self.base_url
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub(super) fn script(&self, faults: impl IntoIterator<Item = ScriptedFault>) {
        self.script.lock().extend(faults);
    }

    pub(super) fn reconfigure(&self, config: ReplicateMockConfig) {
        *self.config.write() = config;
    }

    pub(super) fn create(&self, model: String, version: Option<String>, input: Value) -> Created {
        let mut failure = None;
        let mut lost = None;
        let mut stalled = false;
        if let Some(fault) = self.script.lock().pop_front() {
            match fault {
                ScriptedFault::Throttle { retry_after_secs } => {
                    self.counters.lock().throttled += 1;
                    return Created::Throttled { retry_after_secs };
                }
                ScriptedFault::Status(code) => {
                    self.counters.lock().faults += 1;
                    return Created::Fault(code);
                }
                ScriptedFault::FailPrediction(error) => failure = Some(error),
                ScriptedFault::LoseResponse(how) => lost = Some(how),
                ScriptedFault::Stall => stalled = true,
                ScriptedFault::Pass => {}
            }
        }
        let config = self.config.read().clone();
        let now = self.now();
        if let Some(limit) = config.rate_limit {
            let mut window = self.window.lock();
            let second = now.as_secs();
            if window.second != second {
                *window = RateWindow { second, used: 0 };
            }
            if window.used >= limit.per_second {
                drop(window);
                self.counters.lock().throttled += 1;
                return Created::Throttled {
                    retry_after_secs: limit.retry_after_header.then_some(1),
                };
            }
            window.used += 1;
        }
        let mut rng = rand::rng();
        let latency = if stalled {
            Duration::from_secs(3600)
        } else {
            sample_latency(&mut rng, config.median_latency, config.latency_sigma)
        };
        if failure.is_none() && rng.random::<f64>() < config.failure_rate {
            failure = Some("Prediction failed: CUDA out of memory (simulated)".to_owned());
        }
        let id = prediction_id(&mut rng);
        let prediction = Prediction {
            model,
            version,
            input,
            created: now,
            started: now + config.start_delay.min(latency),
            ends: now + latency.max(config.start_delay),
            canceled: None,
            failure,
        };
        let body = self.render(&id, &prediction, now);
        {
            let mut predictions = self.predictions.lock();
            self.order.lock().push(id.clone());
            predictions.insert(id, prediction);
        }
        Created::Prediction {
            body,
            delay: config.create_response_delay,
            lost,
        }
    }

    /// A page of predictions, newest first, like `GET /v1/predictions`: the newest if
    /// `before` is `None`, else those created before the one at index `before`. Returns the
    /// shallow items and the index to continue from.
    pub(super) fn list(&self, before: Option<usize>) -> (Vec<Value>, Option<usize>) {
        let page_size = self.config.read().list_page_size.max(1);
        let now = self.now();
        let predictions = self.predictions.lock();
        let order = self.order.lock();
        let end = before.unwrap_or(order.len()).min(order.len());
        let start = end.saturating_sub(page_size);
        let items = order[start..end]
            .iter()
            .rev()
            .filter_map(|id| {
                let p = predictions.get(id)?;
                let mut item = self.render(id, p, now);
                if let Value::Object(fields) = &mut item {
                    for deep in ["input", "output", "logs", "error", "metrics"] {
                        fields.remove(deep);
                    }
                }
                Some(item)
            })
            .collect();
        (items, (start > 0).then_some(start))
    }

    pub(super) fn get(&self, id: &str) -> Option<Value> {
        self.counters.lock().polls += 1;
        let now = self.now();
        let predictions = self.predictions.lock();
        predictions.get(id).map(|p| self.render(id, p, now))
    }

    /// How long until the prediction is final (for `Prefer: wait`); `None` if unknown.
    pub(super) fn remaining(&self, id: &str) -> Option<Duration> {
        let now = self.now();
        let predictions = self.predictions.lock();
        predictions.get(id).map(|p| p.stops().saturating_sub(now))
    }

    /// The prediction as `get` renders it, without counting a poll (for webhooks).
    pub(super) fn peek(&self, id: &str) -> Option<Value> {
        let now = self.now();
        let predictions = self.predictions.lock();
        predictions.get(id).map(|p| self.render(id, p, now))
    }

    pub(super) fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    pub(super) fn drops_webhooks(&self) -> bool {
        self.config.read().drop_webhooks
    }

    pub(super) fn count_webhook(&self, what: WebhookCount) {
        let mut counters = self.counters.lock();
        match what {
            WebhookCount::Delivered => counters.webhooks_delivered += 1,
            WebhookCount::Failed => counters.webhook_attempts_failed += 1,
            WebhookCount::Dropped => counters.webhooks_dropped += 1,
        }
    }

    pub(super) fn cancel(&self, id: &str) -> Option<Value> {
        self.counters.lock().cancels += 1;
        let now = self.now();
        let mut predictions = self.predictions.lock();
        let prediction = predictions.get_mut(id)?;
        if !matches!(
            prediction.phase(now),
            Phase::Succeeded | Phase::Failed | Phase::Canceled
        ) {
            prediction.canceled = Some(now);
        }
        Some(self.render(id, prediction, now))
    }

    fn at(&self, offset: Duration) -> String {
        let at = self.epoch_utc + chrono::Duration::from_std(offset).unwrap_or_default();
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    fn render(&self, id: &str, p: &Prediction, now: Duration) -> Value {
        let phase = p.phase(now);
        let done = matches!(phase, Phase::Succeeded | Phase::Failed | Phase::Canceled);
        let base = &self.base_url;
        let completed = done.then(|| self.at(p.stops()));
        json!({
            "id": id,
            "model": p.model,
            "version": p.version,
            "input": p.input,
            "logs": "",
            "output": (phase == Phase::Succeeded).then(|| json!([format!("{base}/files/{id}.png")])),
            "data_removed": false,
            "error": (phase == Phase::Failed).then(|| p.failure.clone()),
            "status": phase.as_str(),
            "created_at": self.at(p.created),
            "started_at": (now >= p.started).then(|| self.at(p.started)),
            "completed_at": completed,
            "source": "api",
            "urls": {
                "get": format!("{base}/v1/predictions/{id}"),
                "cancel": format!("{base}/v1/predictions/{id}/cancel"),
                "web": format!("{base}/p/{id}"),
            },
            "metrics": if done {
                json!({ "predict_time": p.stops().saturating_sub(p.started).as_secs_f64() })
            } else {
                json!({})
            },
        })
    }

    /// What to answer a request for output `file` now (and counts it); `with_token` says
    /// whether the request carried an `Authorization` header.
    pub(super) fn serve_output(&self, file: &str, with_token: bool) -> OutputAnswer {
        let mut counters = self.counters.lock();
        if with_token {
            counters.output_requests_with_token += 1;
        }
        let mut outputs = self.outputs.lock();
        if outputs.failing > 0 {
            outputs.failing -= 1;
            counters.output_downloads_failed += 1;
            return OutputAnswer::Failed;
        }
        let once = self.config.read().outputs_served_once;
        let gone = once && !self.served.lock().insert(file.to_owned());
        if gone {
            counters.outputs_gone += 1;
            OutputAnswer::Gone
        } else {
            counters.output_downloads += 1;
            OutputAnswer::Image {
                size: outputs.size,
                dimensions: outputs.dimensions,
            }
        }
    }

    /// Every output file from now on has `bytes` bytes (`None`: the 67-byte PNG).
    pub(super) fn set_output_size(&self, bytes: Option<usize>) {
        self.outputs.lock().size = bytes;
    }

    /// Every output image from now on is `width` × `height` (`None`: 1 × 1).
    pub(super) fn set_output_dimensions(&self, dimensions: Option<(u32, u32)>) {
        self.outputs.lock().dimensions = dimensions;
    }

    /// The next `times` output downloads answer 500.
    pub(super) fn fail_output_downloads(&self, times: u32) {
        self.outputs.lock().failing += times;
    }

    /// Keeps a create request's body as it arrived.
    pub(super) fn record_create_body(&self, body: Value) {
        self.create_bodies.lock().push(body);
    }

    /// Every create request's body so far, oldest first.
    pub(super) fn create_bodies(&self) -> Vec<Value> {
        self.create_bodies.lock().clone()
    }

    /// Time on the mock's clock: what [`MockState::stats_since`] takes.
    pub(super) fn mark(&self) -> Duration {
        self.now()
    }

    /// Stats of the predictions created at or after `mark` (counters are since the start).
    pub(super) fn stats_since(&self, mark: Duration) -> ReplicateMockStats {
        let now = self.now();
        let predictions = self.predictions.lock();
        let mut by_status = BTreeMap::new();
        let mut models = BTreeMap::new();
        let mut prompts = Vec::new();
        let mut events = Vec::with_capacity(predictions.len() * 2);
        let mut creation_times = Vec::with_capacity(predictions.len());
        let mut running_now = 0;
        for p in predictions.values().filter(|p| p.created >= mark) {
            *models.entry(p.model.clone()).or_insert(0) += 1;
            let prompt = p
                .input
                .get("prompt")
                .and_then(Value::as_str)
                .unwrap_or_default();
            prompts.push((p.created, prompt.to_owned()));
            let phase = p.phase(now);
            *by_status.entry(phase.as_str().to_owned()).or_insert(0) += 1;
            if matches!(phase, Phase::Starting | Phase::Processing) {
                running_now += 1;
            }
            creation_times.push(p.created.as_secs_f64());
            // Ends sort before starts at the same instant: back-to-back is not overlap.
            events.push((p.created, 1i64));
            events.push((p.stops(), -1i64));
        }
        drop(predictions);
        creation_times.sort_by(f64::total_cmp);
        prompts.sort_by_key(|(created, _)| *created);
        events.sort();
        let (mut running, mut max_running) = (0i64, 0i64);
        for (_, delta) in events {
            running += delta;
            max_running = max_running.max(running);
        }
        let counters = self.counters.lock();
        ReplicateMockStats {
            created: creation_times.len() as u64,
            creation_times,
            max_running: max_running.max(0) as u64,
            running_now,
            by_status,
            models,
            prompts: prompts.into_iter().map(|(_, prompt)| prompt).collect(),
            throttled: counters.throttled,
            faults: counters.faults,
            polls: counters.polls,
            cancels: counters.cancels,
            output_downloads: counters.output_downloads,
            outputs_gone: counters.outputs_gone,
            output_downloads_failed: counters.output_downloads_failed,
            output_requests_with_token: counters.output_requests_with_token,
            webhooks_delivered: counters.webhooks_delivered,
            webhook_attempts_failed: counters.webhook_attempts_failed,
            webhooks_dropped: counters.webhooks_dropped,
        }
    }
}

/// Log-normal around `median`, clamped to [median/10, median×10].
fn sample_latency(rng: &mut impl Rng, median: Duration, sigma: f64) -> Duration {
    if sigma <= 0.0 {
        return median;
    }
    // Box–Muller: one standard normal from two uniforms.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let factor = (sigma * z).exp().clamp(0.1, 10.0);
    median.mul_f64(factor)
}

/// A 26-character lowercase base32 id, as Replicate's look.
fn prediction_id(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..26)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ReplicateMockStats;

    fn rate(creation_times: Vec<f64>) -> Option<f64> {
        ReplicateMockStats {
            creation_times,
            ..ReplicateMockStats::default()
        }
        .creation_rate_per_min()
    }

    #[test]
    fn evenly_spaced_creations_give_their_rate() {
        let every_100_ms: Vec<f64> = (0..31).map(|i| f64::from(i) * 0.1).collect();
        let measured = rate(every_100_ms).unwrap();
        assert!((measured - 600.0).abs() < 1e-6, "{measured}");
    }

    #[test]
    fn one_creation_held_up_at_the_end_moves_the_rate_by_about_one_percent() {
        let mut times: Vec<f64> = (0..31).map(|i| f64::from(i) * 0.1).collect();
        *times.last_mut().unwrap() += 0.15;
        let measured = rate(times).unwrap();
        // First to last would say 30 / 3.15 s = 571/min, 4.8 % off.
        assert!((measured - 600.0).abs() / 600.0 < 0.015, "{measured}");
    }

    #[test]
    fn fewer_than_two_creations_or_no_time_between_them_have_no_rate() {
        assert_eq!(rate(vec![]), None);
        assert_eq!(rate(vec![1.0]), None);
        assert_eq!(rate(vec![1.0, 1.0, 1.0]), None);
    }
}
