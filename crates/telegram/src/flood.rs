//! The per-user flood limit (`FrontConfig::user_updates_per_sec` after a burst of
//! `user_burst`), checked on live updates as they arrive from Telegram (a `getUpdates` batch, a
//! webhook delivery), before they are recorded in the inbox. Checked when its handler runs
//! instead, a burst is never cut: a chat's handlers run one at a time, each waiting for
//! Telegram's per-chat send pacing (about one answer a second), and by then the limiter has
//! refilled, so 300 messages sent in a quarter of a second were answered one by one for
//! minutes. At intake the excess is dropped at once, unrecorded (so no replica handles it),
//! counted in `genbot_updates_dropped_flood_total`, and the sender told once per flood.
//!
//! Only messages and button presses count. Payments, pre-checkout queries and membership
//! changes are never limited, and neither is what comes from elsewhere than live traffic:
//! updates taken from the inbox (recorded but never taken, e.g. while a replica that then died
//! held their chat), updates tried again, and the backlog Telegram held for the poller while
//! the database was out (`crate::inbox`). Those are work already taken on, or were told they
//! are delayed, not lost; their number says nothing of how fast their sender writes now.
//! Which it is is decided by where an update comes from, never by timing.

use std::time::{Duration, Instant};

use teloxide::payloads::AnswerCallbackQuerySetters;
use teloxide::requests::Requester;
use teloxide::types::{CallbackQueryId, Update, UpdateKind, User};

use crate::texts::Lang;
use crate::Front;

/// A flooding user is told at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl Front {
    /// The live updates of a batch just received within their senders' flood limits; the
    /// others are dropped here (see [`Front::within_flood_limit`]).
    pub(crate) fn within_flood_limits(&self, updates: Vec<Update>) -> Vec<Update> {
        updates
            .into_iter()
            .filter(|update| self.within_flood_limit(update))
            .collect()
    }

    /// Whether the live `update`, not recorded yet, is within its sender's flood limit; when
    /// not, it is dropped here (counted; never recorded, so never handled) and the sender told
    /// once per flood.
    pub(crate) fn within_flood_limit(&self, update: &Update) -> bool {
        let (from, chat) = match &update.kind {
            // Money already taken.
            UpdateKind::Message(message) if message.successful_payment().is_some() => return true,
            // Only a private chat is told: in a group every flooding member's notice would land
            // in the same chat, spamming everyone else in it.
            UpdateKind::Message(message) => (
                message.from.as_ref(),
                Some(message.chat.id).filter(|_| message.chat.is_private()),
            ),
            // A press is told in its own answer (see below), never in its message's chat: that
            // may be a group the notice would spam.
            UpdateKind::CallbackQuery(query) => (Some(&query.from), None),
            _ => return true,
        };
        let Some(from) = from else {
            return true;
        };
        let user = i64::try_from(from.id.0).unwrap_or(i64::MAX);
        if self.inner.flood.check_key(&user).is_ok() {
            return true;
        }
        self.metrics().dropped();
        tracing::debug!(
            user_id = user,
            update_id = update.id.0,
            "over the flood limit; dropped"
        );
        let first = self.first_warning(user);
        if let UpdateKind::CallbackQuery(query) = &update.kind {
            // Every press is answered, or the presser's client spins until it gives up; the
            // first of a flood says why, to the presser alone (a toast, never in the chat).
            self.answer_dropped_press(query.id.clone(), first.then_some(from));
        } else if let Some(chat) = chat.filter(|_| first) {
            self.tell_to_slow_down(chat, from);
        }
        false
    }

    /// Answers a press dropped by the flood limit, off the intake path: with the slow-down
    /// notice when `tell` is the presser, empty otherwise.
    fn answer_dropped_press(&self, query: CallbackQueryId, tell: Option<&User>) {
        let front = self.clone();
        let text = tell
            .map(|from| crate::texts::slow_down(Lang::from_code(from.language_code.as_deref())));
        tokio::spawn(async move {
            let mut answer = front.bot().answer_callback_query(query);
            if let Some(text) = text {
                answer = answer.text(text);
            }
            if let Err(e) = crate::pacing::call(&front, answer).await {
                tracing::debug!(error = %e, "a dropped press was not answered");
            }
        });
    }

    /// Whether `user` was not warned within [`WARN_EVERY`]; if so, they count as warned now.
    fn first_warning(&self, user: i64) -> bool {
        let mut warned = self.inner.warned.lock();
        let now = Instant::now();
        let first = warned
            .get(&user)
            .is_none_or(|at| now.duration_since(*at) > WARN_EVERY);
        if first {
            warned.insert(user, now);
        }
        first
    }

    /// Sends the slow-down notice through the pacer, off the intake path.
    fn tell_to_slow_down(&self, chat: teloxide::types::ChatId, from: &User) {
        let lang = Lang::from_code(from.language_code.as_deref());
        let front = self.clone();
        tokio::spawn(async move {
            let notice = front
                .bot()
                .send_message(chat, crate::texts::slow_down(lang));
            if let Err(e) = crate::pacing::send(&front, chat, notice).await {
                tracing::debug!(chat = chat.0, error = %e, "flood notice not sent");
            }
        });
    }
}
