//! `/settings`: the options the user's model declares in the catalogue (aspect ratio, steps,
//! guidance, seed, …) with their current values, as inline keyboards; a press saves the value
//! for that user and model. Free-text inputs (`negative_prompt`) are set in the prompt instead
//! (`--no …`), and any option may be overridden per prompt (`--ar 16:9`).
//!
//! Imports the shared layer, never another feature or the router.

use genbot_engine::catalogue::{inline, Model, ParamSpec};
use genbot_store::User;
use serde_json::{Map, Value};
use teloxide::prelude::*;
use teloxide::types::{CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, User as TgUser};

use crate::pacing::send;
use crate::shared::account::registered;
use crate::shared::buttons::Button;
use crate::shared::HandlerError;
use crate::texts::{self, Lang};
use crate::Front;

/// The reset button's data after `set:` (any other is `NAME=VALUE`).
const RESET: &str = "reset";
/// Telegram refuses callback data longer than this.
const CALLBACK_DATA_MAX: usize = 64;

fn model_of<'f>(front: &'f Front, user: &User) -> &'f Model {
    let catalogue = front.engine().catalogue();
    user.selected_model
        .as_deref()
        .and_then(|id| catalogue.get(id))
        .filter(|m| m.enabled)
        .unwrap_or_else(|| catalogue.default_model())
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The values offered as buttons for one input.
fn offered(spec: &ParamSpec) -> Vec<Value> {
    let mut values: Vec<Value> = match spec {
        ParamSpec::Choice { choices, .. } => {
            choices.iter().map(|c| Value::from(c.as_str())).collect()
        }
        ParamSpec::Bool { .. } => vec![Value::from(true), Value::from(false)],
        ParamSpec::Int { min, max, default } => {
            let mut picks = vec![*min, (*min + *max) / 2, *default, *max];
            picks.sort_unstable();
            picks.dedup();
            picks.into_iter().map(Value::from).collect()
        }
        ParamSpec::Float { min, max, default } => {
            let mut picks = vec![*min, *default, *max];
            picks.sort_by(f64::total_cmp);
            picks.dedup();
            picks.into_iter().map(Value::from).collect()
        }
        ParamSpec::RandomInt { .. } | ParamSpec::Text { .. } => Vec::new(),
    };
    values.truncate(8);
    values
}

fn view(lang: Lang, model: &Model, current: &Map<String, Value>) -> (String, InlineKeyboardMarkup) {
    let mut text = texts::settings_header(lang, &model.name);
    let flags = inline::flags_of(model);
    let mut rows = Vec::new();
    for ((name, spec), flag) in model.params.iter().zip(flags) {
        let value = current.get(name);
        let value_text = match (value, spec) {
            (Some(v), _) => shown(v),
            (None, ParamSpec::RandomInt { .. }) => texts::random(lang),
            (None, ParamSpec::Text { .. }) => texts::text_only(lang, &flag),
            (None, spec) => shown(&spec.default_value()),
        };
        text.push_str(&format!("\n{name} ({flag}): {value_text}"));
        let effective = value.cloned().unwrap_or_else(|| spec.default_value());
        let mut row: Vec<InlineKeyboardButton> = offered(spec)
            .into_iter()
            .filter_map(|option| {
                let data = Button::Setting(&format!("{name}={}", shown(&option))).data();
                let mark = if option == effective { "✅" } else { "" };
                (data.len() <= CALLBACK_DATA_MAX).then(|| {
                    InlineKeyboardButton::callback(format!("{mark}{}", shown(&option)), data)
                })
            })
            .collect();
        if matches!(spec, ParamSpec::RandomInt { .. }) && value.is_some() {
            row.push(InlineKeyboardButton::callback(
                format!("🎲 {}", texts::random(lang)),
                Button::Setting(&format!("{name}=random")).data(),
            ));
        }
        if !row.is_empty() {
            rows.push(row);
        }
    }
    rows.push(vec![InlineKeyboardButton::callback(
        texts::reset_button(lang),
        Button::Setting(RESET).data(),
    )]);
    (text, InlineKeyboardMarkup::new(rows))
}

/// `/settings`.
pub(crate) async fn show(
    front: &Front,
    chat: ChatId,
    from: &TgUser,
    lang: Lang,
) -> Result<(), HandlerError> {
    let user = registered(front, from).await?;
    let model = model_of(front, &user);
    let (text, keyboard) = view(lang, model, &user.settings_for(&model.id));
    send(
        front,
        chat,
        front.bot().send_message(chat, text).reply_markup(keyboard),
    )
    .await?;
    Ok(())
}

/// A press on a `/settings` button (`data`: what follows `set:`). Returns the answer text.
pub(crate) async fn press(
    front: &Front,
    query: &CallbackQuery,
    data: &str,
) -> Result<String, HandlerError> {
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let users = front.engine().users();
    let user = registered(front, &query.from).await?;
    let model = model_of(front, &user);
    // One input changed in the row, not the map read above written back: two presses at once
    // (from two chats) would each have lost the other's.
    let (answer, user) = if data == RESET {
        let user = users
            .set_model_settings(user.id, model.id.clone(), serde_json::Map::new())
            .await?;
        (texts::settings_reset(lang), user)
    } else {
        let (name, text) = data.split_once('=').unwrap_or((data, ""));
        let Some(spec) = model.params.get(name) else {
            return Ok(texts::setting_refused(lang, name, "—"));
        };
        let (answer, value) = if text == "random" && matches!(spec, ParamSpec::RandomInt { .. }) {
            (texts::setting_saved(lang, name, &texts::random(lang)), None)
        } else {
            match spec.check(name, &spec.value_from_text(text)) {
                Ok(value) => (
                    texts::setting_saved(lang, name, &shown(&value)),
                    Some(value),
                ),
                Err(_) => return Ok(texts::setting_refused(lang, name, &spec.allowed())),
            }
        };
        let user = users
            .set_model_setting(user.id, model.id.clone(), name.to_owned(), value)
            .await?;
        (answer, user)
    };
    // Only a /settings message in the presser's own private chat is redrawn: a press on any
    // other message (a result in a group) was forged and leaves it as it is.
    let own = |m: &&teloxide::types::MaybeInaccessibleMessage| m.chat().id.0 == user.id.0;
    if let Some(message) = query.message.as_ref().filter(own) {
        let (text, keyboard) = view(lang, model, &user.settings_for(&model.id));
        let chat = message.chat().id;
        send(
            front,
            chat,
            front
                .bot()
                .edit_message_text(chat, message.id(), text)
                .reply_markup(keyboard),
        )
        .await?;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_offer_their_range_ends_and_default() {
        let steps = ParamSpec::Int {
            min: 1,
            max: 50,
            default: 28,
        };
        assert_eq!(offered(&steps), [1, 25, 28, 50].map(Value::from).to_vec());
        assert!(offered(&ParamSpec::RandomInt { min: 0, max: 9 }).is_empty());
    }
}
