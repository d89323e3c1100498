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
//! held their chat), updates tried again, and the backlog Telegram held while the database was
//! out ([`Intake`]). Those are work already taken on, or were told they are delayed, not lost;
//! their number says nothing of how fast their sender writes now.

use std::time::{Duration, Instant};

use chrono::Timelike;

use teloxide::payloads::AnswerCallbackQuerySetters;
use teloxide::requests::Requester;
use teloxide::types::{CallbackQueryId, Update, UpdateKind, User};

use crate::texts::Lang;
use crate::Front;

/// A flooding user is told at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);
impl Intake {
    /// Catching up from now (this process receives again after nobody may have): messages
    /// dated before this second are a backlog; those of this very second are live (Telegram
    /// dates in whole seconds), so a flood that starts with the process is limited.
    pub(crate) fn catching_up() -> Intake {
        let now = chrono::Utc::now();
        Intake::CatchingUp {
            before: now.with_nanosecond(0).unwrap_or(now),
            since: Instant::now(),
        }
    }

    /// Whether an update dated `dated` (a message's date; `None` for what has none) is part
    /// of the outage's backlog; see [`Front::within_flood_limit`].
    fn is_backlog(&mut self, dated: Option<chrono::DateTime<chrono::Utc>>) -> bool {
        match *self {
            Intake::Live => false,
            Intake::Outage => true,
            Intake::CatchingUp { since, .. } if since.elapsed() > CATCH_UP_AT_MOST => {
                *self = Intake::Live;
                false
            }
            Intake::CatchingUp { before, .. } => match dated {
                Some(date) if date < before => true,
                Some(_) => {
                    *self = Intake::Live;
                    false
                }
                None => false,
            },
        }
    }
}

/// The longest a catch-up after an outage exempts anything: a flood that began after the
/// outage is limited again by then whatever its messages' dates.
const CATCH_UP_AT_MOST: Duration = Duration::from_secs(300);

/// Where the intake stands with the database. During an outage nothing can be recorded, and
/// Telegram sends again what it was refused (webhook) or holds what comes (polling): dropping
/// any of it as flood would lose messages sent once. After it, what Telegram held arrives at
/// once; it is the outage's backlog, told by its date, not a flood. So is what Telegram held
/// while nobody received it: before this process started, or before it took over polling.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Intake {
    Live,
    /// Recording failed, or took so long that senders were told their message is delayed.
    Outage,
    /// Recording works again since `since`; messages dated before `before` are the backlog.
    CatchingUp {
        before: chrono::DateTime<chrono::Utc>,
        since: Instant,
    },
}

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
        if self.outage_backlog(update) {
            return true;
        }
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
            let text = first
                .then(|| crate::texts::slow_down(Lang::from_code(from.language_code.as_deref())));
            self.answer_dropped_press(query.id.clone(), text);
        } else if let Some(chat) = chat.filter(|_| first) {
            self.tell_to_slow_down(chat, from);
        }
        false
    }

    /// The database did not take what the intake received (refused it, or kept it waiting until
    /// its senders were told it is delayed).
    pub(crate) fn intake_refused(&self) {
        *self.inner.intake.lock() = Intake::Outage;
    }

    /// The database took what the intake received; after an outage, what Telegram held meanwhile
    /// is caught up from now on.
    pub(crate) fn intake_recorded(&self) {
        let mut intake = self.inner.intake.lock();
        if matches!(*intake, Intake::Outage) {
            // Messages of the second the outage ended in were held too (their senders were
            // told they are delayed): all of that second is backlog.
            *intake = Intake::CatchingUp {
                before: chrono::Utc::now(),
                since: Instant::now(),
            };
        }
    }

    /// This replica (again) receives what Telegram sends, after a time in which nobody may
    /// have: at start, or on taking over polling.
    pub(crate) fn intake_resumed(&self) {
        *self.inner.intake.lock() = Intake::catching_up();
    }

    /// Whether `update` is part of an outage's backlog: received during the outage, or a message
    /// dated before it ended. The first message dated after it (or the catch-up's time running
    /// out) ends the catch-up: Telegram sends in order, so what follows is live.
    fn outage_backlog(&self, update: &Update) -> bool {
        let dated = match &update.kind {
            UpdateKind::Message(message) => Some(message.date),
            // A press carries no date of its own; one dropped is answered, never lost.
            _ => None,
        };
        self.inner.intake.lock().is_backlog(dated)
    }

    /// Answers a press dropped unhandled (by the flood limit, or shed from a full chat backlog)
    /// off the intake path, with `text` as its toast (to the presser alone) when given.
    pub(crate) fn answer_dropped_press(&self, query: CallbackQueryId, text: Option<String>) {
        let front = self.clone();
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Utc};

    #[test]
    fn an_outage_exempts_all_then_only_messages_dated_before_it_ended() {
        let mut intake = Intake::Live;
        assert!(!intake.is_backlog(Some(Utc::now())));
        intake = Intake::Outage;
        assert!(intake.is_backlog(Some(Utc::now())));
        assert!(intake.is_backlog(None), "a refused delivery comes again");
        let ended = Utc::now();
        intake = Intake::CatchingUp {
            before: ended,
            since: Instant::now(),
        };
        let held = ended - TimeDelta::seconds(20);
        assert!(intake.is_backlog(Some(held)));
        assert!(intake.is_backlog(Some(held)));
        assert!(!intake.is_backlog(None), "a press has no date: live");
        // The first message sent after the outage ends the catch-up: a flood after it is live,
        // even one whose later messages Telegram happened to date earlier.
        assert!(!intake.is_backlog(Some(ended + TimeDelta::seconds(1))));
        assert!(!intake.is_backlog(Some(held)));
        assert!(matches!(intake, Intake::Live));
    }

    #[test]
    fn at_start_what_was_held_is_a_backlog_and_this_seconds_messages_are_live() {
        let mut intake = Intake::catching_up();
        let Intake::CatchingUp { before, .. } = intake else {
            panic!("{intake:?}");
        };
        assert!(intake.is_backlog(Some(before - TimeDelta::seconds(1))));
        assert!(
            !intake.is_backlog(Some(before)),
            "a message dated this second (Telegram's dates are whole seconds) is live"
        );
        assert!(matches!(intake, Intake::Live));
    }

    #[test]
    fn a_catch_up_ends_by_time_whatever_the_dates() {
        let Some(long_ago) = Instant::now().checked_sub(CATCH_UP_AT_MOST + Duration::from_secs(1))
        else {
            return;
        };
        let mut intake = Intake::CatchingUp {
            before: Utc::now(),
            since: long_ago,
        };
        assert!(!intake.is_backlog(Some(Utc::now() - TimeDelta::seconds(60))));
        assert!(matches!(intake, Intake::Live));
    }
}
