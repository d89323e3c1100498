//! A private engine for the generation-settings checks: its own temporary SQLite store,
//! in-process cache and Replicate mock.
//!
//! Never the deployment's database: an engine started there would pick up real users' queued
//! jobs on start (restart recovery) and run them against the mock.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::checks::CheckError;
use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::{LocalRateLimiter, RateLimiter};
use genbot_engine::replicate::webhook::WebhookSecret;
use genbot_engine::replicate::{PollPolicy, ReplicateClient, WebhookSettings};
use genbot_engine::{
    Engine, EngineConfig, GenerationRequest, JobEvent, ReplicaConfig, SubmitError, Submitted,
};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_store::{NewUser, SqliteStore, Store, UserId};
use secrecy::SecretString;
use tokio::sync::mpsc;

pub(crate) struct Rig {
    pub(crate) engine: Engine,
    pub(crate) mock: Arc<ReplicateMock>,
    pub(crate) events: mpsc::UnboundedReceiver<JobEvent>,
    pub(crate) store: Store,
    config: EngineConfig,
    limiter: Arc<dyn RateLimiter>,
    dir: Arc<tempfile::TempDir>,
    /// Predictions report their end by signed webhook to the receiver below, not by polling.
    webhooks: bool,
    /// Stops the rig's webhook receiver when the rig goes.
    _receiver: Option<tokio_util::sync::DropGuard>,
}

/// How often the rig's engine still polls while webhooks are on (the bot's reconciler).
const RECONCILE: Duration = Duration::from_secs(5);

/// Polls tight enough that the checks measure the limits, not the polling.
const POLL: PollPolicy = PollPolicy {
    initial: Duration::from_millis(25),
    factor: 1.5,
    max: Duration::from_millis(100),
};

impl Rig {
    /// A rig whose engine limits creations with a [`LocalRateLimiter`] of `rate_per_min`.
    pub(crate) async fn start(
        config: EngineConfig,
        rate_per_min: u32,
        mock: ReplicateMockConfig,
    ) -> Result<Rig, CheckError> {
        Rig::start_with(
            config,
            Arc::new(LocalRateLimiter::new(rate_per_min, 1)),
            mock,
        )
        .await
    }

    /// A rig whose engine limits creations with `limiter`.
    pub(crate) async fn start_with(
        config: EngineConfig,
        limiter: Arc<dyn RateLimiter>,
        mock: ReplicateMockConfig,
    ) -> Result<Rig, CheckError> {
        Rig::start_full(config, limiter, mock, false).await
    }

    /// As [`Rig::start`], with predictions ending by signed webhook (`webhooks`) or by polling.
    pub(crate) async fn start_hooked(
        config: EngineConfig,
        rate_per_min: u32,
        mock: ReplicateMockConfig,
        webhooks: bool,
    ) -> Result<Rig, CheckError> {
        Rig::start_full(
            config,
            Arc::new(LocalRateLimiter::new(rate_per_min, 1)),
            mock,
            webhooks,
        )
        .await
    }

    async fn start_full(
        config: EngineConfig,
        limiter: Arc<dyn RateLimiter>,
        mock: ReplicateMockConfig,
        webhooks: bool,
    ) -> Result<Rig, CheckError> {
        let mock = Arc::new(
            ReplicateMock::start(mock)
                .await
                .map_err(CheckError::setup("replicate mock"))?,
        );
        let dir = Arc::new(tempfile::tempdir().map_err(CheckError::setup("temporary directory"))?);
        let store = Store::Sqlite(SqliteStore::open(&dir.path().join("rig.db"), 4)?);
        Rig::on(store, mock, dir, config, limiter, webhooks).await
    }

    async fn on(
        store: Store,
        mock: Arc<ReplicateMock>,
        dir: Arc<tempfile::TempDir>,
        config: EngineConfig,
        limiter: Arc<dyn RateLimiter>,
        webhooks: bool,
    ) -> Result<Rig, CheckError> {
        let client = ReplicateClient::new(
            mock.url()
                .parse()
                .map_err(CheckError::invalid("mock URL"))?,
            Some(&SecretString::from("bench")),
        )?
        .with_poll(POLL)
        .with_limiter(limiter.clone());
        let receiver = if webhooks {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(CheckError::setup("webhook receiver"))?;
            let address = listener
                .local_addr()
                .map_err(CheckError::setup("webhook receiver"))?;
            Some((listener, address))
        } else {
            None
        };
        let client = match &receiver {
            Some((_, address)) => client.with_webhooks(WebhookSettings {
                url: format!("http://{address}/replicate/webhook")
                    .parse()
                    .map_err(CheckError::invalid("webhook URL"))?,
                secret: WebhookSecret::parse(&mock.webhook_secret())
                    .map_err(CheckError::invalid("webhook secret"))?,
                reconcile: RECONCILE,
            }),
            None => client,
        };
        let catalogue = Catalogue::load(None, "flux-schnell")?;
        let (engine, events) =
            start_engine(store.clone(), catalogue, client, config.clone()).await?;
        let receiver = receiver.map(|(listener, _)| {
            let stop = tokio_util::sync::CancellationToken::new();
            let app = genbot_telegram::run::replicate_webhook_router(&engine);
            let stopped = stop.clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await;
            });
            stop.drop_guard()
        });
        Ok(Rig {
            engine,
            mock,
            events,
            store,
            config,
            limiter,
            dir,
            webhooks,
            _receiver: receiver,
        })
    }

    /// Stops this engine and starts a new one on the same store and mock (a restart).
    pub(crate) async fn restart(self) -> Result<Rig, CheckError> {
        self.engine.shutdown().await;
        Rig::on(
            self.store,
            self.mock,
            self.dir,
            self.config,
            self.limiter,
            self.webhooks,
        )
        .await
    }

    pub(crate) async fn register(&self, ids: Range<i64>) -> Result<(), CheckError> {
        for id in ids {
            self.engine
                .users()
                .upsert(NewUser {
                    id: UserId(id),
                    username: None,
                    language: None,
                    initial_credits: 1_000_000,
                })
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn submit(&self, user: i64, prompt: &str) -> Result<Submitted, SubmitError> {
        self.engine
            .submit(GenerationRequest {
                user: UserId(user),
                prompt: prompt.to_owned(),
                model: None,
                params: Default::default(),
                source_update: None,
                reply: None,
            })
            .await
    }

    /// Collects events until `n` jobs are final or `patience` passes.
    pub(crate) async fn finals(&mut self, n: usize, patience: Duration) -> Vec<JobEvent> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut seen = Vec::new();
        let mut finals = 0;
        while finals < n {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    if !matches!(event, JobEvent::Started { .. }) {
                        finals += 1;
                    }
                    seen.push(event);
                }
                _ => break,
            }
        }
        seen
    }
}

/// An engine on `store` with an in-process user cache, reporting its events.
pub(crate) async fn start_engine(
    store: Store,
    catalogue: Catalogue,
    client: ReplicateClient,
    config: EngineConfig,
) -> Result<(Engine, mpsc::UnboundedReceiver<JobEvent>), CheckError> {
    let users = Users::new(
        store,
        UserCache::Memory(MemoryCache::new(Duration::from_secs(300), 100_000)),
    );
    let (tx, events) = mpsc::unbounded_channel();
    let engine = Engine::start(users, catalogue, client, config, Some(tx)).await?;
    Ok((engine, events))
}

/// Engine limits for a check: the settings' own, with the daily limit and queue out of the way.
pub(crate) fn engine_config(max_concurrent: u32, per_user: u32, queue_max: u32) -> EngineConfig {
    EngineConfig {
        max_concurrent,
        per_user,
        daily_limit: 1_000_000,
        queue_max,
        timeout: Duration::from_secs(120),
        max_prompt_chars: 1000,
        replica: ReplicaConfig::single_process(),
    }
}
