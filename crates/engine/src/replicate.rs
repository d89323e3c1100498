//! A client for Replicate's predictions API: create, poll, cancel.
//!
//! Every call retries what is safe to retry: 5xx answers and network errors with exponential
//! backoff and full jitter, and 429 after `Retry-After` (Replicate's throttling answer often
//! has none: then backoff again; a throttled create created nothing, so retrying it is safe).
//! A create is different: Replicate has no idempotency key, so a create that may have reached it
//! (timeout after sending, reset, 5xx, unreadable answer) is never resent; it fails with
//! [`ReplicateError::OutcomeUnknown`] and the caller looks the prediction up
//! ([`ReplicateClient::find_created`]).
//! The token goes only into the `Authorization` header; `Debug` and errors never show it.

mod arrivals;
mod error;
pub mod output;
pub mod preflight;
mod retry;
mod types;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use url::Url;

pub use arrivals::{WebhookReceipt, WebhookSettings, WebhookStats};
pub use error::ReplicateError;
pub use retry::RetryPolicy;
pub use types::{Prediction, PredictionPage, PredictionStatus, PredictionSummary};

use crate::catalogue::ModelRef;
use crate::limiter::RateLimiter;

/// How often a running prediction is polled: starting at `initial`, growing by `factor` up to
/// `max`. Small values cost requests; large ones add latency to every generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(250),
            factor: 1.5,
            max: Duration::from_secs(2),
        }
    }
}

/// Replicate's predictions API at a base URL. Clones share the connection pool.
#[derive(Clone)]
pub struct ReplicateClient {
    http: reqwest::Client,
    base: Url,
    auth: Option<HeaderValue>,
    retry: RetryPolicy,
    poll: PollPolicy,
    timeout: Duration,
    limiter: Option<Arc<dyn RateLimiter>>,
    arrivals: Option<Arc<arrivals::Arrivals>>,
    /// 429 answers so far (shared by clones), for `genbot_replicate_throttled_total`.
    throttled: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for ReplicateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicateClient")
            .field("base", &self.base.as_str())
            .field("token", &self.auth.as_ref().map(|_| "***"))
            .field("retry", &self.retry)
            .field("poll", &self.poll)
            .field("webhook", &self.arrivals.as_ref().map(|a| &a.settings))
            .finish()
    }
}

/// Longest a single HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Pages of `GET /v1/predictions` read when looking for a create's prediction.
const MAX_LOOKUP_PAGES: usize = 20;

/// How much earlier than the intent a prediction may look created (Replicate's clock against
/// the database's).
const LOOKUP_SKEW_SECS: i64 = 120;

impl ReplicateClient {
    /// A client for `base` (e.g. `https://api.replicate.com`) authenticating with `token`.
    ///
    /// # Errors
    /// The token cannot be put in a header, or the HTTP client cannot be built.
    pub fn new(base: Url, token: Option<&SecretString>) -> Result<Self, ReplicateError> {
        let auth = token
            .map(|t| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", t.expose_secret()))
                    .map_err(|_| {
                        ReplicateError::Config(
                            "REPLICATE_API_TOKEN is not a valid header value".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Ok::<_, ReplicateError>(value)
            })
            .transpose()?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(256)
            .user_agent(concat!("genbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ReplicateError::Config(e.to_string()))?;
        Ok(ReplicateClient {
            http,
            base,
            auth,
            retry: RetryPolicy::default(),
            poll: PollPolicy::default(),
            timeout: REQUEST_TIMEOUT,
            limiter: None,
            arrivals: None,
            throttled: Arc::default(),
        })
    }

    /// 429 answers received so far, by this client and its clones.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Uses `retry` for failed requests.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Gives up on a single request after `timeout` (default 30 s); a create that times out
    /// has an unknown outcome.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Polls running predictions with `poll`.
    pub fn with_poll(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Waits on `limiter` before every creation attempt, retries included, since Replicate
    /// counts every request against its limit.
    pub fn with_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Asks Replicate to post each prediction's end to `settings.url` (`webhook_events_filter:
    /// ["completed"]`); waits then end at the webhook, with polling every
    /// `settings.reconcile` for webhooks that never come.
    pub fn with_webhooks(mut self, settings: WebhookSettings) -> Self {
        self.arrivals = Some(Arc::new(arrivals::Arrivals::new(settings)));
        self
    }

    /// The webhook settings, when webhooks are on.
    pub fn webhooks(&self) -> Option<&WebhookSettings> {
        self.arrivals.as_ref().map(|a| &a.settings)
    }

    /// Verifies a webhook delivery (headers, body, `now` in unix seconds) and hands its
    /// prediction to the generation waiting for it; one nobody here waits for (another replica
    /// may run its job) is given to `record`, and the delivery counts as handled (a later copy
    /// is a replay) only once `record` succeeded.
    ///
    /// # Errors
    /// Webhooks are off, the delivery is not genuine, or `record` failed
    /// ([`webhook::WebhookError`]).
    pub async fn receive_webhook<R, F>(
        &self,
        headers: &webhook::WebhookHeaders<'_>,
        body: &[u8],
        now: i64,
        record: R,
    ) -> Result<WebhookReceipt, webhook::WebhookError>
    where
        R: FnOnce(Prediction) -> F,
        F: std::future::Future<Output = Result<(), String>>,
    {
        match &self.arrivals {
            Some(arrivals) => arrivals.receive(headers, body, now, record).await,
            None => Err(webhook::WebhookError::NotEnabled),
        }
    }

    /// The predictions this process's generations wait for by webhook (none when webhooks are
    /// off).
    pub(crate) fn waiting_predictions(&self) -> Vec<String> {
        self.arrivals
            .as_ref()
            .map(|a| a.waiting())
            .unwrap_or_default()
    }

    /// Hands a prediction's outcome that another replica received to the wait for it.
    pub(crate) fn relay_outcome(&self, prediction: Prediction) {
        if let Some(arrivals) = &self.arrivals {
            arrivals.relay(prediction);
        }
    }

    /// Webhooks received so far (zeros when webhooks are off).
    pub fn webhook_stats(&self) -> WebhookStats {
        self.arrivals
            .as_ref()
            .map(|a| a.stats())
            .unwrap_or_default()
    }

    /// The account's default webhook signing secret (`GET /v1/webhooks/default/secret`).
    ///
    /// # Errors
    /// The request failed, or the answer holds no valid `whsec_…` key.
    pub async fn default_webhook_secret(&self) -> Result<webhook::WebhookSecret, ReplicateError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            key: String,
        }
        let url = self.endpoint("v1/webhooks/default/secret")?;
        let answer: Answer = self.call_url(Method::GET, url, None, false).await?;
        webhook::WebhookSecret::parse(&answer.key).map_err(ReplicateError::Decode)
    }

    /// The rate limiter in use, if any.
    pub fn limiter(&self) -> Option<&Arc<dyn RateLimiter>> {
        self.limiter.as_ref()
    }

    /// Creates a prediction of `model` with `input`.
    ///
    /// # Errors
    /// [`ReplicateError::Rejected`] for a 4xx (bad input, unknown model, no credit at
    /// Replicate): permanent. [`ReplicateError::Throttled`], [`ReplicateError::Server`] or
    /// [`ReplicateError::Network`] when retries ran out.
    pub async fn create_prediction(
        &self,
        model: &ModelRef,
        input: &Value,
    ) -> Result<Prediction, ReplicateError> {
        let (path, mut body) = match model {
            ModelRef::Official { owner, name } => (
                format!("v1/models/{owner}/{name}/predictions"),
                json!({ "input": input }),
            ),
            ModelRef::Version(version) => (
                "v1/predictions".to_owned(),
                json!({ "version": version, "input": input }),
            ),
        };
        if let Some(settings) = self.webhooks() {
            body["webhook"] = json!(settings.url.as_str());
            body["webhook_events_filter"] = json!(["completed"]);
        }
        self.call(Method::POST, &path, Some(&body), true).await
    }

    /// One page of the account's predictions, newest first: the first page, or the page at
    /// `cursor` (a previous page's `next`).
    ///
    /// # Errors
    /// As [`ReplicateClient::get_prediction`].
    pub async fn list_predictions(
        &self,
        cursor: Option<&str>,
    ) -> Result<PredictionPage, ReplicateError> {
        let url = match cursor {
            Some(next) => Url::parse(next)
                .map_err(|e| ReplicateError::Decode(format!("bad next cursor {next}: {e}")))?,
            None => self.endpoint("v1/predictions")?,
        };
        self.call_url(Method::GET, url, None, false).await
    }

    /// Predictions of `model` created with exactly `input` at or after `since` (less a margin
    /// for clock skew), oldest first: what a create whose outcome is unknown may have made.
    /// Walks the list newest first through at most `MAX_LOOKUP_PAGES` pages and confirms each
    /// candidate by its full input.
    ///
    /// # Errors
    /// A list or get request failed after its retries: the outcome is still unknown.
    pub async fn find_created(
        &self,
        model: &ModelRef,
        input: &Value,
        since: DateTime<Utc>,
    ) -> Result<Vec<Prediction>, ReplicateError> {
        let oldest = since - chrono::Duration::seconds(LOOKUP_SKEW_SECS);
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LOOKUP_PAGES {
            let page = self.list_predictions(cursor.as_deref()).await?;
            let mut reached_older = page.results.is_empty();
            for item in &page.results {
                if item.created_at < oldest {
                    reached_older = true;
                    continue;
                }
                let same_model = match model {
                    ModelRef::Official { owner, name } => {
                        item.model.as_deref() == Some(&format!("{owner}/{name}"))
                    }
                    ModelRef::Version(version) => item.version.as_deref() == Some(version),
                };
                if !same_model {
                    continue;
                }
                let full = self.get_prediction(&item.id).await?;
                if full.input.as_ref() == Some(input) {
                    found.push(full);
                }
            }
            match page.next {
                Some(next) if !reached_older => cursor = Some(next),
                _ => break,
            }
        }
        found.reverse();
        Ok(found)
    }

    /// The prediction's current state.
    ///
    /// # Errors
    /// As [`ReplicateClient::create_prediction`]; an unknown id is `Rejected` with 404.
    pub async fn get_prediction(&self, id: &str) -> Result<Prediction, ReplicateError> {
        self.call(Method::GET, &format!("v1/predictions/{id}"), None, false)
            .await
    }

    /// The output image at `url`, fetched without the token ([`output::download`]).
    ///
    /// # Errors
    /// As [`output::download`].
    pub async fn download_output(
        &self,
        url: &str,
    ) -> Result<output::OutputImage, output::DownloadError> {
        output::download(&self.http, url).await
    }

    /// Asks Replicate to cancel the prediction.
    ///
    /// # Errors
    /// As [`ReplicateClient::get_prediction`].
    pub async fn cancel_prediction(&self, id: &str) -> Result<Prediction, ReplicateError> {
        self.call(
            Method::POST,
            &format!("v1/predictions/{id}/cancel"),
            None,
            false,
        )
        .await
    }

    /// Polls until the prediction is final or `deadline` passes (then it is canceled and
    /// [`ReplicateError::TimedOut`] returned).
    ///
    /// # Errors
    /// As [`ReplicateClient::get_prediction`], plus `TimedOut`.
    pub async fn wait_for(
        &self,
        prediction: Prediction,
        deadline: Instant,
    ) -> Result<Prediction, ReplicateError> {
        if prediction.status.is_final() {
            return Ok(prediction);
        }
        // With webhooks, the end arrives by webhook; polling only reconciles missed ones.
        let mut arrival = self.arrivals.as_ref().map(|a| a.wait(&prediction.id));
        let poll = match &self.arrivals {
            Some(arrivals) => PollPolicy {
                initial: arrivals.settings.reconcile,
                factor: 1.0,
                max: arrivals.settings.reconcile,
            },
            None => self.poll,
        };
        let mut current = prediction;
        let mut delay = poll.initial;
        while !current.status.is_final() {
            let now = Instant::now();
            if now >= deadline {
                let id = current.id.clone();
                if let Err(e) = self.cancel_prediction(&id).await {
                    tracing::warn!(prediction = %id, error = %e, "cancel after timeout failed");
                }
                return Err(ReplicateError::TimedOut { prediction: id });
            }
            let pause = tokio::time::sleep(delay.min(deadline - now));
            match arrival.as_mut() {
                Some(wait) => tokio::select! {
                    arrived = &mut wait.arrived => match arrived {
                        Ok(done) => return Ok(done),
                        // Never dropped while registered; poll on if it ever is.
                        Err(_) => arrival = None,
                    },
                    () = pause => {
                        current = self.get_prediction(&current.id).await?;
                    }
                },
                None => {
                    pause.await;
                    current = self.get_prediction(&current.id).await?;
                }
            }
            delay = delay.mul_f64(poll.factor).min(poll.max);
        }
        Ok(current)
    }

    fn endpoint(&self, path: &str) -> Result<Url, ReplicateError> {
        self.base
            .join(path)
            .map_err(|e| ReplicateError::Config(format!("bad URL for {path}: {e}")))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        is_create: bool,
    ) -> Result<Prediction, ReplicateError> {
        let url = self.endpoint(path)?;
        self.call_url(method, url, body, is_create).await
    }

    async fn call_url<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        is_create: bool,
    ) -> Result<T, ReplicateError> {
        let path = url.path().to_owned();
        let path = path.as_str();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if is_create {
                if let Some(limiter) = &self.limiter {
                    limiter.acquire().await;
                }
            }
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(self.timeout);
            if let Some(auth) = &self.auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return response.json::<T>().await.map_err(|e| {
                            let e = error_chain(&e);
                            if is_create {
                                ReplicateError::OutcomeUnknown(format!("unreadable answer: {e}"))
                            } else {
                                ReplicateError::Decode(e)
                            }
                        });
                    }
                    let retry_after = retry_after(response.headers());
                    let detail = detail(response.text().await.unwrap_or_default());
                    match status {
                        StatusCode::TOO_MANY_REQUESTS => {
                            self.throttled
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            ReplicateError::Throttled {
                                retry_after,
                                detail,
                            }
                        }
                        s if s.is_server_error() && is_create => {
                            return Err(ReplicateError::OutcomeUnknown(format!(
                                "server error {}: {detail}",
                                s.as_u16()
                            )))
                        }
                        s if s.is_server_error() => ReplicateError::Server {
                            status: s.as_u16(),
                            detail,
                        },
                        s => {
                            return Err(ReplicateError::Rejected {
                                status: s.as_u16(),
                                detail,
                            })
                        }
                    }
                }
                // Refused before anything was sent: safe to retry even a create.
                Err(e) if e.is_connect() => ReplicateError::Network(error_chain(&e)),
                Err(e) if is_create => return Err(ReplicateError::OutcomeUnknown(error_chain(&e))),
                Err(e) => ReplicateError::Network(error_chain(&e)),
            };
            if attempt >= self.retry.max_attempts {
                return Err(failure);
            }
            let wait = match &failure {
                ReplicateError::Throttled {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => self.retry.backoff(attempt),
            };
            tracing::debug!(%method, path, attempt, ?wait, error = %failure, "replicate request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(300.0)))
}

/// Replicate's error bodies carry `detail`; fall back to the raw text, shortened.
fn detail(body: String) -> String {
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// The error and its causes on one line (reqwest's top-level message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // reqwest names the request's URL, which carries REPLICATE_API_URL's credentials if any.
    genbot_config::redact_urls_in(&text)
}
