//! A Replicate-compatible predictions API.
//!
//! Start one in-process with [`ReplicateMock::start`] (binds `127.0.0.1:0`), or serve it on a
//! listener with [`serve`] (`genbot mock replicate --port P`). Point the client at
//! [`ReplicateMock::url`].

mod config;
mod models;
mod routes;
mod state;
mod webhooks;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use config::{LostResponse, ReplicateMockConfig, ScriptedFault, ServerRateLimit};
pub use state::ReplicateMockStats;
pub use webhooks::SentWebhook;

use self::state::MockState;

/// A running mock; stops when dropped.
#[derive(Debug)]
pub struct ReplicateMock {
    state: Arc<MockState>,
    url: String,
    unknown_models: Arc<models::Unknown>,
    clock: crate::clock::ClockSkew,
    _shutdown: oneshot::Sender<()>,
}

impl ReplicateMock {
    /// Starts a mock on a free loopback port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(config: ReplicateMockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(MockState::new(config, url.clone()));
        let unknown_models = Arc::new(models::Unknown::default());
        let clock = crate::clock::ClockSkew::default();
        let app = clock
            .apply(routes::router(state.clone()).merge(models::router(unknown_models.clone())));
        let stop = crate::server::spawn(listener, app, "replicate");
        Ok(ReplicateMock {
            state,
            url,
            unknown_models,
            clock,
            _shutdown: stop,
        })
    }

    /// Base URL to give the client as `REPLICATE_API_URL` (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the mock has seen so far.
    pub fn stats(&self) -> ReplicateMockStats {
        self.state.stats_since(std::time::Duration::ZERO)
    }

    /// Now, on the mock's clock: pass it to [`ReplicateMock::stats_since`] to see only what
    /// happens from here on (one check of several against the same mock).
    pub fn mark(&self) -> std::time::Duration {
        self.state.mark()
    }

    /// Stats of the predictions created since `mark` (creation times stay on the mock's clock;
    /// the counters of polls, throttles and downloads are since the start).
    pub fn stats_since(&self, mark: std::time::Duration) -> ReplicateMockStats {
        self.state.stats_since(mark)
    }

    /// The webhook signing secret (`whsec_…`), as `GET /v1/webhooks/default/secret` answers.
    pub fn webhook_secret(&self) -> String {
        self.state.webhooks().secret()
    }

    /// Every webhook request sent so far, oldest first.
    pub fn sent_webhooks(&self) -> Vec<SentWebhook> {
        self.state.webhooks().sent()
    }

    /// Queues faults answered to the next prediction creations, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = ScriptedFault>) {
        self.state.script(faults);
    }

    /// From now on `GET /v1/models/{owner}/{name}` answers 404 for `reference`
    /// (`owner/name`): a model that does not exist (every other one does).
    pub fn forget_model(&self, reference: &str) {
        self.unknown_models.forget(reference);
    }

    /// Every answer's `Date` header is `seconds` off the real time from now on (a server
    /// whose clock is wrong, or ours seen from it).
    pub fn skew_clock(&self, seconds: i64) {
        self.clock.set(seconds);
    }

    /// Every output file served from now on has `bytes` bytes: a PNG padded at its end
    /// (`None`: the 67-byte PNG). For images too big for a photo, or too big to keep.
    pub fn set_output_size(&self, bytes: Option<usize>) {
        self.state.set_output_size(bytes);
    }

    /// Every output image served from now on is a blank PNG of `width` × `height` pixels
    /// (`None`: 1 × 1): a panorama Telegram refuses as a photo, say.
    pub fn set_output_dimensions(&self, dimensions: Option<(u32, u32)>) {
        self.state.set_output_dimensions(dimensions);
    }

    /// The next `times` requests for output files answer 500 (a CDN having a bad minute).
    pub fn fail_output_downloads(&self, times: u32) {
        self.state.fail_output_downloads(times);
    }

    /// The JSON body of every create request so far (throttled and failed ones too), oldest
    /// first, as the client sent it: `input`, and `webhook` / `webhook_events_filter` when set.
    pub fn create_bodies(&self) -> Vec<serde_json::Value> {
        self.state.create_bodies()
    }

    /// Replaces the latency / failure model for predictions created from now on.
    pub fn reconfigure(&self, config: ReplicateMockConfig) {
        self.state.reconfigure(config);
    }
}

/// Serves the mock on `listener` until `shutdown` completes.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: TcpListener,
    config: ReplicateMockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let url = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(MockState::new(config, url));
    // The same routes as the in-process mock: `genbot doctor` reads /v1/account and /v1/models.
    let app = routes::router(state).merge(models::router(Arc::new(models::Unknown::default())));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
