//! A prompt in a private chat (plain text, or `/img text`) becomes a generation: submitted, and
//! answered with its queue position; `/cancel` withdraws the user's latest queued one.
//!
//! Imports the shared layer, never another feature or the router.

use genbot_store::UserId;
use teloxide::prelude::*;
use teloxide::types::User as TgUser;

use crate::pacing::send;
use crate::shared::{submit, HandlerResult};
use crate::texts::{self, Lang};
use crate::Front;

/// A prompt (`update`: the update it came in, so a replay finds its job).
pub(crate) async fn generate(
    front: &Front,
    chat: ChatId,
    from: &TgUser,
    lang: Lang,
    update: i64,
    prompt: &str,
) -> HandlerResult {
    let request = submit::prompt_request(from, prompt, update, None);
    submit::and_track(front, from, chat, lang, request).await?;
    Ok(())
}

/// `/cancel`: the user's latest queued job withdrawn; or why it cannot be.
pub(crate) async fn cancel(front: &Front, chat: ChatId, lang: Lang, user: UserId) -> HandlerResult {
    let text = match front.engine().cancel_latest(user).await {
        Ok(job) => {
            front.waiting().lock().remove(&job);
            texts::canceled(lang)
        }
        Err(e) => texts::cancel_refused(lang, &e),
    };
    send(front, chat, front.bot().send_message(chat, text)).await?;
    Ok(())
}
