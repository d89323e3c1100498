//! Replies: a send naming a message its chat does not have is refused "message to be replied
//! not found", unless it allows sending without the reply (then it goes as no reply), through
//! `reply_parameters` (a JSON object, or its JSON text in a form or multipart body) and the
//! legacy `reply_to_message_id`. A refused send leaves nothing in the chat.

use genbot_mocks::telegram::{Entry, TelegramMock, TelegramMockConfig};
use serde_json::{json, Value};

const NOT_FOUND: &str = "Bad Request: message to be replied not found";

/// A message id no chat of the mock has.
const MISSING: i64 = 999_999;

fn url(mock: &TelegramMock, method: &str) -> String {
    format!("{}/bot123:SECRETTOKEN/{method}", mock.url())
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn call(mock: &TelegramMock, method: &str, body: Value) -> (u16, Value) {
    answer(reqwest::Client::new().post(url(mock, method)).json(&body)).await
}

/// A mock with Ann's private chat (1) and the id of a text she sent there, as the bot gets it.
async fn mock_with_a_user_message() -> (TelegramMock, i64) {
    let mock = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    mock.user(1, "Ann", Some("en")).send_text("a red fox");
    let (_, updates) = call(&mock, "getUpdates", json!({"timeout": 0})).await;
    let message_id = updates["result"][0]["message"]["message_id"]
        .as_i64()
        .unwrap();
    (mock, message_id)
}

/// `(status, description)` of a refused call; panics on any other answer.
fn refusal((status, body): &(u16, Value)) -> (u16, &str) {
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error_code"], 400, "{body}");
    (*status, body["description"].as_str().unwrap())
}

/// The sent message of an accepted call; panics on any other answer.
fn sent((status, body): &(u16, Value)) -> &Value {
    assert_eq!(*status, 200, "{body}");
    &body["result"]
}

/// `sendMessage`'s body "Queued" to chat 1, with the parameters of `reply` added.
fn queued_with(reply: &Value) -> Value {
    let mut body = json!({"chat_id": 1, "text": "Queued"});
    body.as_object_mut()
        .unwrap()
        .extend(reply.as_object().unwrap().clone());
    body
}

/// `sendInvoice`'s body for 10 credits in chat 1, replying as `reply_parameters` says.
fn invoice_replying(reply_parameters: Value) -> Value {
    json!({"chat_id": 1, "title": "Credits", "description": "10 credits",
        "payload": "p", "currency": "XTR", "prices": [{"label": "10", "amount": 50}],
        "reply_parameters": reply_parameters})
}

#[tokio::test]
async fn a_reply_to_a_message_in_the_chat_carries_it() {
    let (mock, asked) = mock_with_a_user_message().await;
    let reply = json!({"chat_id": 1, "text": "Queued", "reply_parameters": {"message_id": asked}});
    let answer = call(&mock, "sendMessage", reply).await;
    let message = sent(&answer);
    assert_eq!(message["reply_to_message"]["message_id"], asked);
    assert_eq!(message["reply_to_message"]["text"], "a red fox");
    assert_eq!(message["reply_to_message"]["from"]["id"], 1);
    assert_eq!(message["reply_to_message"]["chat"]["id"], 1);
    // The bot's own messages are in the chat too.
    let own = message["message_id"].as_i64().unwrap();
    let answer = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 1, "text": "again", "reply_parameters": {"message_id": own}}),
    )
    .await;
    let message = sent(&answer);
    assert_eq!(message["reply_to_message"]["message_id"], own);
    assert_eq!(message["reply_to_message"]["text"], "Queued");
    assert_eq!(message["reply_to_message"]["from"]["is_bot"], true);
    // The legacy parameter names the message as well.
    let answer = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 1, "text": "legacy", "reply_to_message_id": asked}),
    )
    .await;
    assert_eq!(sent(&answer)["reply_to_message"]["message_id"], asked);
    // No reply asked: none shown.
    let answer = call(&mock, "sendMessage", json!({"chat_id": 1, "text": "plain"})).await;
    assert!(sent(&answer).get("reply_to_message").is_none());
    assert!(
        mock.stats().refused.is_empty(),
        "{:?}",
        mock.stats().refused
    );
}

#[tokio::test]
async fn a_reply_to_a_missing_message_is_refused_and_leaves_nothing_in_the_chat() {
    let (mock, asked) = mock_with_a_user_message().await;
    let user = mock.user(1, "Ann", Some("en"));
    let before = user.transcript();
    for reply in [
        json!({"reply_parameters": {"message_id": MISSING}}),
        json!({"reply_parameters": {"message_id": MISSING, "allow_sending_without_reply": false}}),
        // As a JSON string in a JSON body, as the Bot API reads any value.
        json!({"reply_parameters": format!("{{\"message_id\":{MISSING}}}")}),
        json!({"reply_to_message_id": MISSING}),
        json!({"reply_to_message_id": MISSING.to_string()}),
        // The top-level flag goes with the legacy parameter only, as the Bot API reads it.
        json!({"reply_parameters": {"message_id": MISSING}, "allow_sending_without_reply": true}),
    ] {
        let answer = call(&mock, "sendMessage", queued_with(&reply)).await;
        assert_eq!(refusal(&answer), (400, NOT_FOUND), "{reply}");
    }
    // A form body, as `reqwest`'s and many clients' own.
    let form = reqwest::Client::new()
        .post(url(&mock, "sendMessage"))
        .form(&[
            ("chat_id", "1"),
            ("text", "Queued"),
            ("reply_parameters", &format!("{{\"message_id\":{MISSING}}}")),
        ]);
    assert_eq!(refusal(&answer(form).await), (400, NOT_FOUND));
    // The other sends that reply.
    let invoice = invoice_replying(json!({"message_id": MISSING}));
    assert_eq!(
        refusal(&call(&mock, "sendInvoice", invoice).await),
        (400, NOT_FOUND)
    );
    let document = json!({"chat_id": 1, "document": "document1",
        "reply_parameters": {"message_id": MISSING}});
    assert_eq!(
        refusal(&call(&mock, "sendDocument", document).await),
        (400, NOT_FOUND)
    );

    assert_eq!(
        user.transcript(),
        before,
        "a refused send is not in the chat"
    );
    assert!(mock.file_sends().is_empty());
    let stats = mock.stats();
    let by_method = |method: &str| {
        stats
            .refused
            .iter()
            .find(|r| r.method == method && r.description == NOT_FOUND)
            .unwrap_or_else(|| panic!("{method} not recorded: {:?}", stats.refused))
    };
    let texts = by_method("sendmessage");
    assert_eq!(texts.count, 7);
    assert!(
        texts.examples[0].starts_with("chat_id=1, reply_parameters: "),
        "{:?}",
        texts.examples
    );
    assert!(
        texts.examples[0].contains(&MISSING.to_string()),
        "{:?}",
        texts.examples
    );
    assert_eq!(by_method("sendinvoice").count, 1);
    assert_eq!(by_method("senddocument").count, 1);
    // The message exists, in another chat: not this one's to reply to.
    mock.user(2, "Bob", None);
    let answer = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 2, "text": "x", "reply_parameters": {"message_id": asked}}),
    )
    .await;
    assert_eq!(refusal(&answer), (400, NOT_FOUND));
    // Named with its chat, it may be replied to; Telegram shows only a same-chat reply as
    // `reply_to_message` (another chat's is an `external_reply`).
    let answer = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 2, "text": "x", "reply_parameters": {"message_id": asked, "chat_id": 1}}),
    )
    .await;
    assert!(
        sent(&answer).get("reply_to_message").is_none(),
        "{answer:?}"
    );
    // The same in its own chat, named alike, is a reply there.
    let answer = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 1, "text": "x", "reply_parameters": {"message_id": asked, "chat_id": 1}}),
    )
    .await;
    assert_eq!(sent(&answer)["reply_to_message"]["message_id"], asked);
}

#[tokio::test]
async fn a_missing_message_allowed_to_be_missing_is_sent_as_no_reply() {
    let (mock, _) = mock_with_a_user_message().await;
    let user = mock.user(1, "Ann", Some("en"));
    for reply in [
        json!({"reply_parameters": {"message_id": MISSING, "allow_sending_without_reply": true}}),
        json!({"reply_parameters": format!(
            "{{\"message_id\":{MISSING},\"allow_sending_without_reply\":true}}"
        )}),
        json!({"reply_to_message_id": MISSING, "allow_sending_without_reply": true}),
        json!({"reply_to_message_id": MISSING, "allow_sending_without_reply": "1"}),
    ] {
        let answer = call(&mock, "sendMessage", queued_with(&reply)).await;
        let message = sent(&answer);
        assert!(
            message.get("reply_to_message").is_none(),
            "{reply}: {message}"
        );
    }
    let texts = user
        .transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { text, .. } if text == "Queued"))
        .count();
    assert_eq!(texts, 4);
    let invoice =
        invoice_replying(json!({"message_id": MISSING, "allow_sending_without_reply": true}));
    let answer = call(&mock, "sendInvoice", invoice).await;
    assert!(sent(&answer).get("reply_to_message").is_none());
    assert!(
        mock.stats().refused.is_empty(),
        "{:?}",
        mock.stats().refused
    );
}

/// `sendPhoto` uploads go as multipart, with `reply_parameters` a JSON-serialized part (as
/// teloxide sends them).
#[tokio::test]
async fn a_multipart_photo_reply_is_checked_alike() {
    let (mock, asked) = mock_with_a_user_message().await;
    let user = mock.user(1, "Ann", Some("en"));
    let photo = |reply: String| {
        let form = reqwest::multipart::Form::new()
            .text("chat_id", "1")
            .text("caption", "a red fox")
            .text("reply_parameters", reply)
            .part(
                "photo",
                reqwest::multipart::Part::bytes(b"not a png".to_vec()).file_name("fox.png"),
            );
        reqwest::Client::new()
            .post(url(&mock, "sendPhoto"))
            .multipart(form)
    };
    let before = user.transcript();
    let missing = format!("{{\"message_id\":{MISSING}}}");
    assert_eq!(refusal(&answer(photo(missing)).await), (400, NOT_FOUND));
    assert_eq!(
        user.transcript(),
        before,
        "a refused photo is not in the chat"
    );
    assert!(mock.file_sends().is_empty(), "{:?}", mock.file_sends());

    let allowed = format!("{{\"message_id\":{MISSING},\"allow_sending_without_reply\":true}}");
    let answer_allowed = answer(photo(allowed)).await;
    let message = sent(&answer_allowed);
    assert!(message.get("reply_to_message").is_none(), "{message}");
    let found = format!("{{\"message_id\":{asked},\"allow_sending_without_reply\":true}}");
    let answer_found = answer(photo(found)).await;
    let message = sent(&answer_found);
    assert_eq!(message["reply_to_message"]["message_id"], asked);
    assert_eq!(message["reply_to_message"]["text"], "a red fox");

    let replies: Vec<Option<i64>> = user
        .transcript()
        .iter()
        .filter_map(|e| match e {
            Entry::BotPhoto { reply_to, .. } => Some(*reply_to),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [None, Some(asked)]);
    let wire: Vec<Option<i64>> = mock.file_sends().iter().map(|s| s.reply_to).collect();
    assert_eq!(wire, [None, Some(asked)]);
    // A reply to the photo shows it as a photo with its caption.
    let photo_id = message["message_id"].as_i64().unwrap();
    let answer = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 1, "text": "x", "reply_parameters": {"message_id": photo_id}}),
    )
    .await;
    let replied = &sent(&answer)["reply_to_message"];
    assert_eq!(replied["photo"][0]["file_id"], format!("photo{photo_id}"));
    assert_eq!(replied["caption"], "a red fox");
}

#[tokio::test]
async fn reply_parameters_that_do_not_parse_are_refused_with_the_bot_apis_reason() {
    let (mock, asked) = mock_with_a_user_message().await;
    let user = mock.user(1, "Ann", Some("en"));
    let before = user.transcript();
    let with = |reply: Value| json!({"chat_id": 1, "text": "x", "reply_parameters": reply});
    for (reply, description) in [
        (
            json!("{not json"),
            "Bad Request: can't parse reply parameters JSON object",
        ),
        (
            json!([asked]),
            "Bad Request: object expected as reply parameters",
        ),
        (
            json!({"allow_sending_without_reply": true}),
            "Bad Request: can't find field \"message_id\"",
        ),
        (
            json!({"message_id": [asked]}),
            "Bad Request: field \"message_id\" must be a Number",
        ),
        (
            json!({"message_id": asked, "allow_sending_without_reply": "yes"}),
            "Bad Request: field \"allow_sending_without_reply\" must be of type Boolean",
        ),
    ] {
        let answer = call(&mock, "sendMessage", with(reply.clone())).await;
        assert_eq!(refusal(&answer), (400, description), "{reply}");
    }
    assert_eq!(user.transcript(), before);
    // Nothing to reply to: an empty object or string, an id that is not positive.
    for reply in [json!({}), json!(""), json!({"message_id": 0})] {
        let answer = call(&mock, "sendMessage", with(reply.clone())).await;
        assert!(sent(&answer).get("reply_to_message").is_none(), "{reply}");
    }
}

/// The sent message's `reply_to_message` is a Message teloxide (the bot's client) reads.
#[tokio::test]
async fn teloxide_reads_a_reply_and_its_refusal() {
    use teloxide::prelude::*;
    use teloxide::types::{InputFile, MessageId, ReplyParameters};
    use teloxide::{ApiError, RequestError};

    let (mock, asked) = mock_with_a_user_message().await;
    let bot = Bot::new("123:test").set_api_url(mock.url().parse().unwrap());
    let chat = ChatId(1);
    let asked = MessageId(i32::try_from(asked).unwrap());
    let sent = bot
        .send_message(chat, "Queued")
        .reply_parameters(ReplyParameters::new(asked))
        .await
        .unwrap();
    let replied = sent.reply_to_message().unwrap();
    assert_eq!((replied.id, replied.text()), (asked, Some("a red fox")));
    let photo = bot
        .send_photo(
            chat,
            InputFile::memory(b"not a png".to_vec()).file_name("p.png"),
        )
        .reply_parameters(ReplyParameters::new(sent.id).allow_sending_without_reply())
        .await
        .unwrap();
    assert_eq!(photo.reply_to_message().unwrap().id, sent.id);
    let again = bot
        .send_message(chat, "again")
        .reply_parameters(ReplyParameters::new(photo.id))
        .await
        .unwrap();
    assert!(again.reply_to_message().unwrap().photo().is_some());

    let missing = MessageId(i32::try_from(MISSING).unwrap());
    let error = bot
        .send_message(chat, "x")
        .reply_parameters(ReplyParameters::new(missing))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RequestError::Api(ApiError::MessageToReplyNotFound)),
        "{error:?}"
    );
    let plain = bot
        .send_photo(
            chat,
            InputFile::memory(b"not a png".to_vec()).file_name("p.png"),
        )
        .reply_parameters(ReplyParameters::new(missing).allow_sending_without_reply())
        .await
        .unwrap();
    assert!(plain.reply_to_message().is_none());
}

/// Messages that arrive as updates built outside the text path (a user's photo, a hand-built
/// update) are in their chat too, shown as they were delivered.
#[tokio::test]
async fn photos_and_injected_messages_may_be_replied_to() {
    let (mock, _) = mock_with_a_user_message().await;
    let user = mock.user(1, "Ann", Some("en"));
    user.send_photo(Some("make it blue"));
    let injected = mock.fresh_message_id();
    mock.inject_update(json!({"message": {
        "message_id": injected, "date": 1, "chat": {"id": 1, "type": "private", "first_name": "Ann"},
        "from": {"id": 1, "is_bot": false, "first_name": "Ann"}, "text": "hand-built",
        "reply_to_message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "older"},
    }}));
    let (_, updates) = call(&mock, "getUpdates", json!({"timeout": 0})).await;
    let photo = updates["result"][1]["message"]["message_id"]
        .as_i64()
        .unwrap();
    let reply =
        |id: i64| json!({"chat_id": 1, "text": "x", "reply_parameters": {"message_id": id}});
    let answer = call(&mock, "sendMessage", reply(photo)).await;
    let replied = &sent(&answer)["reply_to_message"];
    assert_eq!(replied["caption"], "make it blue");
    assert_eq!(replied["photo"], updates["result"][1]["message"]["photo"]);
    let answer = call(&mock, "sendMessage", reply(injected)).await;
    let replied = &sent(&answer)["reply_to_message"];
    assert_eq!(replied["text"], "hand-built");
    assert!(
        replied.get("reply_to_message").is_none(),
        "a reply's replied message carries no reply of its own: {replied}"
    );
    // In a chat the mock does not know, a hand-built message is nowhere to reply to.
    let answer = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 1, "text": "x", "reply_parameters": {"message_id": injected, "chat_id": 404}}),
    )
    .await;
    assert_eq!(refusal(&answer), (400, "Bad Request: chat not found"));
}
