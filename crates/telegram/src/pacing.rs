//! Sending within Telegram's limits: about 30 messages a second overall and one a second per
//! chat (short bursts tolerated), waiting out a 429's `retry_after` when the server still says
//! no.
//!
//! teloxide's `Throttle` adaptor keeps the same limits, but its worker releases queued requests
//! only every 250 ms, which would put a quarter of a second on every answer; this pacer lets a
//! send through the moment its chat and the whole bot have budget (GCRA, as the engine's rate
//! limiter).
//!
//! Sends come in three classes. Answers (replies to what a user just sent) wait for budget, in
//! the order they arrived: without that line whichever waiter the timer woke first won, and
//! under a crowd some answers waited many times the floor. Results (images from the outbox)
//! wait in a line of their own and go only while no answer waits, or once they have waited
//! [`RESULT_PATIENCE`]: a user's next message is answered before someone's image is sent,
//! and images are never starved. Both wait for their chat's own budget before they queue, so
//! nobody waits behind another chat's backlog, and a chat's sends take its budget in the order
//! they arrived (an image from a fast job no longer overtakes the queue position sent ahead of
//! it; a send retried after a 429 or 5xx, or a result out of patience, can still change places). Progress
//! (position and "generating" edits) never waits: it goes out only when no answer waits, none
//! went out in the last three send slots (100 ms at 30/s), budget is free at that moment and
//! within progress's own share (a third of the overall rate); otherwise it is dropped — the
//! next refresh carries the newer state anyway. So under load users' answers and images go
//! first, and a burst of answers is never interleaved with progress.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use genbot_engine::limiter::TokioClock;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use teloxide::requests::Output;
use teloxide::types::ChatId;
use teloxide::{ApiError, RequestError};

use crate::Front;

mod wire;

pub(crate) use wire::{get_updates, Wire};

/// Telegram's send limits, as the pacer applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Sustained messages per second into one chat…
    pub per_chat_per_sec: u32,
    /// …after a burst of this many.
    pub per_chat_burst: u32,
    /// Messages per second across all chats.
    pub overall_per_sec: u32,
    /// Messages per minute into one group (Telegram: 20), on top of the per-chat limit.
    pub per_group_per_min: u32,
}

impl SendLimits {
    /// Telegram's documented limits for bots.
    pub const TELEGRAM: SendLimits = SendLimits {
        per_chat_per_sec: 1,
        per_chat_burst: 3,
        overall_per_sec: 30,
        per_group_per_min: 20,
    };

    /// No pacing at all: for mocks and measurements of the bot itself.
    pub const UNLIMITED: SendLimits = SendLimits {
        per_chat_per_sec: 1_000_000,
        per_chat_burst: 1_000_000,
        overall_per_sec: 1_000_000,
        per_group_per_min: 60_000_000,
    };
}

impl Default for SendLimits {
    fn default() -> Self {
        SendLimits::TELEGRAM
    }
}

/// The budget counts as short for this long after a send last had to sleep for it.
const SHORT_FOR: Duration = Duration::from_secs(1);

/// A result yields to answers for at most this long, then queues with them.
const RESULT_PATIENCE: Duration = Duration::from_secs(2);

/// What a send is, for the order sends take the overall budget in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendClass {
    /// A reply to what a user just sent: first.
    Answer,
    /// A result delivered later (an image): after waiting answers.
    Result,
}

/// Most 429s waited out for one send before giving up.
const MAX_RETRIES: u32 = 3;
/// Most server errors (5xx) an answer is tried again after, first after this pause, doubling:
/// then the error goes to the handler (and the update is tried again later).
const SERVER_RETRIES: u32 = 3;
const SERVER_RETRY_FIRST: Duration = Duration::from_millis(200);

/// GCRA on tokio's clock, which the pacer's waits sleep on: the real clock in production, the
/// paused one in tests, where the order sends go in is then the same on every run.
type DirectLimiter =
    governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;
type KeyedLimiter = governor::RateLimiter<
    i64,
    DefaultKeyedStateStore<i64>,
    TokioClock,
    NoOpMiddleware<std::time::Instant>,
>;

fn direct(quota: Quota) -> DirectLimiter {
    DirectLimiter::direct_with_clock(quota, TokioClock)
}

fn keyed(quota: Quota) -> KeyedLimiter {
    KeyedLimiter::new(quota, DefaultKeyedStateStore::default(), TokioClock)
}

pub(crate) struct Pacer {
    overall: DirectLimiter,
    /// Progress may use at most this share of the overall rate.
    progress: DirectLimiter,
    per_chat: KeyedLimiter,
    /// Each chat's sends take its budget in the order they arrived (see [`ChatLines`]).
    chat_lines: ChatLines,
    /// Groups (negative chat ids) also get at most `per_group_per_min` a minute: a burst of 3,
    /// then the rest of the minute's budget spread evenly, so no 60 s window holds more.
    per_group: KeyedLimiter,
    clock: TokioClock,
    /// Answers waiting for the overall budget: while any waits, progress is not sent (it would
    /// take the slot the answer waits for).
    answers_waiting: AtomicUsize,
    /// When the last answer was let through (nanoseconds since `epoch`)…
    last_answer: AtomicU64,
    /// When a send last had to sleep for the overall budget (nanoseconds since `epoch`, 0:
    /// never): while that is recent and answers wait, the budget is short and an
    /// acknowledgement stands aside ([`Pacer::contended`]).
    short_at: AtomicU64,
    epoch: tokio::time::Instant,
    /// …and how long the bot must have been free of answers before progress may go: three
    /// send slots, so a burst of answers is never interleaved with progress.
    quiet: Duration,
    /// Answers waiting for the overall budget take it first come, first served (tokio's mutex
    /// queues its waiters in order)…
    answer_line: tokio::sync::Mutex<()>,
    /// …and results in a line of their own, behind waiting answers.
    result_line: tokio::sync::Mutex<()>,
    /// Held by the send waiting for the very next slot: the answer at the head of its line, or
    /// a result out of patience, first come, first served. Without it the two slept until the
    /// same instant and the order the runtime woke them in chose: a result could lose slot
    /// after slot to the answers behind it, and wait far past its patience.
    next_slot: tokio::sync::Mutex<()>,
    /// Signalled whenever an answer takes the budget: a result waiting for answers to pass
    /// looks again.
    answer_passed: tokio::sync::Notify,
}

/// One line per chat with sends waiting for its budget: without it, two sends to one chat
/// slept until the same instant and whichever the runtime woke first went first, so a fast
/// job's image could reach the user before the "In the queue: position 1" answer sent ahead of
/// it. A chat's line lives only while a send waits in it, so the map holds waiting chats only.
#[derive(Default)]
struct ChatLines(
    parking_lot::Mutex<std::collections::HashMap<i64, std::sync::Arc<tokio::sync::Mutex<()>>>>,
);

impl ChatLines {
    /// `chat`'s line (tokio's mutex queues its waiters in order), held until the returned
    /// handle is dropped.
    fn line(&self, chat: ChatId) -> ChatLine<'_> {
        let line = self.0.lock().entry(chat.0).or_default().clone();
        ChatLine {
            lines: self,
            chat: chat.0,
            line: Some(line),
        }
    }
}

struct ChatLine<'a> {
    lines: &'a ChatLines,
    chat: i64,
    /// Taken out only in `drop`, so the handle is gone before the map lock is released.
    line: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl std::ops::Deref for ChatLine<'_> {
    type Target = tokio::sync::Mutex<()>;
    fn deref(&self) -> &Self::Target {
        match &self.line {
            Some(line) => line,
            None => unreachable!("a chat line's handle is taken only when it is dropped"),
        }
    }
}

impl Drop for ChatLine<'_> {
    fn drop(&mut self) {
        let mut lines = self.lines.0.lock();
        // This handle goes while the map is locked, so two handles dropped at once cannot
        // both count the other and leave the line behind; a new waiter must take the map's
        // lock to get a handle, so only the map's handle left means nobody waits.
        drop(self.line.take());
        if lines
            .get(&self.chat)
            .is_some_and(|line| std::sync::Arc::strong_count(line) == 1)
        {
            lines.remove(&self.chat);
        }
    }
}

/// Counts an answer as waiting for as long as it lives.
struct WaitingAnswer<'a>(&'a AtomicUsize);

impl<'a> WaitingAnswer<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, AtomicOrdering::SeqCst);
        WaitingAnswer(count)
    }
}

impl Drop for WaitingAnswer<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AtomicOrdering::SeqCst);
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// GCRA allows its burst on top of its rate within any window, so the rate is what is left of
/// the minute's budget after the burst.
fn group_quota(per_min: u32) -> Quota {
    const BURST: u32 = 3;
    let rate = per_min.saturating_sub(BURST).max(1);
    Quota::per_minute(nonzero(rate)).allow_burst(nonzero(BURST.min(per_min)))
}

impl Pacer {
    pub(crate) fn new(limits: SendLimits) -> Self {
        Pacer {
            overall: direct(
                Quota::per_second(nonzero(limits.overall_per_sec))
                    .allow_burst(nonzero(limits.overall_per_sec)),
            ),
            progress: direct(
                Quota::per_second(nonzero(limits.overall_per_sec / 3))
                    .allow_burst(nonzero(limits.overall_per_sec / 3)),
            ),
            per_chat: keyed(
                Quota::per_second(nonzero(limits.per_chat_per_sec))
                    .allow_burst(nonzero(limits.per_chat_burst)),
            ),
            per_group: keyed(group_quota(limits.per_group_per_min)),
            chat_lines: ChatLines::default(),
            clock: TokioClock,
            answers_waiting: AtomicUsize::new(0),
            last_answer: AtomicU64::new(0),
            short_at: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
            quiet: Duration::from_secs_f64(3.0 / f64::from(limits.overall_per_sec.max(1))),
            answer_line: tokio::sync::Mutex::new(()),
            result_line: tokio::sync::Mutex::new(()),
            next_slot: tokio::sync::Mutex::new(()),
            answer_passed: tokio::sync::Notify::new(),
        }
    }

    /// Waits until `chat` and the bot as a whole may receive one more send of `class`.
    pub(crate) async fn ready_as(&self, chat: ChatId, class: SendClass) {
        self.chat_ready(chat).await;
        // A result's patience counts from its arrival, not from its turn in the results' line:
        // results behind a long-waiting one go as soon as it has gone.
        let patience_ends = tokio::time::Instant::now() + RESULT_PATIENCE;
        let (result_turn, overdue) = match class {
            SendClass::Answer => (None, false),
            SendClass::Result => {
                let turn = self.result_line.lock().await;
                let overdue = !self.let_answers_pass(patience_ends).await;
                (Some(turn), overdue)
            }
        };
        let waiting = WaitingAnswer::enter(&self.answers_waiting);
        // A result that ran out of patience does not join the back of the answers' line: it
        // takes the slot after the one the answer at its head waits for.
        let turn = if overdue {
            None
        } else {
            Some(self.answer_line.lock().await)
        };
        let slot = self.next_slot.lock().await;
        while let Err(not_until) = self.overall.check() {
            self.short_at
                .store(self.since_epoch().max(1), AtomicOrdering::SeqCst);
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
        self.last_answer
            .store(self.since_epoch(), AtomicOrdering::SeqCst);
        // No longer waiting: a result woken by the signal must see this send gone.
        drop((slot, turn, waiting, result_turn));
        self.answer_passed.notify_waiters();
    }

    /// Waits while answers wait for the budget, until `deadline`; false when the patience ran
    /// out with answers still waiting.
    async fn let_answers_pass(&self, deadline: tokio::time::Instant) -> bool {
        while self.answers_waiting.load(AtomicOrdering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let passed = self.answer_passed.notified();
            // The answer may have passed between the load and here: look again soon anyway.
            let again = (tokio::time::Instant::now() + Duration::from_millis(20)).min(deadline);
            let _ = tokio::time::timeout_at(again, passed).await;
        }
        true
    }

    /// Waits for `chat`'s own budget (and its group's), behind the sends to `chat` that
    /// arrived before.
    async fn chat_ready(&self, chat: ChatId) {
        let line = self.chat_lines.line(chat);
        let _turn = line.lock().await;
        if chat.0 < 0 {
            while let Err(not_until) = self.per_group.check_key(&chat.0) {
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
            }
        }
        while let Err(not_until) = self.per_chat.check_key(&chat.0) {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }

    /// Whether a progress message to `chat` may go out now; never waits. Progress is the first
    /// thing dropped when the budget is short.
    pub(crate) fn try_progress(&self, chat: ChatId) -> bool {
        let last = self.last_answer.load(AtomicOrdering::SeqCst);
        let quiet = self.since_epoch().saturating_sub(last) >= self.quiet.as_nanos() as u64;
        self.answers_waiting.load(AtomicOrdering::SeqCst) == 0
            && (last == 0 || quiet)
            && self.progress.check().is_ok()
            && (chat.0 >= 0 || self.per_group.check_key(&chat.0).is_ok())
            && self.per_chat.check_key(&chat.0).is_ok()
            && self.overall.check().is_ok()
    }

    /// Whether answers wait for an overall budget that is short (a send had to sleep for it
    /// within [`SHORT_FOR`]): then an acknowledgement (a prompt's queue position) stands aside,
    /// so that other users' answers go first; the user waits for the image, which comes anyway.
    pub(crate) fn contended(&self) -> bool {
        let short_at = self.short_at.load(AtomicOrdering::SeqCst);
        short_at != 0
            && self.since_epoch().saturating_sub(short_at) < SHORT_FOR.as_nanos() as u64
            && self.answers_waiting.load(AtomicOrdering::SeqCst) > 0
    }

    fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Forgets chats that have been quiet, so the per-chat state does not grow forever.
    pub(crate) fn forget_quiet_chats(&self) {
        self.per_chat.retain_recent();
        self.per_group.retain_recent();
    }
}

/// Whether Telegram refused because the user blocked the bot or cannot be written to (403):
/// retrying cannot help.
pub(crate) fn is_blocked(error: &RequestError) -> bool {
    match error {
        RequestError::Api(
            ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::CantInitiateConversation
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel,
        ) => true,
        // Telegram's current wording of `CantInitiateConversation`, which teloxide knows only
        // as "Unauthorized: …".
        RequestError::Api(ApiError::Unknown(description)) => {
            description.starts_with("Forbidden: bot can't initiate conversation")
        }
        _ => false,
    }
}

/// Whether a Bot API description is a server error's (5xx) rather than a refusal's.
pub(crate) fn is_server_description(description: &str) -> bool {
    const SERVER: [&str; 5] = [
        "Internal Server Error",
        "Bad Gateway",
        "Service Unavailable",
        "Gateway Timeout",
        "Gateway Time-out",
    ];
    SERVER.iter().any(|s| description.contains(s))
}

/// Whether a Bot API description teloxide does not know is a refusal (a 4xx such as "Bad
/// Request: PHOTO_INVALID_DIMENSIONS"): the same request cannot pass later. Anything else it
/// does not know is taken for a server's or a proxy's error, worth trying again.
pub(crate) fn is_refusal_description(description: &str) -> bool {
    refusal_status(description).is_some()
}

/// The HTTP status of a refusal teloxide does not know, by how Telegram starts its
/// description; `None` when it is no refusal (see [`is_refusal_description`]).
pub(crate) fn refusal_status(description: &str) -> Option<&'static str> {
    const REFUSALS: [(&str, &str); 5] = [
        ("Bad Request", "400"),
        ("Forbidden", "403"),
        ("Unauthorized", "401"),
        ("Not Found", "404"),
        ("Conflict", "409"),
    ];
    if is_server_description(description) {
        return None;
    }
    REFUSALS
        .iter()
        .find(|(start, _)| description.starts_with(start))
        .map(|(_, status)| *status)
}

/// Whether Telegram (or a proxy in front of it) had a server error (5xx): worth trying again.
pub(crate) fn is_server_error(error: &RequestError) -> bool {
    match error {
        RequestError::Api(ApiError::Unknown(description)) => is_server_description(description),
        _ => false,
    }
}

/// Sends `request` into `chat` within the limits, waiting out up to three 429 answers and
/// trying again after up to three server errors (200 ms, doubling). What Telegram answers with
/// (the sent message) is not read: [`send_reading`] for a caller that needs it.
///
/// # Errors
/// The request failed for another reason, or Telegram kept answering 429 or 5xx.
pub(crate) async fn send<R>(front: &Front, chat: ChatId, request: R) -> Result<(), RequestError>
where
    R: Wire,
{
    send_as(front, chat, SendClass::Answer, || {
        request.on_wire_unread(front.bot())
    })
    .await
}

/// [`send`], returning what Telegram answered with (the sent message: its id, to edit it).
///
/// # Errors
/// As [`send`].
pub(crate) async fn send_reading<R>(
    front: &Front,
    chat: ChatId,
    request: R,
) -> Result<Output<R>, RequestError>
where
    R: Wire,
{
    send_as(front, chat, SendClass::Answer, || {
        request.on_wire(front.bot())
    })
    .await
}

/// Makes a call that is no message (a button's or a checkout's answer): outside the send
/// budget, but like an answer without teloxide's 10 s pause after a 5xx, and tried again after
/// up to three of them.
///
/// # Errors
/// As [`send`].
pub(crate) async fn call<R>(front: &Front, request: R) -> Result<Output<R>, RequestError>
where
    R: Wire,
{
    let mut pause = SERVER_RETRY_FIRST;
    let mut retries = 0;
    loop {
        match request.on_wire(front.bot()).await {
            Err(e) if is_server_error(&e) && retries < SERVER_RETRIES => {
                front.metrics().send_error(&e);
                retries += 1;
                tracing::debug!(error = %e, retry_in = ?pause, "telegram had a server error");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                front.metrics().send_error(&e);
                return Err(e);
            }
            ok => return ok,
        }
    }
}

/// [`send_reading`] for a result: behind the answers waiting for the budget.
///
/// # Errors
/// As [`send`].
pub(crate) async fn send_result<R>(
    front: &Front,
    chat: ChatId,
    request: R,
) -> Result<Output<R>, RequestError>
where
    R: Wire,
{
    send_as(front, chat, SendClass::Result, || {
        request.on_wire(front.bot())
    })
    .await
}

/// Puts a send of `class` into `chat` on the wire (`put`) once the pacer lets it through,
/// again after a 429 (up to three) and, for an answer, after a server error (up to three).
async fn send_as<T>(
    front: &Front,
    chat: ChatId,
    class: SendClass,
    put: impl Fn() -> futures_util::future::BoxFuture<'static, Result<T, RequestError>>,
) -> Result<T, RequestError> {
    let mut retries = 0;
    let mut server_retries = 0;
    let mut server_pause = SERVER_RETRY_FIRST;
    loop {
        front.pacer().ready_as(chat, class).await;
        match put().await {
            Err(RequestError::RetryAfter(after)) if retries < MAX_RETRIES => {
                front.metrics().send_error(&RequestError::RetryAfter(after));
                retries += 1;
                tracing::debug!(chat = chat.0, ?after, "telegram asked to slow down");
                tokio::time::sleep(after.duration().max(Duration::from_millis(100))).await;
            }
            // An answer is tried again after a short pause (behind its chat's sends that came
            // meanwhile); a result's retry is the outbox's (with its own backoff and attempt
            // count).
            Err(e)
                if class == SendClass::Answer
                    && is_server_error(&e)
                    && server_retries < SERVER_RETRIES =>
            {
                front.metrics().send_error(&e);
                server_retries += 1;
                tracing::debug!(chat = chat.0, error = %e, retry_in = ?server_pause, "telegram had a server error");
                tokio::time::sleep(server_pause).await;
                server_pause *= 2;
            }
            Err(e) => {
                front.metrics().send_error(&e);
                return Err(e);
            }
            ok => return ok,
        }
    }
}

/// Sends a progress message (chat action, position or status edit) if the budget allows it now;
/// `Ok(None)` when it was dropped (no budget, or Telegram asked to slow down).
///
/// # Errors
/// The request failed for another reason.
pub(crate) async fn send_progress<R>(
    front: &Front,
    chat: ChatId,
    request: R,
) -> Result<Option<Output<R>>, RequestError>
where
    R: Wire,
{
    if !front.pacer().try_progress(chat) {
        front.metrics().progress_dropped();
        return Ok(None);
    }
    match request.on_wire(front.bot()).await {
        Ok(output) => Ok(Some(output)),
        Err(e @ RequestError::RetryAfter(_)) => {
            front.metrics().send_error(&e);
            front.metrics().progress_dropped();
            Ok(None)
        }
        Err(e) => {
            front.metrics().send_error(&e);
            Err(e)
        }
    }
}

/// Sends a prompt's acknowledgement (its queue position) as an answer, unless answers wait for
/// a short overall budget ([`Pacer::contended`]): then `Ok(None)`, and the caller sends it later
/// while the job still waits. Only the overall budget puts it off: waiting for its own chat's
/// budget delays nobody else.
///
/// # Errors
/// As [`send`].
pub(crate) async fn send_acknowledgement<R>(
    front: &Front,
    chat: ChatId,
    request: R,
) -> Result<Option<Output<R>>, RequestError>
where
    R: Wire,
{
    if front.pacer().contended() {
        front.metrics().progress_dropped();
        return Ok(None);
    }
    send_reading(front, chat, request).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_dropped_first_and_takes_at_most_a_third() {
        let pacer = Pacer::new(SendLimits {
            per_chat_per_sec: 1_000,
            per_chat_burst: 1_000,
            overall_per_sec: 30,
            per_group_per_min: 20,
        });
        let progress_sent = (0..30).filter(|n| pacer.try_progress(ChatId(*n))).count();
        assert_eq!(progress_sent, 10, "a third of the budget");
        // Answers still have the rest of the second's budget.
        let answers = (0..30).filter(|_| pacer.overall.check().is_ok()).count();
        assert_eq!(answers, 20);
        assert!(!pacer.try_progress(ChatId(99)), "nothing left for progress");
    }

    #[test]
    fn a_group_gets_at_most_twenty_messages_in_any_minute() {
        let pacer = Pacer::new(SendLimits::TELEGRAM);
        let group = -100;
        let at_once = (0..30)
            .filter(|_| pacer.per_group.check_key(&group).is_ok())
            .count();
        assert_eq!(at_once, 3, "the burst");
        // The 17 others of the minute are spread at one per 60/17 s.
        let quota = group_quota(20);
        assert_eq!(
            quota.replenish_interval(),
            Duration::from_secs(60) / 17,
            "3 + 17 per minute"
        );
        assert!(pacer.per_group.check_key(&-101).is_ok(), "groups are apart");
    }

    /// The sends let through, in order, each with when (from the pacer's start).
    type Through = std::sync::Arc<parking_lot::Mutex<Vec<(i64, Duration)>>>;

    /// A pacer at `per_sec` overall whose burst is spent, so every send below waits for
    /// budget, and the list the sends are let through into.
    fn spent_pacer(per_sec: u32) -> (std::sync::Arc<Pacer>, Through) {
        let pacer = std::sync::Arc::new(Pacer::new(SendLimits {
            overall_per_sec: per_sec,
            ..SendLimits::TELEGRAM
        }));
        while pacer.overall.check().is_ok() {}
        (pacer, Through::default())
    }

    /// Waits for `sends` and returns what was let through, in order.
    async fn let_through(
        sends: Vec<tokio::task::JoinHandle<()>>,
        through: &Through,
    ) -> Vec<(i64, Duration)> {
        for send in sends {
            send.await.expect("send");
        }
        through.lock().clone()
    }

    fn chats(through: &[(i64, Duration)]) -> Vec<i64> {
        through.iter().map(|(chat, _)| *chat).collect()
    }

    /// `n` sends of `class`, one to each chat from `first_chat`, each arriving 5 ms after the
    /// one before has taken its place: polled once, it waits in its line (or is through).
    async fn arrivals(
        pacer: &std::sync::Arc<Pacer>,
        through: &Through,
        first_chat: i64,
        n: i64,
        class: SendClass,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let one_each = (first_chat..first_chat + n).map(|chat| (chat, ChatId(chat), class));
        arrivals_of(pacer, through, one_each).await
    }

    /// Sends of `(what through records, chat, class)`, arriving as in [`arrivals`].
    async fn arrivals_of(
        pacer: &std::sync::Arc<Pacer>,
        through: &Through,
        sends_in_order: impl IntoIterator<Item = (i64, ChatId, SendClass)>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut sends = Vec::new();
        for (recorded, chat, class) in sends_in_order {
            let (pacer, through) = (pacer.clone(), through.clone());
            let (arrived, in_line) = tokio::sync::oneshot::channel::<()>();
            sends.push(tokio::spawn(async move {
                let ready = pacer.ready_as(chat, class);
                tokio::pin!(ready);
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(ready.as_mut(), cx))
                })
                .await;
                let _ = arrived.send(());
                if first.is_pending() {
                    ready.await;
                }
                let at = pacer.epoch.elapsed();
                through.lock().push((recorded, at));
            }));
            let _ = in_line.await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sends
    }

    /// On several workers and the real clock, as in production: without the line, whichever
    /// waiter a worker woke first took the slot. With it the order is the line's, whatever
    /// the timing: each answer has its place before the next arrives, so none may overtake.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_take_the_budget_in_the_order_they_arrived() {
        let (pacer, through) = spent_pacer(50);
        let through = let_through(
            arrivals(&pacer, &through, 0, 40, SendClass::Answer).await,
            &through,
        )
        .await;
        // Seen without the line: the first to arrive let through 37th of 40.
        assert_eq!(chats(&through), (0..40).collect::<Vec<_>>());
    }

    /// Sends to one chat wait for its budget: an answer (a queue position) must not be
    /// overtaken by the result (the image) that arrived after it, whichever waiter the runtime
    /// wakes first, on several workers and the real clock as in production.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_to_one_chat_take_its_budget_in_the_order_they_arrived() {
        let pacer = std::sync::Arc::new(Pacer::new(SendLimits {
            per_chat_per_sec: 50,
            per_chat_burst: 1,
            overall_per_sec: 1_000,
            per_group_per_min: 20,
        }));
        let chat = ChatId(7);
        while pacer.per_chat.check_key(&chat.0).is_ok() {}
        let through = Through::default();
        let classes = [SendClass::Answer, SendClass::Result];
        let sends = (0..30).map(|i| (i, chat, classes[(i % 2) as usize]));
        let through = let_through(arrivals_of(&pacer, &through, sends).await, &through).await;
        assert_eq!(chats(&through), (0..30).collect::<Vec<_>>());
        assert!(
            pacer.chat_lines.0.lock().is_empty(),
            "a line outlived its waiters"
        );
    }

    /// The budget counts as contended (a prompt's queue position stands aside) only while
    /// answers wait for an overall budget that had to be slept for: never without Telegram's
    /// budget, not with budget to spare, not once the waiting answer has gone.
    #[tokio::test(start_paused = true)]
    async fn the_budget_is_contended_only_while_answers_wait_for_it() {
        let unlimited = Pacer::new(SendLimits::UNLIMITED);
        let _waiting = WaitingAnswer::enter(&unlimited.answers_waiting);
        assert!(
            !unlimited.contended(),
            "nothing is short without Telegram's budget"
        );

        let (pacer, _) = spent_pacer(30);
        assert!(
            !pacer.contended(),
            "spent, but nobody has waited for it yet"
        );
        let answer = {
            let pacer = pacer.clone();
            tokio::spawn(async move { pacer.ready_as(ChatId(2), SendClass::Answer).await })
        };
        tokio::task::yield_now().await;
        assert!(pacer.contended(), "an answer waits for the spent budget");
        answer.await.expect("answer");
        assert!(!pacer.contended(), "no answer waits once it has gone");
        let again = {
            let pacer = pacer.clone();
            tokio::spawn(async move { pacer.ready_as(ChatId(3), SendClass::Answer).await })
        };
        tokio::task::yield_now().await;
        assert!(pacer.contended());
        again.await.expect("answer");
        tokio::time::sleep(SHORT_FOR).await;
        let _waiting = WaitingAnswer::enter(&pacer.answers_waiting);
        assert!(
            !pacer.contended(),
            "a second after the last sleep the budget is no longer short"
        );
    }

    /// Whether a result waits depends on when answers arrive: on tokio's paused clock, which
    /// the pacer's budget is read from, arrivals, slots and patience are exact and the order is
    /// the same on every run, however loaded the machine.
    #[tokio::test(start_paused = true)]
    async fn results_wait_for_waiting_answers_but_not_for_ever() {
        let (pacer, through) = spent_pacer(50);
        // Results arrive at 0..20 ms, then answers at 25..120 ms; a slot every 20 ms.
        let mut sends = arrivals(&pacer, &through, 1_000, 5, SendClass::Result).await;
        sends.extend(arrivals(&pacer, &through, 0, 20, SendClass::Answer).await);
        let through = let_through(sends, &through).await;
        // The first two results joined the answers' line while no answer waited (at 0 and
        // 20 ms); the three others wait for all twenty answers, well within their patience.
        let expected: Vec<i64> = [1_000, 1_001]
            .into_iter()
            .chain(0..20)
            .chain([1_002, 1_003, 1_004])
            .collect();
        assert_eq!(chats(&through), expected, "{through:?}");
    }

    /// On the paused clock, as the test above (on the wall clock a loaded machine once let the
    /// result through 60th instead of about 20th).
    #[tokio::test(start_paused = true)]
    async fn a_result_waits_at_most_its_patience_behind_answers() {
        let (pacer, through) = spent_pacer(10);
        // 60 answers take 6 s at 10/s; two results arriving after the first (at 5 and 10 ms)
        // must not wait them all: each goes within its patience from its arrival, plus the
        // slots already promised (the head answer's, and the first result's for the second).
        let mut sends = arrivals(&pacer, &through, 0, 1, SendClass::Answer).await;
        sends.extend(arrivals(&pacer, &through, 1_000, 2, SendClass::Result).await);
        sends.extend(arrivals(&pacer, &through, 1, 59, SendClass::Answer).await);
        let through = let_through(sends, &through).await;
        let let_through_at = |chat: i64| {
            through
                .iter()
                .find(|(c, _)| *c == chat)
                .map(|(_, at)| *at)
                .unwrap_or(Duration::MAX)
        };
        let slot = Duration::from_millis(100);
        for (result, arrived) in [(1_000, 5), (1_001, 10)] {
            let waited = let_through_at(result) - Duration::from_millis(arrived);
            assert!(
                waited >= RESULT_PATIENCE && waited <= RESULT_PATIENCE + 4 * slot,
                "result {result} waited {waited:?}: {through:?}"
            );
        }
        // Seen with the patience counted from the result's turn in its line, not its arrival:
        // the second result waited 4.29 s, 2 s after the first had gone.
        // Answers keep their order around the results.
        let answers: Vec<i64> = chats(&through).into_iter().filter(|c| *c < 1_000).collect();
        assert_eq!(answers, (0..60).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn no_progress_while_an_answer_waits_for_budget() {
        let pacer = Pacer::new(SendLimits {
            per_chat_per_sec: 1_000,
            per_chat_burst: 1_000,
            overall_per_sec: 3,
            per_group_per_min: 20,
        });
        for chat in 0..3 {
            pacer.ready_as(ChatId(chat), SendClass::Answer).await;
        }
        let waiting = pacer.ready_as(ChatId(10), SendClass::Answer);
        tokio::pin!(waiting);
        // Poll once: the answer is now waiting for the overall budget.
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !pacer.try_progress(ChatId(11)),
            "progress took the answer's slot"
        );
        waiting.await;
        assert_eq!(pacer.answers_waiting.load(AtomicOrdering::SeqCst), 0);
    }
}
