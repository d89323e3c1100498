//! A plain text message decoded straight into teloxide's types.
//!
//! teloxide decodes a `Message` through four levels of `#[serde(flatten)]` and two untagged
//! enums: each message is buffered whole several times, and its media kind is tried against
//! the 13 kinds that come before `Text`, each failed try building and dropping an error. That
//! was about a tenth of the bot's instructions per update under a crowd. Most updates a bot
//! gets are plain text messages (every command and every prompt). An update whose JSON has no
//! key beyond the ones read here is built here; anything else (a key not read here, a value
//! that does not read) gives `None` and goes through teloxide's own decoding. What this builds
//! is what teloxide builds from the same JSON: a property test compares the two.
//!
//! Owns no policy: it never decides what an update means, only how it is read.

use serde::Deserialize;
use serde_json::value::RawValue;
use teloxide::types::{
    Chat, ChatId, ChatKind, ChatPrivate, ChatPublic, MediaKind, MediaText, Message, MessageCommon,
    MessageEntity, MessageId, MessageKind, PublicChatKind, Update, UpdateId, UpdateKind, User,
};

/// `{"update_id": …, "message": {…}}` and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainUpdate<'a> {
    update_id: u32,
    #[serde(borrow)]
    message: PlainMessage<'a>,
}

/// The keys of a text message in a private chat or a group, as Telegram sends it for a
/// command or a prompt.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainMessage<'a> {
    message_id: i32,
    from: Option<User>,
    #[serde(borrow)]
    chat: &'a RawValue,
    date: i64,
    text: String,
    #[serde(default)]
    entities: Vec<MessageEntity>,
}

/// `json` as teloxide would decode it, when it is a plain text message; `None` otherwise.
pub(super) fn decode(json: &str) -> Option<Update> {
    let PlainUpdate { update_id, message } = serde_json::from_str(json).ok()?;
    let PlainMessage {
        message_id,
        from,
        chat,
        date,
        text,
        entities,
    } = message;
    let chat = self::chat(chat)?;
    Some(Update {
        id: UpdateId(update_id),
        kind: UpdateKind::Message(Message {
            id: MessageId(message_id),
            thread_id: None,
            from,
            sender_chat: None,
            // teloxide refuses a date chrono cannot hold: so does this, by leaving it to it.
            date: chrono::DateTime::from_timestamp(date, 0)?,
            chat,
            is_topic_message: false,
            via_bot: None,
            sender_business_bot: None,
            kind: MessageKind::Common(MessageCommon {
                author_signature: None,
                paid_star_count: None,
                effect_id: None,
                forward_origin: None,
                reply_to_message: None,
                external_reply: None,
                quote: None,
                reply_to_story: None,
                sender_boost_count: None,
                edit_date: None,
                media_kind: MediaKind::Text(MediaText {
                    text,
                    entities,
                    link_preview_options: None,
                }),
                reply_markup: None,
                is_automatic_forward: false,
                has_protected_content: false,
                is_from_offline: false,
                business_connection_id: None,
            }),
        }),
    })
}

/// A private chat or a basic group with no key beyond these; other chats are left to
/// teloxide's `Chat` (an untagged enum tried kind by kind, as a message's media is).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainChat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

fn chat(json: &RawValue) -> Option<Chat> {
    serde_json::from_str::<PlainChat>(json.get())
        .ok()
        .and_then(PlainChat::into_chat)
        .or_else(|| serde_json::from_str(json.get()).ok())
}

impl PlainChat {
    /// The chat teloxide makes of these keys, when it is one read here.
    fn into_chat(self) -> Option<Chat> {
        let named =
            self.username.is_some() || self.first_name.is_some() || self.last_name.is_some();
        let kind = match (self.kind.as_str(), self.title) {
            ("private", None) => ChatKind::Private(ChatPrivate {
                username: self.username,
                first_name: self.first_name,
                last_name: self.last_name,
            }),
            ("group", title) if !named => ChatKind::Public(ChatPublic {
                title,
                kind: PublicChatKind::Group,
            }),
            _ => return None,
        };
        Some(Chat {
            id: ChatId(self.id),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::decode;

    /// teloxide's own decoding, the reference.
    fn teloxide(json: &str) -> Option<teloxide::types::Update> {
        serde_json::from_str(json).ok()
    }

    fn user() -> impl Strategy<Value = Value> {
        (
            any::<i64>(),
            any::<bool>(),
            any::<String>(),
            proptest::option::of(any::<String>()),
            proptest::option::of("[a-z]{0,8}"),
            any::<bool>(),
        )
            .prop_map(|(id, is_bot, first, username, language, premium)| {
                let mut user = json!({"id": id, "is_bot": is_bot, "first_name": first});
                if let Some(username) = username {
                    user["username"] = json!(username);
                }
                if let Some(language) = language {
                    user["language_code"] = json!(language);
                }
                if premium {
                    user["is_premium"] = json!(true);
                }
                user
            })
    }

    fn chat() -> impl Strategy<Value = Value> {
        (
            any::<i64>(),
            prop_oneof![
                Just("private"),
                Just("group"),
                Just("supergroup"),
                Just("channel"),
                Just("secret"),
            ],
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("title"),
                        Just("username"),
                        Just("first_name"),
                        Just("last_name"),
                        Just("is_forum"),
                    ],
                    proptest::option::of(any::<String>()),
                ),
                0..4,
            ),
        )
            .prop_map(|(id, kind, keys)| {
                let mut chat = json!({"id": id, "type": kind});
                for (key, value) in keys {
                    chat[key] = match (key, value) {
                        ("is_forum", _) => json!(true),
                        (_, Some(value)) => json!(value),
                        (_, None) => Value::Null,
                    };
                }
                chat
            })
    }

    fn entity() -> impl Strategy<Value = Value> {
        (
            prop_oneof![
                Just("bot_command"),
                Just("mention"),
                Just("url"),
                Just("text_link"),
                Just("custom_emoji"),
                Just("bold"),
                Just("made_up"),
            ],
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(kind, offset, length)| {
                let mut entity = json!({"type": kind, "offset": offset, "length": length});
                if kind == "text_link" {
                    entity["url"] = json!("https://example.com/");
                }
                entity
            })
    }

    /// Keys a message may carry that make it more than plain text (or a value of the wrong
    /// kind for a key read here).
    fn extra() -> impl Strategy<Value = (&'static str, Value)> {
        prop_oneof![
            Just((
                "photo",
                json!([{"file_id": "a", "file_unique_id": "b", "width": 1, "height": 1}])
            )),
            Just(("caption", json!("x"))),
            Just((
                "reply_to_message",
                json!({"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "q"})
            )),
            Just(("edit_date", json!(5))),
            Just(("message_thread_id", json!(7))),
            Just(("is_topic_message", json!(true))),
            Just(("link_preview_options", json!({"is_disabled": true}))),
            Just(("reply_markup", json!({"inline_keyboard": []}))),
            Just((
                "via_bot",
                json!({"id": 2, "is_bot": true, "first_name": "b"})
            )),
            Just(("new_chat_title", json!("t"))),
            Just(("successful_payment", json!({}))),
            Just(("not_a_telegram_key", json!(null))),
            Just(("entities", json!(null))),
            Just(("text", json!(5))),
            Just(("date", json!(i64::MAX))),
            Just(("from", json!("someone"))),
        ]
    }

    fn message() -> impl Strategy<Value = Value> {
        (
            any::<i32>(),
            proptest::option::of(user()),
            any::<bool>(),
            chat(),
            0i64..4_000_000_000,
            any::<String>(),
            proptest::option::of(proptest::collection::vec(entity(), 0..3)),
        )
            .prop_map(|(id, from, null_from, chat, date, text, entities)| {
                let mut message =
                    json!({"message_id": id, "chat": chat, "date": date, "text": text});
                match from {
                    Some(from) => message["from"] = from,
                    None if null_from => message["from"] = Value::Null,
                    None => {}
                }
                if let Some(entities) = entities {
                    message["entities"] = json!(entities);
                }
                message
            })
    }

    proptest! {
        /// A plain text message is built here, and built as teloxide builds it.
        #[test]
        fn a_plain_text_message_is_what_teloxide_makes_of_it(
            update_id in any::<u32>(),
            message in message(),
        ) {
            let json = json!({"update_id": update_id, "message": message}).to_string();
            let expected = teloxide(&json);
            let fast = decode(&json);
            if let Some(expected) = &expected {
                if matches!(expected.kind, teloxide::types::UpdateKind::Message(_)) {
                    prop_assert!(fast.is_some(), "{json}");
                }
            }
            if let Some(fast) = fast {
                prop_assert_eq!(Some(fast), expected, "{}", json);
            }
        }

        /// Anything more than plain text (or anything read differently) is left to teloxide.
        #[test]
        fn more_than_plain_text_is_left_to_teloxide(
            update_id in any::<u32>(),
            message in message(),
            (key, value) in extra(),
        ) {
            let mut message = message;
            message[key] = value;
            let json = json!({"update_id": update_id, "message": message}).to_string();
            if let Some(fast) = decode(&json) {
                prop_assert_eq!(Some(fast), teloxide(&json), "{}", json);
            }
            let read_here = ["entities", "text", "date", "from"];
            if !read_here.contains(&key) {
                prop_assert!(decode(&json).is_none(), "{json}");
            }
        }
    }

    #[test]
    fn other_updates_are_left_to_teloxide() {
        for json in [
            r#"{"update_id":1,"edited_message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"x"}}"#,
            r#"{"update_id":1,"callback_query":{"id":"1","from":{"id":1,"is_bot":false,"first_name":"a"},"chat_instance":"c","data":"d"}}"#,
            r#"{"update_id":1,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"x"},"extra":1}"#,
            r#"{"update_id":1,"message":{"message_id":1,"message_id":2,"date":0,"chat":{"id":1,"type":"private"},"text":"x"}}"#,
            r#"{"update_id":-1,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"x"}}"#,
            "not json",
        ] {
            assert!(decode(json).is_none(), "{json}");
        }
    }
}
