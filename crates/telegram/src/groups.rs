//! Groups, with privacy mode on (Telegram's default): the bot sees only commands and replies to
//! its own messages. It answers `/img prompt` and `/img@botname prompt` (a command naming another
//! bot is left alone), takes a reply to one of its messages as a prompt, and `/help`; anything
//! else is not for it. A photo whose caption is such a command (or that replies to the bot) is
//! drawn from, as in a private chat. The asker is charged as in a private chat; the result goes to the group
//! as a reply to the asking message, and refusals too. No queue-position message is sent in a
//! group: a group gets at most 20 messages a minute (`SendLimits::per_group_per_min`), which
//! are kept for results.

use genbot_engine::GenerationRequest;
use teloxide::prelude::*;
use teloxide::types::User as TgUser;

use crate::command::Command;
use crate::shared::ids::{from_no_person, reply_target, user_id};
use crate::shared::reply::in_group as reply;
use crate::shared::{submit, HandlerResult};
use crate::texts::{self, Lang};
use crate::Front;

/// `/NAME args` or `/NAME@bot args` addressed to us: the arguments.
fn command_args<'t>(text: &'t str, name: &str, me: &str) -> Option<&'t str> {
    let command = Command::split(text)?;
    (command.is_for(me) && command.name.eq_ignore_ascii_case(name)).then_some(command.args)
}

/// A message in a group.
pub(crate) async fn group_message(
    front: &Front,
    msg: &Message,
    from: &TgUser,
    lang: Lang,
    update: i64,
) -> HandlerResult {
    // A photo's caption addresses the bot as a text would.
    let Some(text) = msg.text().or(msg.caption()) else {
        front
            .metrics()
            .unsupported(crate::isolation::message_kind(msg));
        return Ok(());
    };
    if from_no_person(msg) {
        // One shared stand-in account for every anonymous admin and channel: nobody's credits.
        front.metrics().ignored("group_message_of_a_chat");
        return Ok(());
    }
    let me = front.me().await?;
    let replied_to_us = msg
        .reply_to_message()
        .and_then(|m| m.from.as_ref())
        .is_some_and(|u| u.id == me.id);
    let username = me.username.as_deref().unwrap_or_default();
    let prompt = if let Some(prompt) = command_args(text, "img", username) {
        prompt
    } else if command_args(text, "help", username).is_some() {
        // Ten askers a minute get one answer: the group's 20 messages a minute are for results.
        if front.group_help_due(msg.chat.id) {
            reply(front, msg, texts::group_help(lang, username)).await?;
        }
        return Ok(());
    } else if replied_to_us && !text.starts_with('/') {
        text
    } else {
        // A command for another bot, or one the bot has nothing for in a group.
        front.metrics().ignored("group_message_not_for_the_bot");
        return Ok(());
    };
    if msg.photo().is_some() {
        return crate::img2img::photo_received(front, msg, from, lang, update, Some(prompt)).await;
    }
    if prompt.is_empty() {
        reply(front, msg, texts::group_help(lang, username)).await?;
        return Ok(());
    }
    let request = GenerationRequest {
        user: user_id(from),
        prompt: prompt.to_owned(),
        model: None,
        params: Default::default(),
        source_update: Some(update),
        reply: Some(reply_target(&msg.chat, msg.id)),
    };
    submit::to_group(front, msg, from, lang, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_for_other_bots_are_not_ours() {
        assert_eq!(command_args("/img a fox", "img", "genbot"), Some("a fox"));
        assert_eq!(
            command_args("/img@GenBot  a fox ", "img", "genbot"),
            Some("a fox")
        );
        assert_eq!(command_args("/img@otherbot a fox", "img", "genbot"), None);
        assert_eq!(command_args("/imagine a fox", "img", "genbot"), None);
        assert_eq!(command_args("a fox", "img", "genbot"), None);
        assert_eq!(
            command_args("/img@genbot кот", "img", "genbot"),
            Some("кот")
        );
        assert_eq!(command_args("/ привет", "img", "genbot"), None);
        assert_eq!(command_args("/img@ привет", "img", "genbot"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_text_or_caption_is_read_without_panicking(
            text in crate::command::arbitrary_text(),
            me in crate::command::arbitrary_text(),
        ) {
            let _ = command_args(&text, "img", &me);
            let _ = command_args(&text, "help", &me);
        }
    }
}
