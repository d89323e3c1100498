//! Answers that follow a rule of their own: in a group (a reply to the asking message, at most
//! once a minute per member), to a button press (to the presser alone), and user text echoed
//! back (cut on a character boundary).

use teloxide::prelude::*;
use teloxide::types::{CallbackQuery, ReplyParameters};

use super::HandlerResult;
use crate::pacing::send;
use crate::Front;

/// Answers `msg` in its chat, as a reply to it: at most once a minute per member (the rest are
/// dropped), so one member's refusals never spend the group's budget.
pub(crate) async fn in_group(front: &Front, msg: &Message, text: String) -> HandlerResult {
    let chat = msg.chat.id;
    let member = msg.from.as_ref().map_or(0, |u| u.id.0);
    if !front.group_reply_due(chat, member) {
        tracing::debug!(
            chat = chat.0,
            "group answer dropped: this member was answered within the minute"
        );
        return Ok(());
    }
    send(
        front,
        chat,
        front
            .bot()
            .send_message(chat, text)
            .reply_parameters(ReplyParameters::new(msg.id)),
    )
    .await?;
    Ok(())
}

/// Answers a press, to the presser alone: `text` shown (nothing when empty).
pub(crate) async fn to_press(front: &Front, query: &CallbackQuery, text: String) -> HandlerResult {
    let mut answer = front.bot().answer_callback_query(query.id.clone());
    if !text.is_empty() {
        answer = answer.text(text);
    }
    crate::pacing::call(front, answer).await?;
    Ok(())
}

/// At most `max` characters of `text`, with `…` when cut (user-supplied data echoed back).
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::shorten;

    proptest::proptest! {
        /// User text echoed back (a forged model id, a prompt in a caption) is cut on a
        /// character boundary: at most `max` characters and the ellipsis, a prefix of the text.
        #[test]
        fn echoed_text_is_cut_on_characters(
            text in crate::command::arbitrary_text(),
            max in 0usize..80,
        ) {
            let short = shorten(&text, max);
            let kept = short.strip_suffix('…').unwrap_or(&short);
            proptest::prop_assert!(text.starts_with(kept));
            proptest::prop_assert!(kept.chars().count() <= max);
        }
    }
}
