//! No chat slows another, nor grows without bound. The dispatch (`crate::dispatch`) handles
//! each chat's updates one at a time, in order, and queues the rest. So each chat may
//! have at most [`CHAT_BACKLOG_MAX`] updates passed on and not yet handled; beyond that its
//! newest updates are shed (marked handled, counted in `genbot_updates_shed_total`) and the
//! chat is told once a minute; a shed button press is answered with a "busy, try again" toast
//! to its presser instead. A flooding chat loses its own excess, never anyone else's
//! answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use teloxide::requests::Requester;
use teloxide::types::{Update, UpdateKind};

use crate::Front;

/// Updates one chat may have waiting for its handler: room for a big group's burst (every
/// member asking at once), yet a flood's queue stays small.
pub(crate) const CHAT_BACKLOG_MAX: usize = 256;
/// A chat whose backlog was shed is told at most this often.
const TELL_EVERY: Duration = Duration::from_secs(60);

/// Keys (chats, or a chat and a user) for which something was done, and when: to do it at most
/// once per interval.
#[derive(Debug)]
pub(crate) struct OncePer<K = i64>(parking_lot::Mutex<HashMap<K, Instant>>);

impl<K> Default for OncePer<K> {
    fn default() -> Self {
        OncePer(parking_lot::Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq> OncePer<K> {
    /// Whether `key` had nothing done for `every`; if so, it counts as done now.
    pub(crate) fn first_in(&self, key: K, every: Duration) -> bool {
        let mut done = self.0.lock();
        let now = Instant::now();
        if done
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < every)
        {
            return false;
        }
        done.retain(|_, at| now.duration_since(*at) < every);
        done.insert(key, now);
        true
    }
}

impl Front {
    /// Whether `update` goes on to the dispatcher; `false` when it is `sheddable` (not work
    /// already taken on) and its chat has too many waiting (the update is then marked handled,
    /// counted and the chat told once a minute). The flood limit was applied before it was
    /// recorded (see [`crate::flood`]).
    pub(crate) fn enter_backlog(&self, update: &Update, sheddable: bool) -> bool {
        let Some(chat) = update.chat().map(|c| c.id) else {
            return true;
        };
        {
            let mut backlog = self.inner.backlog.lock();
            let waiting = backlog.entry(chat.0).or_insert(0);
            if *waiting < CHAT_BACKLOG_MAX || !sheddable {
                *waiting += 1;
                return true;
            }
        }
        self.metrics().shed();
        self.finished(i64::from(update.id.0));
        tracing::warn!(
            chat = chat.0,
            update_id = update.id.0,
            "chat backlog full; update shed"
        );
        // Every press is answered, or the presser's client spins until it gives up: a toast to
        // the presser alone, never a notice in the chat (a group, maybe).
        if let UpdateKind::CallbackQuery(query) = &update.kind {
            let lang = crate::texts::Lang::from_code(query.from.language_code.as_deref());
            self.answer_dropped_press(query.id.clone(), Some(crate::texts::busy_press(lang)));
            return false;
        }
        if self.inner.backlog_told.first_in(chat.0, TELL_EVERY) {
            let lang = crate::texts::Lang::from_code(
                update.from().and_then(|u| u.language_code.as_deref()),
            );
            let front = self.clone();
            tokio::spawn(async move {
                let notice = front
                    .bot()
                    .send_message(chat, crate::texts::chat_backlog(lang));
                if let Err(e) = crate::pacing::send(&front, chat, notice).await {
                    tracing::debug!(chat = chat.0, error = %e, "backlog notice not sent");
                }
            });
        }
        false
    }

    /// `update` left the dispatcher (handled, refused, failed or set aside).
    pub(crate) fn leave_backlog(&self, update: &Update) {
        let Some(chat) = update.chat().map(|c| c.id) else {
            return;
        };
        let mut backlog = self.inner.backlog.lock();
        if let Some(waiting) = backlog.get_mut(&chat.0) {
            *waiting = waiting.saturating_sub(1);
            if *waiting == 0 {
                backlog.remove(&chat.0);
            }
        }
    }
}
