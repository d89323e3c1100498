//! `/models`: the catalogue's enabled models as buttons, the user's current one marked; a press
//! chooses it (for prompts that name none).
//!
//! Imports the shared layer, never another feature or the router.

use genbot_store::UserId;
use teloxide::prelude::*;
use teloxide::types::{CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup};

use crate::pacing::send;
use crate::shared::account::registered;
use crate::shared::buttons::Button;
use crate::shared::ids::user_id;
use crate::shared::reply::{shorten, to_press};
use crate::shared::HandlerResult;
use crate::texts::{self, Lang};
use crate::Front;

/// `/models`.
pub(crate) async fn show(front: &Front, chat: ChatId, lang: Lang, user: UserId) -> HandlerResult {
    let engine = front.engine();
    let current = engine
        .users()
        .get(user)
        .await?
        .and_then(|u| u.selected_model);
    let current = current.unwrap_or_else(|| engine.catalogue().default_model().id.clone());
    let rows = engine.catalogue().enabled().map(|model| {
        let mark = if model.id == current { "✅ " } else { "" };
        vec![InlineKeyboardButton::callback(
            format!("{mark}{} · {}", model.name, model.cost),
            Button::Model(&model.id).data(),
        )]
    });
    send(
        front,
        chat,
        front
            .bot()
            .send_message(chat, texts::choose_model(lang))
            .reply_markup(InlineKeyboardMarkup::new(rows)),
    )
    .await?;
    Ok(())
}

/// A `/models` button: the model chosen, said to the presser and shown in their own chat.
pub(crate) async fn pressed(front: &Front, query: &CallbackQuery, model_id: &str) -> HandlerResult {
    let user = user_id(&query.from);
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let engine = front.engine();
    let Some(model) = engine.catalogue().get(model_id).filter(|m| m.enabled) else {
        // Stale (a model since withdrawn) or forged: said to the presser alone, and the
        // message, which others may see, is left as it is.
        let unavailable = texts::model_unavailable(lang, &shorten(model_id, 64));
        return to_press(front, query, unavailable).await;
    };
    registered(front, &query.from).await?;
    engine
        .users()
        .set_selected_model(user, Some(model.id.clone()))
        .await?;
    let text = texts::model_chosen(lang, &model.name);
    to_press(front, query, text.clone()).await?;
    // Only the presser's own private chat shows the choice: a /models list is sent nowhere
    // else, and a press on anything else was forged.
    if let Some(message) = query.message.as_ref().filter(|m| m.chat().id.0 == user.0) {
        let chat = message.chat().id;
        send(
            front,
            chat,
            front.bot().edit_message_text(chat, message.id(), text),
        )
        .await?;
    }
    Ok(())
}
