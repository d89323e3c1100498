//! Answers that follow a rule of their own: in a group (a reply to the asking message, at most
//! once a minute per member), to a button press (to the presser alone), and user text echoed
//! back (cut on a character boundary, to a length as Telegram counts it: UTF-16 code units).

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
            // The asking message may be deleted by then: the answer still goes.
            .reply_parameters(ReplyParameters::new(msg.id).allow_sending_without_reply()),
    )
    .await?;
    Ok(())
}

/// Answers a press, to the presser alone: `text` shown (nothing when empty).
pub(crate) async fn to_press(front: &Front, query: &CallbackQuery, text: String) -> HandlerResult {
    let mut answer = front.bot().answer_callback_query(query.id.clone());
    if !text.is_empty() {
        // Telegram refuses a press's answer over 200 characters; one that echoes a forged
        // button's data could be longer.
        let fits = text.encode_utf16().count() <= PRESS_ANSWER_MAX;
        answer = answer.text(if fits {
            text
        } else {
            shorten(&text, PRESS_ANSWER_MAX - 1)
        });
    }
    crate::pacing::call(front, answer).await?;
    Ok(())
}

/// Telegram's limit on a press's answer (`answerCallbackQuery`'s text), in UTF-16 code units.
const PRESS_ANSWER_MAX: usize = 200;

/// Telegram's caption limit, in UTF-16 code units (Telegram counts every length that way: an
/// emoji or a "fancy font" letter outside the Basic Multilingual Plane is two).
const CAPTION_MAX: usize = 1024;

/// A prompt (or a line holding one) as an image's caption: its longest prefix Telegram takes.
/// Cut by characters, 1,000 astral characters were 2,000 units: every send was refused as "message
/// caption is too long", and the image never reached its user.
pub(crate) fn caption(text: &str) -> String {
    fit_utf16(text, CAPTION_MAX).to_owned()
}

/// The longest prefix of `text`, cut between characters, at most `max` UTF-16 code units long.
pub(crate) fn fit_utf16(text: &str, max: usize) -> &str {
    let mut units = 0;
    for (at, c) in text.char_indices() {
        units += c.len_utf16();
        if units > max {
            return text.get(..at).unwrap_or_default();
        }
    }
    text
}

/// At most `max` UTF-16 code units of `text`, with `…` when cut (user-supplied data echoed
/// back).
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let kept = fit_utf16(text, max);
    if kept.len() == text.len() {
        text.to_owned()
    } else {
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::{caption, fit_utf16, shorten, CAPTION_MAX};

    fn utf16_len(text: &str) -> usize {
        text.encode_utf16().count()
    }

    #[test]
    fn a_caption_of_astral_characters_fits_telegrams_limit() {
        let emoji = "😀".repeat(999);
        let cut = caption(&emoji);
        assert_eq!(utf16_len(&cut), CAPTION_MAX);
        assert_eq!(cut.chars().count(), CAPTION_MAX / 2);
        // One unit short of a pair: the pair is left out whole, not split.
        assert_eq!(fit_utf16("a😀", 2), "a");
        assert_eq!(caption("a short prompt"), "a short prompt");
    }

    proptest::proptest! {
        /// User text echoed back (a forged model id, a prompt in a caption) is cut on a
        /// character boundary: at most `max` UTF-16 units and the ellipsis, a prefix of the text.
        #[test]
        fn echoed_text_is_cut_on_characters(
            text in crate::command::arbitrary_text(),
            max in 0usize..80,
        ) {
            let short = shorten(&text, max);
            let kept = short.strip_suffix('…').unwrap_or(&short);
            proptest::prop_assert!(text.starts_with(kept));
            proptest::prop_assert!(utf16_len(kept) <= max);
        }

        /// A cut is the longest prefix within the limit: the next character would pass it.
        #[test]
        fn a_cut_keeps_all_that_fits(
            text in crate::command::arbitrary_text(),
            max in 0usize..80,
        ) {
            let kept = fit_utf16(&text, max);
            proptest::prop_assert!(text.starts_with(kept));
            proptest::prop_assert!(utf16_len(kept) <= max);
            if let Some(next) = text.get(kept.len()..).and_then(|rest| rest.chars().next()) {
                proptest::prop_assert!(utf16_len(kept) + next.len_utf16() > max);
            }
        }
    }
}
