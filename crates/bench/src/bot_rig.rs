//! The whole bot for the end-to-end checks, built by `genbot serve`'s own assembly from the
//! settings being judged, on private storage (a temporary SQLite file, an in-process cache)
//! and against the Bot API mock with simulated users and the Replicate mock. What differs from
//! the deployment is named where the rig is started (see [`BotRig::start`]).

use std::time::Duration;

use crate::checks::CheckError;
use crate::context::Context;
use genbot_assembly::{BotAssembly, SendBudget};
use genbot_config::{DatabaseUrl, Settings};
use genbot_engine::EngineConfig;
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{TelegramMock, TelegramMockConfig};
use genbot_store::Store;
use genbot_telegram::Front;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

pub(crate) struct BotRig {
    pub(crate) telegram: TelegramMock,
    pub(crate) front: Front,
    pub(crate) store: Store,
    send_budget: SendBudget,
    _replicate: ReplicateMock,
    stop: CancellationToken,
    polling: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Longest a rig's bot may take to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl BotRig {
    /// The bot `settings` configure, moved onto private storage and the mocks, with what the
    /// check changes said by `adjust` (given the rig's settings): the assembly's named
    /// overrides, nothing else.
    pub(crate) async fn start(
        settings: &Settings,
        replicate: ReplicateMockConfig,
        adjust: impl FnOnce(BotAssembly, &Settings) -> BotAssembly,
    ) -> Result<BotRig, CheckError> {
        let telegram = TelegramMock::start(TelegramMockConfig::default())
            .await
            .map_err(CheckError::setup("telegram mock"))?;
        let replicate = ReplicateMock::start(replicate)
            .await
            .map_err(CheckError::setup("replicate mock"))?;
        let dir = tempfile::tempdir().map_err(CheckError::setup("temporary directory"))?;
        let private = private_settings(settings, &dir, &telegram, &replicate)?;
        let bot = adjust(BotAssembly::from_settings(&private), &private)
            .build()
            .await?;
        let front = bot.front().clone();
        let store = bot.store().clone();
        let send_budget = bot.send_budget();
        let stop = CancellationToken::new();
        let running = tokio::spawn(bot.serve(
            genbot_telegram::run::Mode::Polling {
                http: None,
                drop_webhook: false,
            },
            stop.clone(),
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
            send_budget,
            _replicate: replicate,
            stop,
            polling: Some(polling),
            _dir: dir,
        })
    }

    /// What the rig's figures are, by its send budget, for the report: capacity without
    /// Telegram's budget, or answers under it as configured.
    pub(crate) fn budget_fact(&self, ctx: &Context) -> String {
        match self.send_budget {
            SendBudget::Lifted => ctx.text(
                "capacity without Telegram's send budget: the in-process bot sends without pacing and the mock without flood control; what users see under the budget is measured on `genbot serve` (the concurrent-users test's serve_* figures on the embedded default; --bot-cmd \"genbot serve\" elsewhere)",
                "пропускная способность без бюджета отправки Telegram: бот в процессе шлёт без ограничения темпа, мок — без контроля флуда; что видят пользователи под бюджетом, измеряется на `genbot serve` (показатели serve_* теста одновременных пользователей на встроенной конфигурации; в остальных случаях --bot-cmd \"genbot serve\")",
            ),
            SendBudget::Telegram => ctx.text(
                format!("under Telegram's send budget as configured (TELEGRAM_SENDS_PER_SECOND={}, a chat's and a group's limits as Telegram's)", ctx.settings.telegram_sends_per_sec),
                format!("под бюджетом отправки Telegram, как настроено (TELEGRAM_SENDS_PER_SECOND={}, лимиты чата и группы — как у Telegram)", ctx.settings.telegram_sends_per_sec),
            ),
        }
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(polling) = self.polling.take() {
            let _ = tokio::time::timeout(STOP_GRACE * 2, polling).await;
        }
    }
}

/// The engine for a crowd of simulated users: the settings' limits, except the per-user daily
/// cap and the queue's bound, which a crowd sending as fast as the check drives it would meet
/// and which are not what the check measures (the generation-settings tests grade them).
pub(crate) fn crowd_engine(settings: &Settings) -> EngineConfig {
    EngineConfig {
        daily_limit: 1_000_000,
        queue_max: 10_000_000,
        ..EngineConfig::from_settings(settings)
    }
}

/// `settings` with the bot's storage and services moved off the deployment: a fresh SQLite
/// file in `dir` (never the deployment's database: an engine started there would take real
/// users' queued jobs over), the in-process cache and creation limiter (never the deployment's
/// Redis, whose shared limiter is the real account's budget), the mocks' URLs and throwaway
/// tokens, no Replicate webhooks (the mock is polled), the built-in catalogue (the checks'
/// sessions name its models) and the single-process replica id.
/// Every limit, TTL, rate and size stays as configured.
fn private_settings(
    settings: &Settings,
    dir: &tempfile::TempDir,
    telegram: &TelegramMock,
    replicate: &ReplicateMock,
) -> Result<Settings, CheckError> {
    let mut private = settings.clone();
    private.database_url = DatabaseUrl::Sqlite {
        path: dir.path().join("bot.db"),
    };
    private.redis_url = None;
    private.telegram_api_url = telegram
        .url()
        .parse()
        .map_err(CheckError::invalid("mock URL"))?;
    private.telegram_bot_token = Some(SecretString::from("0:bench"));
    private.replicate_api_url = replicate
        .url()
        .parse()
        .map_err(CheckError::invalid("mock URL"))?;
    private.replicate_api_token = Some(SecretString::from("bench"));
    private.replicate_webhook_url = None;
    private.replicate_webhook_secret = None;
    private.models_file = None;
    private.default_model = "flux-schnell".into();
    private.replica_id = "local".into();
    Ok(private)
}
