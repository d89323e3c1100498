//! The bot introducing itself: `/start` (registers the user), `/help`, and what it says to what
//! it does not understand (a command it does not know, a kind of message it cannot use).
//!
//! Imports the shared layer, never another feature or the router.

use teloxide::prelude::*;
use teloxide::types::User as TgUser;

use crate::pacing::send;
use crate::shared::account::register;
use crate::shared::HandlerResult;
use crate::texts::{self, Lang};
use crate::Front;

/// `/start`: registered (or refreshed), then welcomed with their credits and the daily limit.
pub(crate) async fn start(front: &Front, chat: ChatId, from: &TgUser, lang: Lang) -> HandlerResult {
    let stored = register(front, from).await?;
    let daily = front.engine().config().daily_limit;
    let text = texts::welcome(lang, &from.first_name, stored.credits, daily);
    say(front, chat, text).await
}

/// `/help`.
pub(crate) async fn help(front: &Front, chat: ChatId, lang: Lang) -> HandlerResult {
    say(front, chat, texts::help(lang)).await
}

/// A `/command` the bot does not know (or one hidden from this user).
pub(crate) async fn unknown_command(front: &Front, chat: ChatId, lang: Lang) -> HandlerResult {
    say(front, chat, texts::unknown_command(lang)).await
}

/// Stickers, voice, video, documents, locations, polls…: what the bot can do instead.
pub(crate) async fn unsupported(front: &Front, msg: &Message, lang: Lang) -> HandlerResult {
    front
        .metrics()
        .unsupported(crate::isolation::message_kind(msg));
    // A picture sent as a file is what image-to-image wants, sent the other way.
    let image_file = msg
        .document()
        .and_then(|d| d.mime_type.as_ref())
        .is_some_and(|mime| mime.type_() == "image");
    if image_file {
        return say(front, msg.chat.id, texts::image_as_file(lang)).await;
    }
    help(front, msg.chat.id, lang).await
}

async fn say(front: &Front, chat: ChatId, text: String) -> HandlerResult {
    send(front, chat, front.bot().send_message(chat, text)).await?;
    Ok(())
}
