//! Simulated users: they send texts, press inline buttons and read their chat.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::state::{BotState, Entry};

/// A group the bot is in, with privacy mode on (Telegram's default): the bot receives commands
/// and replies to its own messages; other messages are shown in the chat but never delivered.
#[derive(Debug, Clone)]
pub struct SimGroup {
    chat: SimUser,
}

impl SimGroup {
    pub(super) fn new(state: Arc<BotState>, id: i64, title: &str) -> Self {
        SimGroup {
            chat: SimUser::new(state, id, title, None),
        }
    }

    /// The group's chat id (negative).
    pub fn id(&self) -> i64 {
        self.chat.id
    }

    /// `member` writes `text`; returns the update id, or `None` when privacy mode keeps it from
    /// the bot (not a command).
    pub fn send_text(&self, member: &SimUser, text: &str) -> Option<i64> {
        if !text.starts_with('/') {
            self.chat.state.unseen_group_text(self.chat.id, text);
            return None;
        }
        self.chat
            .state
            .message_update(self.chat.id, member.id, text, None)
    }

    /// `member` sends a photo (the mock's PNG) with `caption`; delivered only when the caption
    /// is a command, as privacy mode does.
    pub fn send_photo(&self, member: &SimUser, caption: &str) -> Option<i64> {
        if !caption.starts_with('/') {
            return None;
        }
        self.chat
            .state
            .photo_update(self.chat.id, member.id, Some(caption))
    }

    /// `member` replies to the bot's message `message_id` (delivered under privacy mode).
    pub fn reply(&self, member: &SimUser, message_id: i64, text: &str) -> Option<i64> {
        self.chat
            .state
            .message_update(self.chat.id, member.id, text, Some(message_id))
    }

    /// `member` presses the button with `data` under the bot's message `message_id`.
    pub fn press(&self, member: &SimUser, message_id: i64, data: &str) -> Option<i64> {
        self.chat
            .state
            .press_update(self.chat.id, member.id, message_id, data)
    }

    /// The group's chat, to read and wait on.
    pub fn chat(&self) -> &SimUser {
        &self.chat
    }
}

/// One simulated user and their private chat with the bot (chat id = user id, as in Telegram).
#[derive(Debug, Clone)]
pub struct SimUser {
    state: Arc<BotState>,
    id: i64,
    changed: Arc<Notify>,
}

impl SimUser {
    pub(super) fn new(
        state: Arc<BotState>,
        id: i64,
        first_name: &str,
        language: Option<&str>,
    ) -> Self {
        let changed = state.ensure_chat(id, first_name, language);
        SimUser { state, id, changed }
    }

    /// The user's (and chat's) id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Sends a text message (commands included); returns its update id.
    pub fn send_text(&self, text: &str) -> i64 {
        self.state.text_update(self.id, text).unwrap_or_default()
    }

    /// Sends a photo (a 1×1 PNG the bot can fetch with `getFile`) with an optional caption;
    /// returns its update id.
    pub fn send_photo(&self, caption: Option<&str>) -> i64 {
        self.state
            .photo_update(self.id, self.id, caption)
            .unwrap_or_default()
    }

    /// Presses the inline button with `data` under the bot's message `message_id`; `None` when
    /// the chat has no such message.
    pub fn press(&self, message_id: i64, data: &str) -> Option<i64> {
        self.state.press_update(self.id, self.id, message_id, data)
    }

    /// Opens the bot's invoice `message_id` and pays: a `pre_checkout_query` the bot must
    /// answer; if it says yes, Telegram's `successful_payment` message follows with a new charge
    /// id. `None` when the chat has no such invoice.
    pub fn pay(&self, message_id: i64) -> Option<i64> {
        self.state.pay_update(self.id, message_id)
    }

    /// The bot's latest invoice in the chat (its message id), for [`SimUser::pay`].
    pub fn last_invoice(&self) -> Option<i64> {
        self.state.read_transcript(self.id, |transcript| {
            transcript.iter().rev().find_map(|entry| match entry {
                Entry::BotInvoice { message_id, .. } => Some(*message_id),
                _ => None,
            })
        })
    }

    /// The bot's latest message with inline buttons (its message id), for [`SimUser::press`].
    pub fn last_keyboard(&self) -> Option<i64> {
        self.state.read_transcript(self.id, |transcript| {
            transcript.iter().rev().find_map(|entry| match entry {
                Entry::BotText {
                    message_id,
                    buttons,
                    ..
                } if !buttons.is_empty() => Some(*message_id),
                _ => None,
            })
        })
    }

    /// Telegram reports the payment `charge_id` again (a new update, the same charge).
    pub fn repeat_payment(&self, charge_id: &str) -> Option<i64> {
        self.state.successful_payment_update(self.id, charge_id)
    }

    /// Everything said in the chat so far.
    pub fn transcript(&self) -> Vec<Entry> {
        self.state.transcript(self.id)
    }

    /// How many entries the transcript has (where the next one will be), without copying it.
    pub fn transcript_len(&self) -> usize {
        self.state.read_transcript(self.id, <[Entry]>::len)
    }

    /// Waits until `done` holds for the transcript; returns it, or `None` after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Entry]) -> bool,
    ) -> Option<Vec<Entry>> {
        self.wait_for_after(0, timeout, done).await
    }

    /// Waits until `done` holds for the entries from index `seen` on (those said since the
    /// transcript had `seen` entries); returns them, or `None` after `timeout`. Only those are
    /// copied at each wake-up: a crowd's users wait this way at every step.
    pub async fn wait_for_after(
        &self,
        seen: usize,
        timeout: Duration,
        done: impl Fn(&[Entry]) -> bool,
    ) -> Option<Vec<Entry>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // A copy, not a look in place under the mock's lock: `done` may ask the mock
            // anything (another user's transcript), which would deadlock on that lock.
            let since = self
                .state
                .read_transcript(self.id, |t| t[seen.min(t.len())..].to_vec());
            if done(&since) {
                return Some(since);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Waits for the bot's next text after the transcript's current length.
    pub async fn next_bot_text(
        &self,
        timeout: Duration,
    ) -> Option<(i64, String, Vec<(String, String)>)> {
        let seen = self.transcript_len();
        let transcript = self
            .wait_for(timeout, |t| {
                t[seen.min(t.len())..]
                    .iter()
                    .any(|e| matches!(e, Entry::BotText { .. }))
            })
            .await?;
        transcript[seen..].iter().find_map(|e| match e {
            Entry::BotText {
                message_id,
                text,
                buttons,
                ..
            } => Some((*message_id, text.clone(), buttons.clone())),
            _ => None,
        })
    }
}
