//! Who and where an update is from: the store's ids for Telegram's, the chat a button was
//! pressed in, and whether a chat follows group rules. Pure reads of the update.

use genbot_store::{ReplyTarget, UserId};
use teloxide::types::{CallbackQuery, Chat, ChatId, Message, MessageId, Update, User as TgUser};

pub(crate) fn user_id(from: &TgUser) -> UserId {
    UserId(i64::try_from(from.id.0).unwrap_or(i64::MAX))
}

/// The update's id as the inbox and the jobs store it.
pub(crate) fn update_id(update: &Update) -> i64 {
    i64::from(update.id.0)
}

/// The chat a button was pressed in (the presser's private chat when Telegram no longer says).
pub(crate) fn press_chat(query: &CallbackQuery) -> ChatId {
    query
        .message
        .as_ref()
        .map_or_else(|| ChatId(user_id(&query.from).0), |m| m.chat().id)
}

/// Whether updates from `chat` follow group rules.
pub(crate) fn is_group(chat: &Chat) -> bool {
    chat.is_group() || chat.is_supergroup()
}

/// Where a result asked for by `message` in `chat` goes: that chat, as a reply to it.
pub(crate) fn reply_target(chat: &Chat, message: MessageId) -> ReplyTarget {
    ReplyTarget {
        chat: chat.id.0,
        message: i64::from(message.0),
    }
}

/// Telegram's stand-ins in `from` for senders who are not a person: an anonymous admin
/// (GroupAnonymousBot), a channel posting in its linked group (Channel_Bot), an automatic forward
/// (777000). Everyone posting that way shares one of them, so they get no account here.
const PLACEHOLDER_SENDERS: [u64; 3] = [1_087_968_824, 136_817_688, 777_000];

/// Whether `msg` was sent on behalf of a chat or anonymously rather than by a person.
pub(crate) fn from_no_person(msg: &Message) -> bool {
    msg.sender_chat.is_some()
        || msg
            .from
            .as_ref()
            .is_some_and(|u| PLACEHOLDER_SENDERS.contains(&u.id.0))
}
