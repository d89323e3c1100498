//! A Telegram Bot API server with simulated users.
//!
//! The bot under test talks to it as to `https://api.telegram.org` (`TELEGRAM_API_URL`): long
//! polling with `getUpdates`, or a webhook it registers with `setWebhook`; it answers with
//! `sendMessage`, `editMessageText`, `sendPhoto`, `sendChatAction`, `answerCallbackQuery`, and
//! sells with Telegram Stars: `sendInvoice`, `answerPreCheckoutQuery`, `refundStarPayment`.
//! Tests and the readiness suite drive [`SimUser`]s that send texts and press inline buttons,
//! then read each chat's transcript and the time from an update to the bot's first answer.

mod entities;
mod payments;
pub mod repeats;
mod routes;
mod state;
mod users;
pub mod validate;
mod webhook_push;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use state::{Entry, FloodBudget, Refused, Sent, TelegramMockStats, REFUSED_EXAMPLES};
pub use users::{SimGroup, SimUser};
pub use wire::FileSend;

use self::state::BotState;

/// How the mock treats the bot.
#[derive(Debug, Clone, PartialEq)]
pub struct TelegramMockConfig {
    /// Longest a `getUpdates` long poll is held, whatever the bot asks (below teloxide's 17 s
    /// client timeout).
    pub max_long_poll: Duration,
    /// Answer 429 with `retry_after` when the bot sends faster than Telegram allows
    /// (30 messages/s overall, 1/s per chat).
    pub enforce_limits: bool,
}

impl Default for TelegramMockConfig {
    fn default() -> Self {
        TelegramMockConfig {
            max_long_poll: Duration::from_secs(10),
            enforce_limits: false,
        }
    }
}

/// A running Bot API mock; stops when dropped.
#[derive(Debug)]
pub struct TelegramMock {
    state: Arc<BotState>,
    url: String,
    clock: crate::clock::ClockSkew,
    _shutdown: oneshot::Sender<()>,
}

impl TelegramMock {
    /// Starts a mock on a free loopback port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(config: TelegramMockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(BotState::new(config));
        let clock = crate::clock::ClockSkew::default();
        let app = clock.apply(routes::router(state.clone()));
        let stop = crate::server::spawn(listener, app, "telegram");
        Ok(TelegramMock {
            state,
            url,
            clock,
            _shutdown: stop,
        })
    }

    /// Every answer's `Date` header is `seconds` off the real time from now on.
    pub fn skew_clock(&self, seconds: i64) {
        self.clock.set(seconds);
    }

    /// Base URL to give the bot as `TELEGRAM_API_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A simulated user (and their private chat) with this id, created on first use.
    pub fn user(&self, id: i64, first_name: &str, language: Option<&str>) -> SimUser {
        SimUser::new(self.state.clone(), id, first_name, language)
    }

    /// A group with this (negative) id and title that the bot is a member of, privacy mode on.
    pub fn group(&self, id: i64, title: &str) -> SimGroup {
        SimGroup::new(self.state.clone(), id, title)
    }

    /// Delivers an arbitrary update, as Telegram would send it, to the bot (by `getUpdates` or
    /// its webhook): the mock sets `update_id` (any given one is replaced) and, as Telegram,
    /// drops kinds missing from the bot's `allowed_updates`. Nothing is added to a transcript
    /// and no answer is awaited: the caller reads the chats it cares about. Chats the bot may
    /// answer in must exist ([`TelegramMock::user`], [`TelegramMock::group`]). Returns the
    /// update id and whether the update's kind was allowed when it was injected. Used by the
    /// suite's `bad_input` test for edited messages, channel posts, stickers, forged payments…
    pub fn inject_update(&self, update: serde_json::Value) -> (i64, bool) {
        self.state.raw_update(update)
    }

    /// A message id no message of the mock has used, for updates built by hand.
    pub fn fresh_message_id(&self) -> i64 {
        self.state.fresh_message_id()
    }

    /// The bot's own user, as `getMe` reports it.
    pub fn bot_user(&self) -> serde_json::Value {
        BotState::me()
    }

    /// Counters and latency samples so far.
    pub fn stats(&self) -> TelegramMockStats {
        self.state.stats()
    }

    /// Answers the next `times` calls of `method` (e.g. `sendPhoto`) with this HTTP error and
    /// description, as the Bot API does (`{"ok":false,"error_code":…}`).
    pub fn fail_next(&self, method: &str, code: u16, description: &str, times: usize) {
        let error = state::ScriptedError {
            code,
            description: description.to_owned(),
            retry_after: None,
        };
        self.state.fail_next(method, error, times);
    }

    /// Answers the next `times` calls of `method` with 429 and `parameters.retry_after`, as
    /// Telegram does when a bot sends too fast.
    pub fn throttle_next(&self, method: &str, retry_after_secs: u64, times: usize) {
        let error = state::ScriptedError {
            code: 429,
            description: format!("Too Many Requests: retry after {retry_after_secs}"),
            retry_after: Some(retry_after_secs),
        };
        self.state.fail_next(method, error, times);
    }

    /// Ends the faults of [`TelegramMock::fail_next`] and [`TelegramMock::throttle_next`]: the
    /// errors still queued are dropped, every call is answered normally again.
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Every send into a chat is answered `delay` later from now on (`Duration::ZERO` ends it).
    pub fn set_send_delay(&self, delay: Duration) {
        self.state.set_send_delay(delay);
    }

    /// From now on a `sendPhoto`/`sendDocument` posts its message at once and holds its answer
    /// `hold` (`Duration::ZERO` ends it): a bot killed meanwhile never learns it was delivered.
    pub fn hold_file_answers(&self, hold: Duration) {
        *self.state.file_answer_hold.lock() = hold;
    }

    /// Requests into these chats that Telegram would refuse are answered as Telegram would but
    /// counted apart ([`TelegramMockStats::refused_exempt`]), not in
    /// [`TelegramMockStats::refused`]: a test that sends hostile inputs on purpose (a kicked
    /// group, a forged payment) measures the bot's other users' refusals, not the ones it provoked.
    pub fn exempt_from_refusals(&self, chats: impl IntoIterator<Item = i64>) {
        self.state.exempt_from_refusals(chats);
    }

    /// The group becomes a supergroup with id `supergroup`: from now on every send into the
    /// group is refused as Telegram refuses it, `400 Bad Request: group chat was upgraded to a
    /// supergroup chat` with `parameters.migrate_to_chat_id`.
    pub fn migrate(&self, group: i64, supergroup: i64) {
        self.state.migrate(group, supergroup);
    }

    /// The user blocks the bot: from now on every send into their chat is answered 403.
    pub fn block(&self, user: i64) {
        self.state.block(user);
    }

    /// Stars payments completed so far: (charge id, user, Stars, refunded), by charge id.
    pub fn charges(&self) -> Vec<(String, i64, i64, bool)> {
        self.state.charges()
    }

    /// The bot's messages and edits in the order they arrived, across all chats.
    pub fn sent_in_order(&self) -> Vec<Sent> {
        self.state.sent_in_order()
    }

    /// Every `sendPhoto` and `sendDocument` that made a message, in arrival order, with when
    /// its answer was handed to the connection (for judging repeats: [`repeats::repeats`]).
    pub fn file_sends(&self) -> Vec<FileSend> {
        self.state.wire.sends()
    }

    /// A cloneable handle for tasks that watch the answers while a test runs.
    pub fn answers(&self) -> Answers {
        Answers(self.state.clone())
    }
}

/// Read-only view of the answer latencies, shareable with a sampling task.
#[derive(Debug, Clone)]
pub struct Answers(Arc<BotState>);

impl Answers {
    /// Time from update to first answer of every answer from index `from` on, in order.
    pub fn latencies_since(&self, from: usize) -> Vec<Duration> {
        self.0.answer_latencies_since(from)
    }

    /// How many answers have been recorded so far (the index the next one gets).
    pub fn count(&self) -> usize {
        self.0.answer_count()
    }

    /// How many answers from index `from` on answer updates that reached the mock at or after
    /// `since`.
    pub fn answered_since(&self, from: usize, since: std::time::Instant) -> usize {
        self.0.answered_since(from, since)
    }

    /// From answer `from` on: the chat, when the answered update reached the mock, and the
    /// time to its first answer.
    pub fn answers_since(&self, from: usize) -> Vec<(i64, std::time::Instant, Duration)> {
        self.0.answers_since(from)
    }
}

/// Serves the mock on `listener` until `shutdown` completes.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: TcpListener,
    config: TelegramMockConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(BotState::new(config));
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
