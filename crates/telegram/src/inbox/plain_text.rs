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

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use teloxide::types::{
    Chat, ChatId, ChatKind, ChatPrivate, ChatPublic, MediaKind, MediaText, Message, MessageCommon,
    MessageEntity, MessageId, MessageKind, PublicChatKind, PublicChatSupergroup, Update, UpdateId,
    UpdateKind, User,
};

/// `{"update_id": …, "message": {…}}` and nothing else, its two keys written plainly.
///
/// Read by hand: teloxide reads the update's kind from a key it can borrow from the JSON, so
/// an update whose `"message"` is spelt with an escape (`"m\u0065ssage"`) is no message to it
/// (it is set aside as undecodable); a key that cannot be borrowed is refused here too.
struct PlainUpdate {
    update_id: u32,
    message: PlainMessage,
}

impl<'de> Deserialize<'de> for PlainUpdate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = PlainUpdate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an update object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PlainUpdate, A::Error> {
                let (mut update_id, mut message) = (None, None);
                while let Some(key) = map.next_key::<&'de str>()? {
                    match key {
                        "update_id" if update_id.is_none() => update_id = Some(map.next_value()?),
                        "message" if message.is_none() => {
                            message = Some(map.next_value::<Object<PlainMessage>>()?.0);
                        }
                        _ => return Err(A::Error::custom("not a plain text update")),
                    }
                }
                match (update_id, message) {
                    (Some(update_id), Some(message)) => Ok(PlainUpdate { update_id, message }),
                    _ => Err(A::Error::custom("not a plain text update")),
                }
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

/// `T` read from a JSON object only. A derived struct also reads the array form
/// (`[1, "private"]`), which teloxide's types, all built with `#[serde(flatten)]`, refuse.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Fields(PhantomData))
            .map(Object)
    }
}

/// The keys of a text message in a private chat or a group, as Telegram sends it for a
/// command or a prompt.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainMessage {
    message_id: i32,
    from: Option<User>,
    chat: Object<PlainChat>,
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
    Some(Update {
        id: UpdateId(update_id),
        kind: UpdateKind::Message(Message {
            id: MessageId(message_id),
            thread_id: None,
            from,
            sender_chat: None,
            // teloxide refuses a date chrono cannot hold: so does this, by leaving it to it.
            date: chrono::DateTime::from_timestamp(date, 0)?,
            chat: chat.0.into_chat()?,
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

/// A private chat, a group or a supergroup with no key beyond these. Any other chat (a
/// channel, a key not read here) leaves the whole update to teloxide.
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
    #[serde(default)]
    is_forum: bool,
}

impl PlainChat {
    /// The chat teloxide makes of these keys, when it is one read here.
    fn into_chat(self) -> Option<Chat> {
        let named = self.first_name.is_some() || self.last_name.is_some();
        let kind = match (self.kind.as_str(), self.title) {
            ("private", None) if !self.is_forum => ChatKind::Private(ChatPrivate {
                username: self.username,
                first_name: self.first_name,
                last_name: self.last_name,
            }),
            ("group", title) if !named && self.username.is_none() && !self.is_forum => {
                ChatKind::Public(ChatPublic {
                    title,
                    kind: PublicChatKind::Group,
                })
            }
            ("supergroup", title) if !named => ChatKind::Public(ChatPublic {
                title,
                kind: PublicChatKind::Supergroup(PublicChatSupergroup {
                    username: self.username,
                    is_forum: self.is_forum,
                }),
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
                        ("is_forum", Some(value)) => json!(value.len() % 2 == 0),
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
            // Every text message in a chat read here is built here (teloxide may read a
            // message whose text part fails, a bad entity say, as another kind: left to it).
            if let Some(teloxide::types::UpdateKind::Message(m)) = expected.as_ref().map(|u| &u.kind) {
                let chat_read_here = matches!(
                    message["chat"]["type"].as_str(),
                    Some("private" | "group" | "supergroup")
                ) && message["chat"].get("is_forum").is_none()
                    && message["chat"].get("title").is_none()
                    && message["chat"].get("first_name").is_none()
                    && message["chat"].get("last_name").is_none()
                    && message["chat"].get("username").is_none();
                if m.text().is_some() && chat_read_here {
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

    proptest! {
        /// A key spelt with an escape reads as teloxide reads it: the same update, or (for the
        /// update's own kind key, which teloxide cannot borrow) none.
        #[test]
        fn an_escaped_key_reads_as_teloxide_reads_it(
            update_id in any::<u32>(),
            message in message(),
            key in prop_oneof![
                Just("message"), Just("update_id"), Just("text"), Just("chat"), Just("from"),
                Just("type"), Just("id"), Just("entities"), Just("date"), Just("first_name"),
            ],
        ) {
            let json = json!({"update_id": update_id, "message": message}).to_string();
            let plain = format!("\"{key}\":");
            let mut letters = key.chars();
            let first = letters.next().map_or(0, u32::from);
            let escaped = format!("\"\\u{first:04x}{}\":", letters.as_str());
            let json = json.replacen(&plain, &escaped, 1);
            if let Some(fast) = decode(&json) {
                prop_assert_eq!(Some(fast), teloxide(&json), "{}", json);
            }
        }
    }

    #[test]
    fn shapes_teloxide_refuses_are_refused_here() {
        let chat = r#"{"id":1,"type":"private"}"#;
        let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        for json in [
            // teloxide cannot borrow an escaped kind key: undecodable to it.
            format!(r#"{{"update_id":1,"m\u0065ssage":{{"message_id":1,"date":0,"chat":{chat},"text":"/start"}}}}"#),
            // The array forms of an object.
            format!(r#"{{"update_id":1,"message":[1,null,{chat},0,"/start",[]]}}"#),
            format!(r#"[1,{{"message_id":1,"date":0,"chat":{chat},"text":"/start"}}]"#),
            r#"{"update_id":1,"message":{"message_id":1,"date":0,"chat":[1,"private",null,null,"a",null,false],"text":"/start"}}"#.to_owned(),
            // Nested beyond serde_json's depth limit.
            format!(r#"{{"update_id":1,"message":{{"message_id":1,"date":0,"chat":{{"id":1,"type":"private","x":{deep}}},"text":"/start"}}}}"#),
        ] {
            assert!(decode(&json).is_none(), "{json}");
            assert!(
                !matches!(teloxide(&json).map(|u| u.kind), Some(teloxide::types::UpdateKind::Message(_))),
                "{json}"
            );
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
