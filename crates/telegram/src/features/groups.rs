//! Groups: what the bot does with a message addressed to it there (the router reads which
//! messages are, [`crate::command::GroupInput`]). A prompt is charged to its asker as in a
//! private chat; the result goes to the group as a reply to the asking message, and refusals
//! too. No queue-position message is sent in a group: a group gets at most 20 messages a minute
//! (`SendLimits::per_group_per_min`), which are kept for results. A photo addressed to the bot
//! is image-to-image's, as in a private chat.
//!
//! Imports the shared layer, never another feature or the router.

use teloxide::prelude::*;
use teloxide::types::User as TgUser;

use crate::shared::ids::reply_target;
use crate::shared::{reply, submit, HandlerResult};
use crate::texts::{self, Lang};
use crate::Front;

/// `/help` in a group (`me`: the bot's username): answered once a minute, the rest merged into
/// it.
pub(crate) async fn help(front: &Front, msg: &Message, lang: Lang, me: &str) -> HandlerResult {
    // Ten askers a minute get one answer: the group's 20 messages a minute are for results.
    if front.group_help_due(msg.chat.id) {
        reply::in_group(front, msg, texts::group_help(lang, me)).await?;
    }
    Ok(())
}

/// A prompt addressed to the bot in a group (`/img prompt`, or a reply to one of its messages).
pub(crate) async fn prompt(
    front: &Front,
    msg: &Message,
    from: &TgUser,
    lang: Lang,
    update: i64,
    prompt: &str,
    me: &str,
) -> HandlerResult {
    if prompt.is_empty() {
        // The help `/help` gives, under its limit: thirty empty `/img`s were thirty answers,
        // and a real result waited behind them for the group's budget.
        return help(front, msg, lang, me).await;
    }
    let reply = Some(reply_target(&msg.chat, msg.id));
    let request = submit::prompt_request(from, prompt, update, reply);
    submit::to_group(front, msg, from, lang, request).await
}
