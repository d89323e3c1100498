//! The Bot API's checks on a request's parameters, made before the request does anything, with
//! Telegram's own descriptions: required parameters, text 1–4096 and captions up to 1024 UTF-16
//! code units after entity parsing, parse modes that parse, inline keyboards (at most 100
//! buttons, `callback_data` 1–64 bytes), invoices in Telegram Stars, reply parameters that parse.
//!
//! Descriptions come from tdlib/telegram-bot-api (`Client.cpp`: "Message text is empty",
//! "There is no photo in the request", "Message identifier is not specified", `Parameter "…"
//! is required`, "Text buttons are unallowed in the inline keyboard"; `fail_query` lower-cases
//! the first letter and turns `REPLY_MARKUP_TOO_LONG` into "reply markup is too long") and tdlib
//! (`MessageEntity.cpp` for "can't parse entities", "message is too long", "message caption is
//! too long"); Telegram's server errors (`BUTTON_DATA_INVALID`,
//! `CURRENCY_TOTAL_AMOUNT_INVALID`) pass through in capitals, as the Bot API relays them.
//!
//! Checks that need the mock's state (a chat that exists, a message to edit, a query to answer)
//! are made where the method is served; both kinds are counted by
//! [`super::state::BotState::refuse`]. A send replying to a message its chat does not have
//! (`reply_parameters.message_id`, or the legacy `reply_to_message_id`) is refused "message to
//! be replied not found" unless it allows sending without the reply, when it goes as no reply.

use serde_json::{Map, Value};

use super::entities::{plain_text, utf16_len, ParseError};

type Params = Map<String, Value>;

/// Longest message text, in UTF-16 code units after entity parsing.
pub const MAX_TEXT: usize = 4096;
/// Most UTF-16 code units in a press's answer (`answerCallbackQuery`'s `text`).
pub const PRESS_ANSWER_MAX: usize = 200;
/// Longest media caption, likewise.
pub const MAX_CAPTION: usize = 1024;
/// Most buttons in one inline keyboard.
pub const MAX_BUTTONS: usize = 100;
/// Longest `callback_data`, in bytes.
pub const MAX_CALLBACK_DATA: usize = 64;

/// A request the Bot API refuses: its description (with the `Bad Request: ` prefix) and a
/// short summary of the offending parameter for the mock's record (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) description: String,
    pub(super) example: String,
}

impl Refusal {
    pub(super) fn bad_request(reason: impl std::fmt::Display, example: String) -> Self {
        Refusal {
            description: format!("Bad Request: {reason}"),
            example,
        }
    }
}

/// Checks `params` of `method` (lower case) as the Bot API does before serving it.
pub(super) fn check(method: &str, params: &Params) -> Result<(), Refusal> {
    match method {
        "sendmessage" => {
            chat(params)?;
            message_text(params)?;
            reply_to(params)?;
            keyboard(params)
        }
        "editmessagetext" => {
            if absent(params, "inline_message_id") {
                chat(params)?;
                if absent(params, "message_id") {
                    return Err(Refusal::bad_request(
                        "message identifier is not specified",
                        summary(params, "message_id"),
                    ));
                }
            }
            message_text(params)?;
            keyboard(params)
        }
        "sendphoto" | "senddocument" => {
            chat(params)?;
            let field = if method == "sendphoto" {
                "photo"
            } else {
                "document"
            };
            if absent(params, field) {
                return Err(Refusal::bad_request(
                    format!("there is no {field} in the request"),
                    summary(params, field),
                ));
            }
            caption(params)?;
            reply_to(params)?;
            keyboard(params)
        }
        "sendchataction" => {
            chat(params)?;
            const ACTIONS: &[&str] = &[
                "typing",
                "upload_photo",
                "record_video",
                "upload_video",
                "record_voice",
                "upload_voice",
                "upload_document",
                "choose_sticker",
                "find_location",
                "record_video_note",
                "upload_video_note",
            ];
            match string(params, "action") {
                Some(action) if ACTIONS.contains(&action.as_str()) => Ok(()),
                _ => Err(Refusal::bad_request(
                    "wrong parameter action in request",
                    summary(params, "action"),
                )),
            }
        }
        "sendinvoice" => {
            chat(params)?;
            invoice(params)?;
            reply_to(params)?;
            keyboard(params)
        }
        "answercallbackquery" => {
            required(params, "callback_query_id")?;
            match string(params, "text") {
                Some(text) if utf16_len(&text) > PRESS_ANSWER_MAX => Err(Refusal::bad_request(
                    "MESSAGE_TOO_LONG",
                    summary(params, "text"),
                )),
                _ => Ok(()),
            }
        }
        "answerprecheckoutquery" => required(params, "pre_checkout_query_id"),
        _ => Ok(()),
    }
}

fn absent(params: &Params, name: &str) -> bool {
    string(params, name).is_none_or(|v| v.is_empty())
}

/// A parameter as the Bot API reads it: text (numbers and JSON as written).
fn string(params: &Params, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn required(params: &Params, name: &str) -> Result<(), Refusal> {
    if absent(params, name) {
        return Err(Refusal::bad_request(
            format!("Parameter \"{name}\" is required"),
            summary(params, name),
        ));
    }
    Ok(())
}

fn chat(params: &Params) -> Result<(), Refusal> {
    if absent(params, "chat_id") {
        return Err(Refusal::bad_request(
            "chat_id is empty",
            summary(params, "chat_id"),
        ));
    }
    Ok(())
}

/// Parses `field` with `parse_mode`: the text left, or the refusal.
fn parsed(params: &Params, field: &str) -> Result<Option<String>, Refusal> {
    let Some(raw) = string(params, field) else {
        return Ok(None);
    };
    let mode = string(params, "parse_mode");
    match plain_text(&raw, mode.as_deref()) {
        Ok(text) => Ok(Some(text)),
        Err(ParseError::Entities(reason)) => Err(Refusal::bad_request(
            format!("can't parse entities: {reason}"),
            summary(params, field),
        )),
        Err(ParseError::UnsupportedMode) => Err(Refusal::bad_request(
            "unsupported parse_mode",
            summary(params, "parse_mode"),
        )),
    }
}

fn message_text(params: &Params) -> Result<(), Refusal> {
    if absent(params, "text") {
        return Err(Refusal::bad_request(
            "message text is empty",
            summary(params, "text"),
        ));
    }
    let text = parsed(params, "text")?.unwrap_or_default();
    // Telegram strips the text of what shows nothing (whitespace, control characters,
    // zero-width and direction marks, the Braille blank…); nothing left (or markup around
    // nothing) is empty, and the length is what is left.
    let text = text.trim_matches(shows_nothing);
    if text.is_empty() {
        return Err(Refusal::bad_request(
            "message text is empty",
            summary(params, "text"),
        ));
    }
    if utf16_len(text) > MAX_TEXT {
        return Err(Refusal::bad_request(
            "message is too long",
            summary(params, "text"),
        ));
    }
    Ok(())
}

/// A character Telegram strips from the ends of a text (tdlib's `clean_input_string` and
/// `strip_empty_characters`): a text of nothing else is empty.
pub(super) fn shows_nothing(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FEFF}' | '\u{FFFC}')
}

fn caption(params: &Params) -> Result<(), Refusal> {
    let caption = parsed(params, "caption")?.unwrap_or_default();
    if utf16_len(&caption) > MAX_CAPTION {
        return Err(Refusal::bad_request(
            "message caption is too long",
            summary(params, "caption"),
        ));
    }
    Ok(())
}

/// The message a send replies to, as its parameters name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReplyTo {
    /// `reply_parameters.chat_id` (an id or `@username`, as given), when the message is in
    /// another chat.
    pub(super) chat: Option<String>,
    pub(super) message_id: i64,
    /// Sent without the reply when the message is not found, rather than refused.
    pub(super) allow_sending_without_reply: bool,
    /// The parameter that named it (`reply_parameters` or `reply_to_message_id`), for the
    /// record.
    pub(super) field: &'static str,
}

/// Whether a form's or query's flag is set, as the Bot API reads one (`true`, `yes`, `1`).
fn flag(params: &Params, name: &str) -> bool {
    string(params, name)
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
}

/// The message a send replies to, as the Bot API reads it (telegram-bot-api's
/// `get_reply_parameters`): `reply_parameters`, a JSON object (its JSON text in a form or
/// multipart body), or without it the legacy `reply_to_message_id` with a top-level
/// `allow_sending_without_reply`. `None`: no reply (no parameter, an empty object, an id that
/// is not positive). Whether the message exists is the route's to check.
pub(super) fn reply_to(params: &Params) -> Result<Option<ReplyTo>, Refusal> {
    const FIELD: &str = "reply_parameters";
    let refusal = |reason: &str| Refusal::bad_request(reason, summary(params, FIELD));
    let parsed;
    let object = match params.get(FIELD) {
        None | Some(Value::Null) => {
            let message_id = string(params, "reply_to_message_id")
                .and_then(|id| id.trim().parse::<i32>().ok())
                .unwrap_or(0);
            return Ok((message_id > 0).then(|| ReplyTo {
                chat: None,
                message_id: i64::from(message_id),
                allow_sending_without_reply: flag(params, "allow_sending_without_reply"),
                field: "reply_to_message_id",
            }));
        }
        Some(Value::String(text)) if text.is_empty() => return Ok(None),
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|_| refusal("can't parse reply parameters JSON object"))?;
            &parsed
        }
        Some(value) => value,
    };
    let Some(object) = object.as_object() else {
        return Err(refusal("object expected as reply parameters"));
    };
    if object.is_empty() {
        return Ok(None);
    }
    let chat = match object.get("chat_id") {
        None => None,
        Some(Value::String(chat)) => Some(chat.clone()),
        Some(Value::Number(chat)) => Some(chat.to_string()),
        Some(_) => return Err(refusal("field \"chat_id\" must be of type String")),
    };
    let message_id = match object.get("message_id") {
        None => return Err(refusal("can't find field \"message_id\"")),
        Some(Value::Number(id)) => id.as_i64().and_then(|id| i32::try_from(id).ok()),
        Some(Value::String(id)) => id.parse::<i32>().ok(),
        Some(_) => return Err(refusal("field \"message_id\" must be a Number")),
    }
    .ok_or_else(|| refusal("field \"message_id\" must be a valid Number"))?;
    let allow_sending_without_reply = match object.get("allow_sending_without_reply") {
        None => false,
        Some(Value::Bool(allow)) => *allow,
        Some(_) => {
            return Err(refusal(
                "field \"allow_sending_without_reply\" must be of type Boolean",
            ))
        }
    };
    Ok((message_id > 0).then(|| ReplyTo {
        chat,
        message_id: i64::from(message_id),
        allow_sending_without_reply,
        field: FIELD,
    }))
}

/// `reply_markup.inline_keyboard`: rows of buttons, each with a text and exactly one action.
fn keyboard(params: &Params) -> Result<(), Refusal> {
    let Some(markup) = params.get("reply_markup").filter(|m| !m.is_null()) else {
        return Ok(());
    };
    if !markup.is_object() {
        return Err(Refusal::bad_request(
            "can't parse reply keyboard markup JSON object",
            summary(params, "reply_markup"),
        ));
    }
    let Some(keyboard) = markup.get("inline_keyboard") else {
        // Reply keyboards, `remove_keyboard` and `force_reply` are not checked here.
        return Ok(());
    };
    let example = || summary(params, "reply_markup");
    let Some(rows) = keyboard.as_array() else {
        return Err(Refusal::bad_request(
            "Field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays",
            example(),
        ));
    };
    let mut count = 0;
    for row in rows {
        let Some(row) = row.as_array() else {
            return Err(Refusal::bad_request(
                "Field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays",
                example(),
            ));
        };
        for button in row {
            count += 1;
            if !button.get("text").is_some_and(Value::is_string) {
                return Err(Refusal::bad_request(
                    "can't parse inline keyboard button: Field \"text\" must be of type String",
                    example(),
                ));
            }
            const OTHER_KINDS: &[&str] = &[
                "url",
                "login_url",
                "web_app",
                "switch_inline_query",
                "switch_inline_query_current_chat",
                "switch_inline_query_chosen_chat",
                "copy_text",
                "callback_game",
                "pay",
            ];
            let data = button
                .get("callback_data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if data.len() > MAX_CALLBACK_DATA {
                return Err(Refusal::bad_request(
                    "BUTTON_DATA_INVALID",
                    format!("callback_data of {} bytes: {}", data.len(), snippet(data)),
                ));
            }
            if data.is_empty() && !OTHER_KINDS.iter().any(|k| button.get(*k).is_some()) {
                return Err(Refusal::bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
                    example(),
                ));
            }
        }
    }
    if count > MAX_BUTTONS {
        return Err(Refusal::bad_request(
            "reply markup is too long",
            format!("inline keyboard of {count} buttons"),
        ));
    }
    Ok(())
}

fn invoice(params: &Params) -> Result<(), Refusal> {
    for name in ["title", "description", "payload", "currency", "prices"] {
        required(params, name)?;
    }
    let Some(prices) = params.get("prices").and_then(Value::as_array) else {
        return Err(Refusal::bad_request(
            "can't parse prices JSON object",
            summary(params, "prices"),
        ));
    };
    let currency = string(params, "currency").unwrap_or_default();
    let total: i64 = prices
        .iter()
        .filter_map(|p| p.get("amount").and_then(Value::as_i64))
        .sum();
    if currency == "XTR" {
        // The Bot API documents both rules ("must contain exactly one item", "pass an empty
        // string"); Telegram's server answers them with these errors.
        if prices.len() != 1 {
            return Err(Refusal::bad_request(
                "STARS_INVOICE_INVALID",
                format!("currency XTR with {} prices", prices.len()),
            ));
        }
        if !absent(params, "provider_token") {
            return Err(Refusal::bad_request(
                "PAYMENT_PROVIDER_INVALID",
                summary(params, "provider_token"),
            ));
        }
    }
    if total <= 0 {
        return Err(Refusal::bad_request(
            "CURRENCY_TOTAL_AMOUNT_INVALID",
            format!("currency {currency}, total amount {total}"),
        ));
    }
    Ok(())
}

/// The first characters of a value, for an example.
fn snippet(text: &str) -> String {
    const SHOWN: usize = 40;
    let mut shown: String = text.chars().take(SHOWN).collect();
    if text.chars().count() > SHOWN {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// The offending parameter, summarised for the record: its length and first characters, or
/// "absent". `provider_token` is a payment provider's secret: only its length is shown.
pub(super) fn summary(params: &Params, field: &str) -> String {
    let chat = string(params, "chat_id")
        .map(|c| format!("chat_id={c}, "))
        .unwrap_or_default();
    let value = match string(params, field) {
        None => "absent".to_owned(),
        Some(v) if field.contains("token") => format!("{} characters (not shown)", v.len()),
        Some(v) if v.is_empty() => "empty".to_owned(),
        Some(v) => format!(
            "{} UTF-16 units{}, {}",
            utf16_len(&v),
            string(params, "parse_mode")
                .filter(|_| matches!(field, "text" | "caption"))
                .map(|m| format!(" in {m}"))
                .unwrap_or_default(),
            snippet(&v)
        ),
    };
    format!("{chat}{field}: {value}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(method: &str, params: Value) -> Option<String> {
        let Value::Object(params) = params else {
            unreachable!("tests pass objects")
        };
        check(method, &params).err().map(|r| r.description)
    }

    #[test]
    fn provider_tokens_never_reach_the_record() {
        let Value::Object(params) = json!({ "chat_id": 1, "provider_token": "SECRET:123" }) else {
            unreachable!()
        };
        let shown = summary(&params, "provider_token");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn texts_that_show_nothing_are_empty_and_length_is_counted_after_stripping() {
        let empty = Some("Bad Request: message text is empty".to_owned());
        for text in [
            "\u{200b}",
            "\u{0}",
            "\u{feff}",
            "\u{2800}",
            "\u{200e}\u{200f}",
            "\u{180e}",
            "\u{1}\u{2}",
            " \u{200b} ",
            "\n\t",
        ] {
            assert_eq!(
                refused("sendmessage", json!({"chat_id": 1, "text": text})),
                empty,
                "{text:?}"
            );
        }
        assert_eq!(
            refused("sendmessage", json!({"chat_id": 1, "text": "\u{200b}hi"})),
            None
        );
        let padded = format!("{}   \r", "a".repeat(MAX_TEXT));
        assert_eq!(
            refused("sendmessage", json!({"chat_id": 1, "text": padded})),
            None
        );
    }

    proptest::proptest! {
        /// Any text is judged without panicking; one with a character that shows is never
        /// "empty", and one of nothing else always is.
        #[test]
        fn any_text_is_empty_exactly_when_nothing_in_it_shows(text in "\\PC*|[\\s\\x00-\\x1f\\u{200b}-\\u{200f}\\u{2060}-\\u{206f}\\u{2800}\\u{feff}]*") {
            let empty = refused("sendmessage", json!({"chat_id": 1, "text": text}))
                .is_some_and(|r| r == "Bad Request: message text is empty");
            proptest::prop_assert_eq!(empty, text.chars().all(shows_nothing), "{:?}", text);
        }
    }

    #[test]
    fn a_reply_markup_that_is_no_json_object_is_refused() {
        let refusal = Some("Bad Request: can't parse reply keyboard markup JSON object".to_owned());
        for markup in [json!("{not json"), json!([1, 2]), json!(7)] {
            assert_eq!(
                refused(
                    "sendmessage",
                    json!({"chat_id": 1, "text": "x", "reply_markup": markup})
                ),
                refusal,
                "{markup}"
            );
        }
        assert_eq!(
            refused(
                "sendmessage",
                json!({"chat_id": 1, "text": "x", "reply_markup": {"remove_keyboard": true}})
            ),
            None
        );
    }

    #[test]
    fn text_is_measured_after_parsing_in_utf16() {
        // 4096 emoji are 8192 UTF-16 units: too long, though 4096 characters.
        let emoji = "👍".repeat(2048);
        assert_eq!(
            refused("sendmessage", json!({"chat_id": 1, "text": emoji})),
            None
        );
        let emoji = "👍".repeat(2049);
        assert_eq!(
            refused("sendmessage", json!({"chat_id": 1, "text": emoji})).as_deref(),
            Some("Bad Request: message is too long")
        );
        // Markup does not count: 4096 letters in bold are fine.
        let bold = format!("<b>{}</b>", "a".repeat(MAX_TEXT));
        assert_eq!(
            refused(
                "sendmessage",
                json!({"chat_id": 1, "text": bold, "parse_mode": "HTML"})
            ),
            None
        );
    }
}
