//! Every update is handled in isolation, so no update can take the bot down or hold it up.
//!
//! - A handler that panics is caught ([`isolated`]): the panic is counted
//!   (`genbot_handler_panics_total`) and logged with the update's id and kind, never its text,
//!   and the chat's next update is handled as usual.
//! - A failure is judged ([`judge`]): a transient one (the database, the network, Telegram's
//!   5xx or 429) leaves the update unhandled and it is tried again with backoff; a refusal
//!   (Telegram's 4xx, a job that is gone) ends it.
//! - An update that keeps panicking, or whose handling died with the process, [`PANICS_MAX`]
//!   times in all (counted in the inbox: a replayed update counts one as its handling starts)
//!   is set aside as a dead letter: kept with its error and attempt count, never replayed again
//!   until an operator retries it (`genbot inbox retry`: one more try, set aside again at the
//!   next panic), and its sender is told once, in their language, that the message could not
//!   be handled (not again when a retry fails). Transient failures never set an update
//!   aside, however long they last: a payment met by a long database outage is credited when
//!   the database is back.
//!
//! This module owns the outcome of handling; what a handler does is the handlers' business.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use genbot_engine::{CancelError, SubmitError};
use genbot_store::{SetAside, StoreError};
use teloxide::requests::Requester;
use teloxide::types::{Update, UpdateKind};
use teloxide::{ApiError, RequestError};

use crate::shared::HandlerError;
use crate::Front;

/// Panics (or handlings that died with the process) before an update is set aside.
pub(crate) const PANICS_MAX: u32 = 3;
/// The attempts an operator's retry (`genbot inbox retry`) gives a dead letter: one short of
/// [`PANICS_MAX`], so it has one more try, as README promises, not another full round.
pub const RETRIED_ATTEMPTS: u32 = PANICS_MAX - 1;
/// First and longest pause before an update is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How handling an update failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Worth trying again: the database or the network did not answer, Telegram had a server
    /// error or asked to wait.
    Transient(String),
    /// Trying again would fail the same way (Telegram refused the request, the data says no).
    Permanent(String),
    /// The handler panicked.
    Panic(String),
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Transient(r) | Failure::Permanent(r) | Failure::Panic(r) => r,
        }
    }
}

/// What becomes of an update whose handling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Handled: a refusal ends it.
    Done,
    /// Tried again after this pause.
    Retry(Duration),
    /// Set aside as a dead letter.
    SetAside,
}

/// What to do after `failure`, the `attempts`-th failure of its kind at one update (panics
/// as counted in the inbox, transient failures as counted here).
pub(crate) fn fate(failure: &Failure, attempts: u32) -> Fate {
    match failure {
        Failure::Permanent(_) => return Fate::Done,
        Failure::Panic(_) if attempts >= PANICS_MAX => return Fate::SetAside,
        Failure::Panic(_) | Failure::Transient(_) => {}
    }
    let doubled = RETRY_FIRST.saturating_mul(1 << attempts.saturating_sub(1).min(10));
    Fate::Retry(doubled.min(RETRY_MAX))
}

/// Judges a handler's error: transient (try again) or permanent (done).
pub(crate) fn judge(error: &HandlerError) -> Failure {
    let reason = error.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(current) = source {
        if let Some(e) = current.downcast_ref::<RequestError>() {
            return if is_transient_request(e) {
                Failure::Transient(reason)
            } else {
                Failure::Permanent(reason)
            };
        }
        // The engine wraps store errors transparently: `source()` skips the store error itself.
        let store = current
            .downcast_ref::<StoreError>()
            .or_else(|| match current.downcast_ref::<SubmitError>() {
                Some(SubmitError::Store(e)) => Some(e),
                _ => None,
            })
            .or_else(|| match current.downcast_ref::<CancelError>() {
                Some(CancelError::Store(e)) => Some(e),
                _ => None,
            });
        if let Some(e) = store {
            return if is_transient_store(e) {
                Failure::Transient(reason)
            } else {
                Failure::Permanent(reason)
            };
        }
        source = current.source();
    }
    Failure::Permanent(reason)
}

fn is_transient_request(error: &RequestError) -> bool {
    match error {
        RequestError::RetryAfter(_) | RequestError::Network(_) | RequestError::Io(_) => true,
        // A proxy's HTML error page, or a body cut short.
        RequestError::InvalidJson { .. } => true,
        // teloxide keeps Telegram's description, not its status: server errors have
        // descriptions no refusal has.
        RequestError::Api(ApiError::Unknown(text)) => crate::pacing::is_server_description(text),
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => false,
    }
}

fn is_transient_store(error: &StoreError) -> bool {
    error.is_transient()
}

/// The update's kind, for logs and counters (never its content).
pub(crate) fn kind_of(update: &Update) -> &'static str {
    match &update.kind {
        UpdateKind::Message(_) => "message",
        UpdateKind::EditedMessage(_) => "edited_message",
        UpdateKind::ChannelPost(_) => "channel_post",
        UpdateKind::EditedChannelPost(_) => "edited_channel_post",
        UpdateKind::BusinessConnection(_) => "business_connection",
        UpdateKind::BusinessMessage(_) => "business_message",
        UpdateKind::EditedBusinessMessage(_) => "edited_business_message",
        UpdateKind::DeletedBusinessMessages(_) => "deleted_business_messages",
        UpdateKind::MessageReaction(_) => "message_reaction",
        UpdateKind::MessageReactionCount(_) => "message_reaction_count",
        UpdateKind::InlineQuery(_) => "inline_query",
        UpdateKind::ChosenInlineResult(_) => "chosen_inline_result",
        UpdateKind::CallbackQuery(_) => "callback_query",
        UpdateKind::ShippingQuery(_) => "shipping_query",
        UpdateKind::PreCheckoutQuery(_) => "pre_checkout_query",
        UpdateKind::PurchasedPaidMedia(_) => "purchased_paid_media",
        UpdateKind::Poll(_) => "poll",
        UpdateKind::PollAnswer(_) => "poll_answer",
        UpdateKind::MyChatMember(_) => "my_chat_member",
        UpdateKind::ChatMember(_) => "chat_member",
        UpdateKind::ChatJoinRequest(_) => "chat_join_request",
        UpdateKind::ChatBoost(_) => "chat_boost",
        UpdateKind::RemovedChatBoost(_) => "removed_chat_boost",
        UpdateKind::Error(_) => "unparsed",
    }
}

/// What a message carries, for counters (never its content).
pub(crate) fn message_kind(msg: &teloxide::types::Message) -> &'static str {
    use teloxide::types::{MediaKind, MessageKind};
    let MessageKind::Common(common) = &msg.kind else {
        return match &msg.kind {
            MessageKind::Dice(_) => "dice",
            _ => "service",
        };
    };
    match &common.media_kind {
        MediaKind::Animation(_) => "animation",
        MediaKind::Audio(_) => "audio",
        MediaKind::Contact(_) => "contact",
        MediaKind::Document(_) => "document",
        MediaKind::PaidMedia(_) => "paid_media",
        MediaKind::Game(_) => "game",
        MediaKind::Venue(_) => "venue",
        MediaKind::Location(_) => "location",
        MediaKind::Photo(_) => "photo",
        MediaKind::Poll(_) => "poll",
        MediaKind::Checklist(_) => "checklist",
        MediaKind::Sticker(_) => "sticker",
        MediaKind::Story(_) => "story",
        MediaKind::Text(_) => "text",
        MediaKind::Video(_) => "video",
        MediaKind::VideoNote(_) => "video_note",
        MediaKind::Voice(_) => "voice",
        MediaKind::Migration(_) => "migration",
    }
}

thread_local! {
    /// Set while a handler is being polled on this thread: its panics may quote user text.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// Where the last handler panic on this thread happened (`file:line`).
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Makes a panic inside a handler report only where it happened: its message may quote the
/// user's text (a slice cut inside a character prints the string), which must not reach logs
/// or the dead letters. Panics anywhere else are reported as before. Call once at start.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_HANDLER.with(Cell::get) {
            let at = info.location().map_or_else(
                || "an unknown place".to_owned(),
                |l| format!("{}:{}", l.file(), l.line()),
            );
            PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
        } else {
            previous(info);
        }
    }));
}

/// Polls the handler with [`IN_HANDLER`] set.
struct Flagged<F>(F);

impl<F: Future + Unpin> Future for Flagged<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let was = IN_HANDLER.with(|f| f.replace(true));
        let polled = std::pin::Pin::new(&mut self.0).poll(cx);
        IN_HANDLER.with(|f| f.set(was));
        polled
    }
}

/// Where the panic just caught happened, as the hook saw it (never its message).
fn panic_place(_panic: &(dyn Any + Send)) -> String {
    PANIC_AT
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| "an unknown place".to_owned())
}

/// Runs `work`, the handling of `update`, catching a panic; a failure is retried or set
/// aside, a success or a refusal marks the update handled.
pub(crate) async fn isolated<F>(front: &Front, update: &Update, work: F)
where
    F: Future<Output = Result<(), HandlerError>>,
{
    let id = i64::from(update.id.0);
    let kind = kind_of(update);
    // A replay's try is counted before it starts: had the process died during its handling,
    // the next start would see it (a crash loop ends as a dead letter, not as a loop). Its
    // count, when written, is this try's: a panic in it is the same attempt, not another.
    let counted = if front.take_replayed(id) {
        let reason = "the process stopped while handling it";
        // The rare paths' store futures are boxed: held inline they would size this future,
        // which every update's handling creates and moves (see `router::on_message`).
        match Box::pin(front.engine().store().note_update_failure(id, reason)).await {
            Ok(attempts) => Some(attempts),
            Err(e) => {
                tracing::debug!(update_id = id, error = %e, "could not count a replay's attempt");
                None
            }
        }
    } else {
        None
    };
    let failure = match Flagged(Box::pin(AssertUnwindSafe(work).catch_unwind())).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(judge(&error)),
        Err(panic) => {
            front.metrics().handler_panicked();
            let place = panic_place(panic.as_ref());
            tracing::error!(update_id = id, kind, at = %place, "a handler panicked; the update is set aside after {PANICS_MAX} tries");
            Some(Failure::Panic(format!("panicked at {place}")))
        }
    };
    front.leave_backlog(update);
    match failure {
        None => front.finished(id),
        Some(Failure::Permanent(reason)) => {
            tracing::warn!(update_id = id, kind, error = %reason, "update refused; not retried");
            front.finished(id);
        }
        Some(failure) => Box::pin(front.failed(update, failure, counted)).await,
    }
}

impl Front {
    /// The update was handled (or refused): the inbox will not replay it.
    pub(crate) fn finished(&self, id: i64) {
        self.inner.attempts.lock().remove(&id);
        self.update_handled(id);
    }

    /// Counts a failed attempt at `update` (in the inbox when the database answers, here in any
    /// case; `counted`: the inbox's count already holds this try, a replay's), then tries it
    /// again after a pause or sets it aside.
    pub(crate) async fn failed(&self, update: &Update, failure: Failure, counted: Option<u32>) {
        let id = i64::from(update.id.0);
        let kind = kind_of(update);
        // Panics and transient failures are counted apart: only panics (with the replays that
        // died, counted in the inbox) can set an update aside.
        let (panics, transient) = {
            let mut attempts = self.inner.attempts.lock();
            let counts = attempts.entry(id).or_insert((0, 0));
            match failure {
                Failure::Panic(_) => counts.0 += 1,
                _ => counts.1 += 1,
            }
            *counts
        };
        let attempts = match (&failure, counted) {
            (Failure::Panic(_), Some(counted)) => counted.max(panics),
            (Failure::Panic(_), None) => self
                .engine()
                .store()
                .note_update_failure(id, failure.reason())
                .await
                .unwrap_or(0)
                .max(panics),
            _ => transient,
        };
        match fate(&failure, attempts) {
            Fate::Done => self.finished(id),
            Fate::Retry(pause) => {
                tracing::warn!(update_id = id, kind, attempts, error = %failure.reason(), retry_in = ?pause, "update failed; trying again");
                self.retry_after(update.clone(), pause);
            }
            Fate::SetAside => self.set_aside(update, failure.reason(), attempts).await,
        }
    }

    /// Sets aside, in the background, a recorded update that does not parse: kept with
    /// `reason` (never its text) for `genbot inbox list` and counted as a dead letter, not
    /// marked handled as if it had been. One that was never recorded is only marked handled.
    pub(crate) fn set_aside_unparsed(&self, id: i64, reason: String) {
        let front = self.clone();
        tokio::spawn(async move {
            match front.write_dead_letter(id, reason).await {
                Some(SetAside::First | SetAside::AfterRetry) => tracing::error!(
                    update_id = id,
                    "an update that does not parse set aside as a dead letter (genbot inbox list)"
                ),
                Some(SetAside::NotWaiting) => front.finished(id),
                None => {}
            }
        });
    }

    /// Writes `id`'s dead letter (counted when written): `Some(NotWaiting)` when it is not in
    /// the inbox unhandled (handled meanwhile, set aside already, never recorded), `None` when
    /// the database did not take it before the bot stopped (the next start replays the update).
    async fn write_dead_letter(&self, id: i64, reason: String) -> Option<SetAside> {
        let store = self.engine().store().clone();
        let written = genbot_engine::until_written(self.stopping(), "a dead letter", || {
            let store = store.clone();
            let reason = reason.clone();
            async move { store.dead_letter_update(id, &reason).await }
        })
        .await;
        match written {
            Ok(SetAside::NotWaiting) => Some(SetAside::NotWaiting),
            Ok(set_aside) => {
                self.metrics().dead_lettered();
                Some(set_aside)
            }
            Err(_) => {
                tracing::warn!(
                    update_id = id,
                    "the dead letter was not written; the update is replayed at the next start"
                );
                None
            }
        }
    }

    /// Sets `update` aside for good and tells its sender once.
    pub(crate) async fn set_aside(&self, update: &Update, reason: &str, attempts: u32) {
        let id = i64::from(update.id.0);
        self.inner.attempts.lock().remove(&id);
        let reason = format!("{reason} (after {attempts} attempts)");
        let set_aside = self.write_dead_letter(id, reason).await;
        // Not written (handled meanwhile by a replay elsewhere, or set aside already): nothing
        // to tell.
        if !matches!(set_aside, Some(SetAside::First | SetAside::AfterRetry)) {
            return;
        }
        tracing::error!(
            update_id = id,
            kind = kind_of(update),
            attempts,
            "update set aside as a dead letter (genbot inbox list)"
        );
        // An operator's retry that failed again: the sender was told the first time, and an
        // apology for a message they sent long ago would only puzzle them.
        if set_aside == Some(SetAside::AfterRetry) {
            return;
        }
        if let (Some(chat), Some(user)) = (update.chat(), update.from()) {
            let lang = crate::texts::Lang::from_code(user.language_code.as_deref());
            let text = crate::texts::not_handled(lang);
            let chat = chat.id;
            let notice = self.bot().send_message(chat, text);
            if let Err(e) = crate::pacing::send(self, chat, notice).await {
                tracing::debug!(chat = chat.0, error = %e, "dead-letter notice not sent");
            }
        }
    }

    /// Puts `update` back in front of the dispatcher after `pause` (unless stopping: then it
    /// stays unhandled in the inbox and the next start replays it).
    fn retry_after(&self, update: Update, pause: Duration) {
        let front = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = front.stopping().cancelled() => {}
                () = tokio::time::sleep(pause) => {
                    if front.inner.retries.send(update).is_err() {
                        tracing::debug!("no listener takes retried updates; left to the inbox");
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_end_failures_retry_and_repeated_ones_are_set_aside() {
        let refused = Failure::Permanent("Bad Request: message is not modified".into());
        assert_eq!(fate(&refused, 1), Fate::Done);
        let panic = Failure::Panic("byte index 12 is not a char boundary".into());
        assert_eq!(fate(&panic, 1), Fate::Retry(RETRY_FIRST));
        assert_eq!(fate(&panic, 2), Fate::Retry(RETRY_FIRST * 2));
        assert_eq!(fate(&panic, PANICS_MAX), Fate::SetAside);
        // However long an outage lasts, what it holds up is tried again, never set aside.
        let outage = Failure::Transient("database is locked".into());
        assert_eq!(fate(&outage, PANICS_MAX), Fate::Retry(RETRY_FIRST * 4));
        assert_eq!(fate(&outage, 1000), Fate::Retry(RETRY_MAX));
    }

    #[test]
    fn database_and_network_failures_are_transient_refusals_are_not() {
        let boxed = |e: Box<dyn std::error::Error + Send + Sync>| e;
        let judged = |e| matches!(judge(&boxed(e)), Failure::Transient(_));
        assert!(judged(Box::new(StoreError::WriterStopped)));
        assert!(judged(Box::new(StoreError::Sqlite(sqlite_busy()))));
        assert!(!judged(Box::new(StoreError::UserNotFound(
            genbot_store::UserId(1)
        ))));
        assert!(judged(Box::new(RequestError::Api(ApiError::Unknown(
            "Internal Server Error".into()
        )))));
        assert!(judged(Box::new(RequestError::Api(ApiError::Unknown(
            "Bad Gateway".into()
        )))));
        assert!(!judged(Box::new(RequestError::Api(ApiError::BotBlocked))));
        assert!(!judged(Box::new(RequestError::Api(
            ApiError::MessageNotModified
        ))));
        assert!(!judged("some other failure".into()));
    }

    fn sqlite_busy() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(5), // SQLITE_BUSY
            Some("database is locked".into()),
        )
    }

    #[tokio::test]
    #[allow(clippy::string_slice)] // the cut under test
    async fn a_handlers_panic_is_caught_with_its_place_never_its_text() {
        install_panic_hook();
        let caught = Flagged(Box::pin(
            AssertUnwindSafe(async {
                let text = String::from("/ привет");
                // The cut that took the bot down: a byte index inside a character.
                let _ = &text[..3];
            })
            .catch_unwind(),
        ))
        .await;
        let Err(panic) = caught else {
            panic!("no panic")
        };
        let place = panic_place(panic.as_ref());
        assert!(place.contains("isolation.rs"), "{place}");
        assert!(!place.contains("привет"), "{place}");
    }

    #[test]
    fn update_kinds_have_names() {
        let update: Update = serde_json::from_str(
            r#"{"update_id":1,"poll":{"id":"1","question":"q","options":[],"total_voter_count":0,
                "is_closed":false,"is_anonymous":true,"type":"regular","allows_multiple_answers":false}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kind_of(&update), "poll");
    }
}
