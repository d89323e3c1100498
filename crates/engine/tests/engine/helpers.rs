//! `spawn_engine()`: a fresh SQLite store, an in-process cache, the built-in catalogue and a
//! Replicate mock on a loopback port, wired as the bot wires them.

use std::sync::Arc;
use std::time::Duration;

use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::LocalRateLimiter;
use genbot_engine::replicate::{PollPolicy, ReplicateClient, RetryPolicy};
use genbot_engine::{Engine, EngineConfig, GenerationRequest, JobEvent, Submitted};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_store::{JobId, NewUser, SqliteStore, Store, UserId};
use secrecy::SecretString;
use serde_json::Map;
use tokio::sync::mpsc;

pub(crate) struct TestApp {
    pub(crate) engine: Engine,
    pub(crate) mock: Arc<ReplicateMock>,
    pub(crate) events: mpsc::UnboundedReceiver<JobEvent>,
    pub(crate) store: Store,
    pub(crate) settings: TestSettings,
    _dir: Arc<tempfile::TempDir>,
}

#[derive(Debug, Clone)]
pub(crate) struct TestSettings {
    pub(crate) config: EngineConfig,
    pub(crate) rate_per_min: u32,
}

impl Default for TestSettings {
    fn default() -> Self {
        TestSettings {
            config: EngineConfig {
                max_concurrent: 10,
                per_user: 10,
                daily_limit: 1000,
                queue_max: 1000,
                timeout: Duration::from_secs(30),
                max_prompt_chars: 1000,
                replica: genbot_engine::ReplicaConfig::single_process(),
            },
            rate_per_min: 600_000,
        }
    }
}

pub(crate) fn client(mock: &ReplicateMock, rate_per_min: u32) -> ReplicateClient {
    ReplicateClient::new(
        mock.url().parse().unwrap(),
        Some(&SecretString::from("r8_test_token")),
    )
    .unwrap()
    .with_poll(PollPolicy {
        initial: Duration::from_millis(20),
        factor: 1.5,
        max: Duration::from_millis(100),
    })
    .with_retry(RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    })
    .with_limiter(Arc::new(LocalRateLimiter::new(rate_per_min, 1)))
    .with_request_timeout(Duration::from_secs(1))
}

pub(crate) async fn spawn_engine(settings: TestSettings, mock: ReplicateMockConfig) -> TestApp {
    let mock = Arc::new(ReplicateMock::start(mock).await.unwrap());
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("engine.db"), 4).unwrap());
    start_on(store, mock, dir, settings).await
}

/// Another engine (a second replica, with its own settings) on the same store and mock.
pub(crate) async fn replica(app: &TestApp, settings: TestSettings) -> TestApp {
    start_on(
        app.store.clone(),
        app.mock.clone(),
        app._dir.clone(),
        settings,
    )
    .await
}

/// A new engine on an existing store and mock (a restart).
pub(crate) async fn restart(app: &TestApp) -> TestApp {
    start_on(
        app.store.clone(),
        app.mock.clone(),
        app._dir.clone(),
        app.settings.clone(),
    )
    .await
}

async fn start_on(
    store: Store,
    mock: Arc<ReplicateMock>,
    dir: Arc<tempfile::TempDir>,
    settings: TestSettings,
) -> TestApp {
    let users = Users::new(
        store.clone(),
        UserCache::Memory(MemoryCache::new(Duration::from_secs(60), 10_000)),
    );
    let (tx, events) = mpsc::unbounded_channel();
    let engine = Engine::start(
        users,
        Catalogue::load(None, "flux-schnell").unwrap(),
        client(&mock, settings.rate_per_min),
        settings.config.clone(),
        Some(tx),
    )
    .await
    .unwrap();
    TestApp {
        engine,
        mock,
        events,
        store,
        settings,
        _dir: dir,
    }
}

impl TestApp {
    pub(crate) async fn register(&self, id: i64, credits: i64) {
        self.engine
            .users()
            .upsert(NewUser {
                id: UserId(id),
                username: None,
                language: None,
                initial_credits: credits,
            })
            .await
            .unwrap();
    }

    pub(crate) async fn submit(&self, user: i64, prompt: &str) -> Submitted {
        self.engine
            .submit(request(user, prompt))
            .await
            .unwrap_or_else(|e| panic!("submit for {user} refused: {e}"))
    }

    pub(crate) async fn credits(&self, user: i64) -> i64 {
        self.store
            .get_user(UserId(user))
            .await
            .unwrap()
            .unwrap()
            .credits
    }

    /// Collects events until `n` jobs reached a final state (or 30 s pass: a failure).
    pub(crate) async fn finished(&mut self, n: usize) -> Vec<JobEvent> {
        let mut seen = Vec::new();
        let mut finals = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while finals < n {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("only {finals} of {n} jobs finished: {seen:?}"))
                .unwrap();
            if !matches!(event, JobEvent::Started { .. }) {
                finals += 1;
            }
            seen.push(event);
        }
        seen
    }

    /// Waits for `n` Started events, returning the events seen.
    pub(crate) async fn started(&mut self, n: usize) -> Vec<JobEvent> {
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|e| matches!(e, JobEvent::Started { .. }))
            .count()
            < n
        {
            let event = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("jobs did not start")
                .unwrap();
            seen.push(event);
        }
        seen
    }
}

pub(crate) fn request(user: i64, prompt: &str) -> GenerationRequest {
    GenerationRequest {
        user: UserId(user),
        prompt: prompt.into(),
        model: None,
        params: Map::new(),
        source_update: None,
        reply: None,
    }
}

pub(crate) fn job_of(event: &JobEvent) -> JobId {
    match event {
        JobEvent::Started { job, .. }
        | JobEvent::Succeeded { job, .. }
        | JobEvent::Failed { job, .. } => *job,
    }
}
