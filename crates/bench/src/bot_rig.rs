//! The whole bot for the end-to-end checks: a private store, the engine, the real teloxide
//! dispatcher and delivery task, the Bot API mock with simulated users and the Replicate mock.

use std::sync::Arc;
use std::time::Duration;

use crate::checks::CheckError;
use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::LocalRateLimiter;
use genbot_engine::replicate::{PollPolicy, ReplicateClient};
use genbot_engine::{Engine, EngineConfig};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{TelegramMock, TelegramMockConfig};
use genbot_store::{SqliteStore, Store};
use genbot_telegram::{connect_bot, Front, FrontConfig, SendLimits};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

pub(crate) struct BotRig {
    pub(crate) telegram: TelegramMock,
    pub(crate) front: Front,
    pub(crate) store: Store,
    _replicate: ReplicateMock,
    stop: CancellationToken,
    polling: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Longest a rig's bot may take to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl BotRig {
    pub(crate) async fn start(
        engine: EngineConfig,
        rate_per_min: u32,
        replicate: ReplicateMockConfig,
        front: FrontConfig,
    ) -> Result<BotRig, CheckError> {
        let telegram = TelegramMock::start(TelegramMockConfig::default())
            .await
            .map_err(CheckError::setup("telegram mock"))?;
        let replicate = ReplicateMock::start(replicate)
            .await
            .map_err(CheckError::setup("replicate mock"))?;
        let dir = tempfile::tempdir().map_err(CheckError::setup("temporary directory"))?;
        let store = Store::Sqlite(SqliteStore::open(&dir.path().join("bot.db"), 8)?);
        let users = Users::new(
            store.clone(),
            UserCache::Memory(MemoryCache::new(Duration::from_secs(300), 1_000_000)),
        );
        let client = ReplicateClient::new(
            replicate
                .url()
                .parse()
                .map_err(CheckError::invalid("mock URL"))?,
            Some(&SecretString::from("bench")),
        )?
        .with_poll(PollPolicy {
            initial: Duration::from_millis(50),
            factor: 1.5,
            max: Duration::from_millis(500),
        })
        .with_limiter(Arc::new(LocalRateLimiter::new(rate_per_min, 1)));
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let catalogue = Catalogue::load(None, "flux-schnell")?;
        let engine = Engine::start(users, catalogue, client, engine, Some(tx)).await?;
        let bot = connect_bot(
            &SecretString::from("0:bench"),
            telegram
                .url()
                .parse()
                .map_err(CheckError::invalid("mock URL"))?,
        );
        // Telegram's send pacing lifted: the checks measure the bot, not Telegram's limits
        // (which `genbot serve` keeps).
        let front = Front::new(
            bot,
            engine,
            FrontConfig {
                send_limits: SendLimits::UNLIMITED,
                ..front
            },
        );
        let stop = CancellationToken::new();
        let running = tokio::spawn(genbot_telegram::run::serve_bot(
            front.clone(),
            events,
            genbot_telegram::run::Mode::Polling {
                http: None,
                drop_webhook: false,
            },
            stop.clone(),
            STOP_GRACE,
        ));
        let polling = tokio::spawn(async move {
            if let Ok(Err(e)) = running.await {
                tracing::error!(error = %e, "bench bot stopped");
            }
        });
        Ok(BotRig {
            telegram,
            front,
            store,
            _replicate: replicate,
            stop,
            polling: Some(polling),
            _dir: dir,
        })
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(polling) = self.polling.take() {
            let _ = tokio::time::timeout(STOP_GRACE * 2, polling).await;
        }
    }
}
