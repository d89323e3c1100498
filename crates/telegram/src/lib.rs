//! genbot's Telegram front end.
//!
//! [`Front`] turns updates into engine calls and engine events into messages. The modules read
//! top-down as the path an update takes:
//!
//! ```text
//! intake    run (long polling; start, stop, /healthz, /metrics) · webhook (axum,
//!    │      secret checked) · http_serve (header-read timeout, connection cap)
//!    ▼
//! inbox     inbox (recorded, replayed after a crash) · claims (one replica per chat)
//!    │      flood (per-user limit) · backlog (per-chat shedding)
//!    ▼
//! router    router: the update's kind, command (command::Input, GroupInput) or
//!    │      button (shared::buttons::Button) → exactly one feature function,
//!    │      run isolated (isolation: panics, retries, dead letters)
//!    ▼
//! features  features::{help, models, balance, prompt, settings, rerun, img2img, groups,
//!    │      payments, broadcast, admin, membership}: one module per feature, none
//!    │      importing another or the router
//!    ▼
//! shared    shared::{ids, account, submit, reply, buttons} · texts · command
//!    ▼
//! outbox    delivery (engine events → queue messages kept current) · outbox (each result
//!           delivered once) · pacing (Telegram's send limits, 429s waited out)
//! ```
//!
//! A handler never waits for a generation: it submits the job, answers with the queue position
//! and returns; the result comes through the outbox. No feature names another feature or the
//! router, the shared layer names neither, and below the router nothing names a feature but
//! `run`, which starts the broadcaster (`tests/layers.rs` reads the sources to hold them to it).
//! [`Front`], at the crate root, is the state every layer shares. This crate knows Telegram and
//! the engine's public API, nothing of SQL or Replicate.

// User text is any Unicode: a byte-index slice of it can cut a character in half and panic.
#![deny(clippy::string_slice)]

mod backlog;
mod claims;
mod command;
pub mod delivery;
mod dispatch;
mod features;
mod flood;
pub mod http_serve;
pub mod inbox;
mod isolation;
mod keyed;
mod metrics;
mod outbox;
mod pacing;
mod router;
pub mod run;
mod shared;
mod texts;
pub mod webhook;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use genbot_engine::Engine;
use genbot_store::JobId;
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use teloxide::types::{ChatId, MessageId};
use teloxide::Bot;

pub use isolation::{install_panic_hook, RETRIED_ATTEMPTS};
pub use metrics::Metrics;
pub use pacing::SendLimits;
pub use texts::Lang;

/// The Bot API client the front end uses (sends go through [`pacing`]).
pub type BotApi = Bot;

/// Creates the Bot API client for `token` at `api_url` (Telegram's, a local Bot API server or a
/// mock).
pub fn connect_bot(token: &SecretString, api_url: url::Url) -> BotApi {
    Bot::new(token.expose_secret()).set_api_url(api_url)
}

/// How the front end behaves.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// `ADMIN_IDS`: who may use `/stats`, `/refund`, `/ban`, `/unban` and `/broadcast`.
    pub admin_ids: Vec<i64>,
    /// `STARS_PACKAGES`: what `/buy` sells (empty: nothing).
    pub stars_packages: Vec<genbot_config::StarsPackage>,
    /// Credits a new user starts with.
    pub initial_credits: i64,
    /// Telegram's send limits (lift them only against a mock).
    pub send_limits: SendLimits,
    /// Updates one user may send per second before the rest are skipped…
    pub user_updates_per_sec: u32,
    /// …after a burst of this many.
    pub user_burst: u32,
    /// A replica's claim on a chat (the right to handle its updates) lapses when not renewed
    /// this long, and another replica takes the chat over (that replica is gone); `genbot serve`
    /// uses `JOB_LEASE_SECONDS`, the same liveness bound as for running jobs.
    pub inbox_takeover_after: std::time::Duration,
    /// Every message handler first waits this long. Zero in production: a deliberately slowed
    /// build for the suite's own tests (`GENBOT_TEST_SLOW_HANDLERS_MS`, a test hook), so that
    /// `bench compare` can be shown to catch a regression.
    pub handler_delay: std::time::Duration,
    /// Every update received on the webhook waits this long before it is recorded. Zero in
    /// production: the fault tests' window for killing a replica between receiving an update
    /// and recording it (`GENBOT_TEST_HOLD_WEBHOOK_UPDATES_MS`, a test hook).
    pub intake_delay: std::time::Duration,
    /// A message whose text is exactly this makes its handler panic. `None` in production: the
    /// isolation's own tests (a handler that keeps panicking, and what becomes of its update;
    /// `GENBOT_TEST_POISON_TEXT`, a test hook, for the real binary's).
    pub poison: Option<String>,
}

impl FrontConfig {
    /// Credits a new user starts with unless `genbot serve --initial-credits` says otherwise.
    pub const DEFAULT_INITIAL_CREDITS: i64 = 10;

    /// The front end as the settings configure it: `ADMIN_IDS`, `STARS_PACKAGES`, Telegram's
    /// send limits with `TELEGRAM_SENDS_PER_SECOND` overall, and `JOB_LEASE_SECONDS` as the
    /// inbox's takeover bound. What no setting names keeps [`FrontConfig::default`]'s value.
    pub fn from_settings(settings: &genbot_config::Settings) -> Self {
        FrontConfig {
            admin_ids: settings.admin_ids.clone(),
            stars_packages: settings.stars_packages.clone(),
            send_limits: SendLimits {
                overall_per_sec: settings.telegram_sends_per_sec,
                ..SendLimits::TELEGRAM
            },
            inbox_takeover_after: settings.job_lease,
            ..FrontConfig::default()
        }
    }
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            admin_ids: Vec::new(),
            stars_packages: Vec::new(),
            initial_credits: FrontConfig::DEFAULT_INITIAL_CREDITS,
            send_limits: SendLimits::TELEGRAM,
            user_updates_per_sec: 2,
            user_burst: 10,
            inbox_takeover_after: inbox::STALE_AFTER,
            handler_delay: std::time::Duration::ZERO,
            intake_delay: std::time::Duration::ZERO,
            poison: None,
        }
    }
}

/// What the front end knows of a job's queue-position message. The handler that sends the
/// message and the delivery task that hears the job's events race; whichever comes second
/// finds the other's mark here and does the right thing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// The message was sent; edit it as the job moves.
    Waiting(Waiting),
    /// The job started before its message was recorded (or it has none), at this moment.
    Started(std::time::Instant),
    /// The job finished before its message was recorded (or it has none), at this moment.
    Finished(std::time::Instant),
}

/// A queue-position message kept current while its job waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    pub(crate) chat: ChatId,
    /// `None` while the message is put off (the send budget was short when the prompt came):
    /// a refresh sends it while the job still waits, and never once it has started.
    pub(crate) message: Option<MessageId>,
    pub(crate) lang: Lang,
    pub(crate) position: usize,
    /// The message was edited (or an edit is on its way): a job gets one progress message in
    /// all, so it costs at most three sends (queue message, one progress message, result).
    pub(crate) edited: bool,
    /// When the message was sent: one whose job left the queue long ago is forgotten (another
    /// replica ran it, and no event of it comes here).
    pub(crate) sent: std::time::Instant,
}

/// The front end's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Front {
    inner: Arc<FrontInner>,
}

struct FrontInner {
    bot: BotApi,
    engine: Engine,
    config: FrontConfig,
    metrics: Metrics,
    pacer: pacing::Pacer,
    waiting: Mutex<HashMap<JobId, Slot>>,
    /// Per-user update limit: one user's flood is dropped at intake, costing others nothing
    /// (see [`flood`]).
    flood: DefaultKeyedRateLimiter<i64>,
    /// Users told to slow down, so each flood gets one warning, not one per skipped message.
    warned: Mutex<HashMap<i64, std::time::Instant>>,
    /// Whether the intake is in or just after a database outage (see [`flood::Intake`]).
    intake: Mutex<flood::Intake>,
    /// Updates handled since the inbox was last told (written in batches).
    handled: Mutex<Vec<i64>>,
    /// The bot's own user (`getMe`), asked once: groups address it by username.
    me: tokio::sync::OnceCell<teloxide::types::User>,
    /// Wakes the broadcaster when an admin starts a broadcast.
    broadcasts: tokio::sync::Notify,
    /// Failed attempts per update in this process: (panics, transient failures).
    attempts: Mutex<HashMap<i64, (u32, u32)>>,
    /// Updates taken from the inbox (replayed at start, swept from a gone replica) and not yet
    /// started: their attempt is counted as they start, and they are never shed.
    replayed: Mutex<std::collections::HashSet<i64>>,
    /// Updates to try again, put back in front of the dispatcher by the listener.
    retries: tokio::sync::mpsc::UnboundedSender<teloxide::types::Update>,
    retried: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<teloxide::types::Update>>>,
    /// Updates passed to the dispatcher and not yet handled, per chat (see [`backlog`]).
    backlog: Mutex<HashMap<i64, usize>>,
    /// Chats told their backlog was shed.
    backlog_told: backlog::OncePer,
    /// Groups answered `/help` (once a minute: their budget is kept for results).
    group_help: backlog::OncePer,
    /// Members answered in a group (a refusal, a how-to): once a minute each, so one member
    /// cannot spend the group's 20 messages a minute.
    group_replies: backlog::OncePer<(i64, u64)>,
    /// Albums (media groups) whose uncaptioned photos were answered: once per album.
    albums: backlog::OncePer<(i64, String)>,
    /// Re-run presses being handled or queued lately: a double tap queues one.
    double_taps: features::rerun::DoubleTaps,
    /// Fires when the bot stops: retries are left to the inbox.
    stopping: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Front {
    /// A front end speaking through `bot` to `engine`.
    pub fn new(bot: BotApi, engine: Engine, config: FrontConfig) -> Self {
        let per_sec = NonZeroU32::new(config.user_updates_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.user_burst).unwrap_or(NonZeroU32::MIN);
        let pacer = pacing::Pacer::new(config.send_limits);
        let (retries, retried) = tokio::sync::mpsc::unbounded_channel();
        Front {
            inner: Arc::new(FrontInner {
                bot,
                engine,
                config,
                metrics: Metrics::default(),
                pacer,
                waiting: Mutex::new(HashMap::new()),
                flood: DefaultKeyedRateLimiter::keyed(
                    Quota::per_second(per_sec).allow_burst(burst),
                ),
                warned: Mutex::new(HashMap::new()),
                // What Telegram held while the bot was down is a backlog, not a flood.
                intake: Mutex::new(flood::Intake::catching_up()),
                handled: Mutex::new(Vec::new()),
                me: tokio::sync::OnceCell::new(),
                broadcasts: tokio::sync::Notify::new(),
                attempts: Mutex::new(HashMap::new()),
                replayed: Mutex::new(std::collections::HashSet::new()),
                retries,
                retried: Mutex::new(Some(retried)),
                backlog: Mutex::new(HashMap::new()),
                backlog_told: backlog::OncePer::default(),
                group_help: backlog::OncePer::default(),
                group_replies: backlog::OncePer::default(),
                albums: backlog::OncePer::default(),
                double_taps: features::rerun::DoubleTaps::default(),
                stopping: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    pub fn bot(&self) -> &BotApi {
        &self.inner.bot
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn pacer(&self) -> &pacing::Pacer {
        &self.inner.pacer
    }

    /// Drops per-chat and per-user limiter state of users who have been quiet.
    pub(crate) fn forget_quiet_users(&self) {
        self.inner.pacer.forget_quiet_chats();
        self.inner.flood.retain_recent();
        let cutoff = std::time::Duration::from_secs(60);
        self.inner
            .warned
            .lock()
            .retain(|_, at| at.elapsed() < cutoff);
    }

    pub(crate) fn config(&self) -> &FrontConfig {
        &self.inner.config
    }

    pub(crate) fn waiting(&self) -> &Mutex<HashMap<JobId, Slot>> {
        &self.inner.waiting
    }

    /// Notes that update `id` was handled (the inbox will not replay it).
    pub(crate) fn update_handled(&self, id: i64) {
        self.inner.handled.lock().push(id);
    }

    pub(crate) fn take_handled(&self) -> Vec<i64> {
        std::mem::take(&mut *self.inner.handled.lock())
    }

    /// Puts back handled marks that could not be written, for the next try.
    pub(crate) fn return_handled(&self, ids: Vec<i64>) {
        self.inner.handled.lock().extend(ids);
    }

    /// Notes updates taken from the inbox: counted as they start, never shed.
    pub(crate) fn note_replayed(&self, ids: impl IntoIterator<Item = i64>) {
        self.inner.replayed.lock().extend(ids);
    }

    /// Whether `id` was taken from the inbox and not started yet (then it is now).
    pub(crate) fn take_replayed(&self, id: i64) -> bool {
        self.inner.replayed.lock().remove(&id)
    }

    /// Whether `id` was taken from the inbox and not started yet.
    pub(crate) fn is_replayed(&self, id: i64) -> bool {
        self.inner.replayed.lock().contains(&id)
    }

    /// Fires when the bot stops taking updates for good.
    pub(crate) fn stopping(&self) -> &tokio_util::sync::CancellationToken {
        &self.inner.stopping
    }

    /// The updates to try again, for the one listener that feeds the dispatcher.
    pub(crate) fn take_retries(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<teloxide::types::Update>> {
        self.inner.retried.lock().take()
    }

    /// Whether a group's `/help` is answered now: once a minute, the rest are merged into it.
    pub(crate) fn group_help_due(&self, chat: ChatId) -> bool {
        self.inner
            .group_help
            .first_in(chat.0, std::time::Duration::from_secs(60))
    }

    /// Whether `member` may be answered in group `chat` now: once a minute.
    pub(crate) fn group_reply_due(&self, chat: ChatId, member: u64) -> bool {
        self.inner
            .group_replies
            .first_in((chat.0, member), std::time::Duration::from_secs(60))
    }

    /// Whether a photo is answered: always with a caption; without, only the first of its
    /// album (the rest of an album, captioned on its first photo or not at all, is one request).
    pub(crate) fn album_photo_due(&self, msg: &teloxide::types::Message) -> bool {
        let Some(album) = msg.media_group_id() else {
            return true;
        };
        let seen = !self.inner.albums.first_in(
            (msg.chat.id.0, album.0.clone()),
            std::time::Duration::from_secs(60),
        );
        let captioned = msg.caption().is_some_and(|c| !c.trim().is_empty());
        captioned || !seen
    }

    pub(crate) fn double_taps(&self) -> &features::rerun::DoubleTaps {
        &self.inner.double_taps
    }

    pub(crate) fn broadcasts(&self) -> &tokio::sync::Notify {
        &self.inner.broadcasts
    }

    /// The language a user's texts are in, as stored (English when unknown or unreadable):
    /// for messages the bot sends on its own, not in answer to an update.
    pub(crate) async fn language_of(&self, user: genbot_store::UserId) -> Lang {
        match self.inner.engine.users().get(user).await {
            Ok(Some(stored)) => Lang::from_code(stored.language.as_deref()),
            _ => Lang::En,
        }
    }

    /// The bot's own user, asked of Telegram once.
    pub(crate) async fn me(&self) -> Result<&teloxide::types::User, teloxide::RequestError> {
        use teloxide::requests::Requester;
        self.inner
            .me
            .get_or_try_init(|| async { Ok(self.inner.bot.get_me().await?.user) })
            .await
    }

    /// Keeps the bot's own user as getMe answered it at start (the first answer is kept).
    pub(crate) fn remember_me(&self, me: &teloxide::types::User) {
        let _ = self.inner.me.set(me.clone());
    }

    pub(crate) fn is_admin(&self, user: i64) -> bool {
        self.inner.config.admin_ids.contains(&user)
    }
}
