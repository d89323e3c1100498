//! The one assembly of genbot's bot: from [`Settings`] to a running bot.
//!
//! [`BotAssembly::from_settings`] builds every part the way `genbot serve` runs them: the store
//! (`DATABASE_URL`, `DB_POOL_SIZE`), the user cache (`REDIS_URL` or in-process, `CACHE_*`), the
//! model catalogue (`MODELS_FILE`, `DEFAULT_MODEL`), the Replicate client with its creation
//! limiter (shared through Redis when `REDIS_URL` is set) and its webhooks
//! (`REPLICATE_WEBHOOK_*`), the engine ([`EngineConfig::from_settings`]) and the Telegram front
//! end ([`FrontConfig::from_settings`]: its send pacer, flood limit, inbox, outbox, progress
//! messages). [`AssembledBot::serve`] then runs it — long polling or a webhook with `/healthz`
//! and `/metrics` — through [`genbot_telegram::run::serve_bot`], with `SHUTDOWN_GRACE_SECONDS`.
//!
//! `genbot serve`, `genbot demo`, the readiness suite's in-process bot and the front end's
//! integration tests all build the bot here, so none of them wires it differently by accident.
//! Where one of them must differ it says so through a named override ([`BotAssembly::with_store`],
//! [`BotAssembly::with_engine`], [`BotAssembly::with_front`], [`BotAssembly::with_poll`],
//! [`BotAssembly::without_send_budget`], [`BotAssembly::with_test_hooks`]); everything not
//! overridden is as configured.
//!
//! This crate owns the wiring only. It must not hold behaviour of its own: what a handler does
//! belongs to `genbot-telegram`, scheduling and limits to `genbot-engine`, SQL to
//! `genbot-store`. It reads no environment (the binary parses [`TestHooks`]' variables) and
//! starts no mocks: tests point the settings' URLs at theirs.

mod parts;
pub mod test_hooks;

use std::time::Duration;

use genbot_config::Settings;
use genbot_engine::replicate::PollPolicy;
use genbot_engine::{Engine, EngineConfig, EngineError, JobEvent};
use genbot_store::{ReplicaIdHold, Store, StoreError};
use genbot_telegram::run::{Mode, RunError};
use genbot_telegram::{connect_bot, Front, FrontConfig, SendLimits};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use test_hooks::TestHooks;

/// Whether the bot keeps Telegram's send budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendBudget {
    /// Telegram's limits as configured (`TELEGRAM_SENDS_PER_SECOND` overall, a chat's and a
    /// group's limits as Telegram documents them): every real deployment.
    Telegram,
    /// No pacing at all ([`SendLimits::UNLIMITED`]): only against a mock, to measure what the
    /// bot itself can handle; such a figure is capacity without Telegram's budget, not what
    /// users would see.
    Lifted,
}

/// Why the bot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// A setting the bot cannot run with (the operator fixes it): the catalogue, `REDIS_URL`,
    /// a token, the Replicate webhook secret. The text names the setting.
    #[error("{0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error("Failed to open the database")]
    Store(#[source] StoreError),
    /// The engine did not start (its restart recovery could not read the database).
    #[error("Failed to start the generation engine")]
    Engine(#[source] EngineError),
}

/// The bot's parts, to be built from the settings with named overrides.
#[derive(Debug)]
pub struct BotAssembly {
    settings: Settings,
    store: Option<Store>,
    engine: Option<EngineConfig>,
    front: Option<FrontConfig>,
    poll: Option<PollPolicy>,
    send_budget: SendBudget,
    hooks: TestHooks,
    sole_replica_id: bool,
}

impl BotAssembly {
    /// The bot as `settings` configure it, overridden in nothing yet.
    pub fn from_settings(settings: &Settings) -> Self {
        BotAssembly {
            settings: settings.clone(),
            store: None,
            engine: None,
            front: None,
            poll: None,
            send_budget: SendBudget::Telegram,
            hooks: TestHooks::default(),
            sole_replica_id: false,
        }
    }

    /// An already-open store instead of connecting to `DATABASE_URL`.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The engine's limits instead of [`EngineConfig::from_settings`].
    pub fn with_engine(mut self, config: EngineConfig) -> Self {
        self.engine = Some(config);
        self
    }

    /// The front end's configuration instead of [`FrontConfig::from_settings`] (start from
    /// that and change what differs).
    pub fn with_front(mut self, config: FrontConfig) -> Self {
        self.front = Some(config);
        self
    }

    /// How often Replicate is polled for a prediction's end instead of the client's default
    /// (a mock's sub-second latency is polled tighter than Replicate's seconds).
    pub fn with_poll(mut self, poll: PollPolicy) -> Self {
        self.poll = Some(poll);
        self
    }

    /// Sends without Telegram's budget ([`SendBudget::Lifted`]), whatever the front end's
    /// configuration says: only against a mock, for figures labelled as capacity without it.
    pub fn without_send_budget(mut self) -> Self {
        self.send_budget = SendBudget::Lifted;
        self
    }

    /// The test hooks to arm (none by default).
    pub fn with_test_hooks(mut self, hooks: TestHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Holds `REPLICA_ID` on PostgreSQL for the built bot's life, and does not start the bot
    /// while another live process holds it (`genbot serve`: two processes with one id would
    /// each take the other's jobs and updates as their own). [`BotAssembly::build_waiting`]
    /// waits for the id, saying so in the log, until it comes free or the stop fires;
    /// [`BotAssembly::build`] tries once and refuses.
    pub fn one_process_per_replica_id(mut self) -> Self {
        self.sole_replica_id = true;
        self
    }

    /// Builds the bot: connects the store, loads the catalogue, starts the engine.
    ///
    /// # Errors
    /// [`AssemblyError::Config`] for a setting the bot cannot run with; the store's or the
    /// engine's failure otherwise.
    pub async fn build(mut self) -> Result<AssembledBot, AssemblyError> {
        let store = match self.store.take() {
            Some(store) => store,
            None => parts::connect(&self.settings)
                .await
                .map_err(AssemblyError::Store)?,
        };
        let replica_id = if self.sole_replica_id {
            match parts::hold_replica_id(&self.settings, &store, None).await {
                Some(hold) => Some(hold),
                None => return Err(parts::replica_id_held(&self.settings)),
            }
        } else {
            None
        };
        self.build_on(store, replica_id).await
    }

    /// As [`BotAssembly::build`], but a PostgreSQL server that cannot be reached yet is waited
    /// for with backoff (saying so in the log) until `stop` fires (then `None`).
    ///
    /// # Errors
    /// As [`BotAssembly::build`]; a bad SQLite path or a failed migration is not waited for.
    pub async fn build_waiting(
        mut self,
        stop: &CancellationToken,
    ) -> Result<Option<AssembledBot>, AssemblyError> {
        let store = match self.store.take() {
            Some(store) => store,
            None => match parts::connect_waiting(&self.settings, stop).await {
                Ok(Some(store)) => store,
                Ok(None) => return Ok(None),
                Err(e) => return Err(AssemblyError::Store(e)),
            },
        };
        let replica_id = if self.sole_replica_id {
            match parts::hold_replica_id(&self.settings, &store, Some(stop)).await {
                Some(hold) => Some(hold),
                None => return Ok(None),
            }
        } else {
            None
        };
        self.build_on(store, replica_id).await.map(Some)
    }

    /// Starts the engine on `store` (after `replica_id` was held, when it is: the engine's
    /// start takes back the jobs running under the id) and the front end over it.
    async fn build_on(
        self,
        store: Store,
        replica_id: Option<ReplicaIdHold>,
    ) -> Result<AssembledBot, AssemblyError> {
        let settings = &self.settings;
        let token = settings.telegram_bot_token.clone().ok_or_else(|| {
            AssemblyError::Config(
                "TELEGRAM_BOT_TOKEN is not set: the bot needs its token from @BotFather".into(),
            )
        })?;
        let (engine, events) = parts::start_engine(
            settings,
            store,
            self.engine
                .unwrap_or_else(|| EngineConfig::from_settings(settings)),
            self.poll,
        )
        .await?;
        let mut front = self
            .front
            .unwrap_or_else(|| FrontConfig::from_settings(settings));
        if self.send_budget == SendBudget::Lifted {
            front.send_limits = SendLimits::UNLIMITED;
        }
        self.hooks.apply(&mut front);
        let bot = connect_bot(&token, settings.telegram_api_url.clone());
        Ok(AssembledBot {
            front: Front::new(bot, engine, front),
            events,
            grace: settings.shutdown_grace,
            send_budget: self.send_budget,
            replica_id,
        })
    }
}

/// A built bot, not yet taking updates.
#[derive(Debug)]
pub struct AssembledBot {
    front: Front,
    events: mpsc::UnboundedReceiver<JobEvent>,
    /// `SHUTDOWN_GRACE_SECONDS`: how long running handlers get after the stop.
    grace: Duration,
    send_budget: SendBudget,
    /// `REPLICA_ID` held on PostgreSQL while the bot lives (see
    /// [`BotAssembly::one_process_per_replica_id`]).
    replica_id: Option<ReplicaIdHold>,
}

impl AssembledBot {
    /// The front end (cheap to clone): its metrics, and through it the engine and the store.
    pub fn front(&self) -> &Front {
        &self.front
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.front.engine()
    }

    /// The store the engine uses.
    pub fn store(&self) -> &Store {
        self.front.engine().store()
    }

    /// Whether sends keep Telegram's budget: what a figure measured on this bot may claim.
    pub fn send_budget(&self) -> SendBudget {
        self.send_budget
    }

    /// Runs the bot in `mode` until `stop` fires, then gives running handlers the grace
    /// period and stops delivery and the engine (see [`genbot_telegram::run::serve_bot`]).
    ///
    /// A held `REPLICA_ID` is watched meanwhile ([`ReplicaIdHold::keep`]): taken again when its
    /// connection ended; when another process took it first, the bot stops at once, without
    /// the graceful stop's releases (they would release the other process's work), and the
    /// result is [`RunError::ReplicaIdTaken`]: the caller must end the process.
    ///
    /// # Errors
    /// As [`genbot_telegram::run::serve_bot`], and [`RunError::ReplicaIdTaken`].
    pub async fn serve(self, mode: Mode, stop: CancellationToken) -> Result<(), RunError> {
        // Held until the bot has stopped, not merely until it starts: the watch below owns it
        // and is dropped (letting the lock go) only after `serve_bot` returned.
        let mut replica_id = self.replica_id.unwrap_or_else(ReplicaIdHold::none);
        let bot = genbot_telegram::run::serve_bot(self.front, self.events, mode, stop, self.grace);
        tokio::pin!(bot);
        tokio::select! {
            ran = &mut bot => ran,
            taken = replica_id.keep(parts::REPLICA_ID_CHECK) => {
                tracing::error!(replica_id = %taken.id, "{taken}");
                // Not the graceful stop: it releases what is filed under the id (running jobs'
                // leases, chat claims, the poller lease), which the process that took the id
                // now holds, and would hand that process's work to a third replica (jobs run
                // twice). Everything this process was doing is filed under the id, so the
                // other took it back at its start: this one ends here, its tasks dropped with
                // the runtime.
                Err(RunError::ReplicaIdTaken(taken))
            }
        }
    }
}
