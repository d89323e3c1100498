//! The Bot API mock refuses what Telegram refuses, with Telegram's descriptions, and records
//! each refusal (method, description, first examples) in its stats.

use genbot_mocks::telegram::{Entry, Refused, TelegramMock, TelegramMockConfig};
use serde_json::{json, Value};

async fn call(mock: &TelegramMock, method: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/bot123:SECRETTOKEN/{method}", mock.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn mock() -> TelegramMock {
    let mock = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    mock.user(1, "Ann", None);
    mock
}

/// The description of a refused call (400), or `None` when it was accepted.
async fn refused(mock: &TelegramMock, method: &str, body: Value) -> Option<String> {
    let (status, answer) = call(mock, method, body).await;
    match status {
        200 => None,
        400 => Some(answer["description"].as_str().unwrap().to_owned()),
        other => panic!("{method}: unexpected status {other}: {answer}"),
    }
}

fn recorded<'a>(refused: &'a [Refused], description: &str) -> &'a Refused {
    refused
        .iter()
        .find(|r| r.description == description)
        .unwrap_or_else(|| panic!("{description:?} not recorded in {refused:#?}"))
}

#[tokio::test]
async fn texts_are_one_to_4096_utf16_units_after_parsing() {
    let mock = mock().await;
    let send = |text: String, mode: Option<&str>| {
        let mut body = json!({"chat_id": 1, "text": text});
        if let Some(mode) = mode {
            body["parse_mode"] = json!(mode);
        }
        body
    };
    let empty = "Bad Request: message text is empty";
    let long = "Bad Request: message is too long";
    assert_eq!(
        refused(&mock, "sendMessage", send(String::new(), None))
            .await
            .as_deref(),
        Some(empty)
    );
    assert_eq!(
        refused(&mock, "sendMessage", json!({"chat_id": 1}))
            .await
            .as_deref(),
        Some(empty)
    );
    assert_eq!(
        refused(&mock, "sendMessage", send(" \n ".into(), None))
            .await
            .as_deref(),
        Some(empty)
    );
    assert_eq!(
        refused(&mock, "sendMessage", send("<b></b>".into(), Some("HTML")))
            .await
            .as_deref(),
        Some(empty)
    );
    assert_eq!(
        refused(&mock, "sendMessage", send("я".repeat(4096), None)).await,
        None
    );
    assert_eq!(
        refused(&mock, "sendMessage", send("я".repeat(4097), None))
            .await
            .as_deref(),
        Some(long)
    );
    // Emoji outside the BMP are two UTF-16 units each: 2049 of them are too long.
    assert_eq!(
        refused(&mock, "sendMessage", send("👍".repeat(2049), None))
            .await
            .as_deref(),
        Some(long)
    );
    // Markup does not count.
    let bold = format!("<b>{}</b>", "a".repeat(4096));
    assert_eq!(
        refused(&mock, "sendMessage", send(bold, Some("HTML"))).await,
        None
    );

    let stats = mock.stats();
    let record = recorded(&stats.refused, long);
    assert_eq!((record.method.as_str(), record.count), ("sendmessage", 2));
    assert!(
        record.examples[0].contains("text: 4097 UTF-16 units"),
        "{:?}",
        record.examples
    );
    assert_eq!(recorded(&stats.refused, empty).count, 4);
    // The bot's token is in the URL only, never in the record.
    assert!(!format!("{:?}", stats.refused).contains("SECRETTOKEN"));
}

#[tokio::test]
async fn markup_that_does_not_parse_is_refused_with_tdlibs_reason() {
    let mock = mock().await;
    let html = |text: &str| json!({"chat_id": 1, "text": text, "parse_mode": "HTML"});
    assert_eq!(
        refused(&mock, "sendMessage", html("price < 5"))
            .await
            .as_deref(),
        Some("Bad Request: can't parse entities: Unsupported start tag \"\" at byte offset 6")
    );
    assert_eq!(
        refused(&mock, "sendMessage", html("<b>bold")).await.as_deref(),
        Some("Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\"")
    );
    assert_eq!(
        refused(&mock, "sendMessage", html("5 &lt; 6 <i>ok</i>")).await,
        None
    );
    let v2 = json!({"chat_id": 1, "text": "Version 1.0", "parse_mode": "MarkdownV2"});
    assert_eq!(
        refused(&mock, "sendMessage", v2).await.as_deref(),
        Some("Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'")
    );
    let v2 = json!({"chat_id": 1, "text": "Version 1\\.0 *new*", "parse_mode": "MarkdownV2"});
    assert_eq!(refused(&mock, "sendMessage", v2).await, None);
    assert_eq!(mock.stats().refused.len(), 3);
}

#[tokio::test]
async fn captions_are_at_most_1024_units() {
    let mock = mock().await;
    let photo =
        |caption: String| json!({"chat_id": 1, "photo": "https://x.y/a.png", "caption": caption});
    assert_eq!(
        refused(&mock, "sendPhoto", photo("c".repeat(1024))).await,
        None
    );
    assert_eq!(
        refused(&mock, "sendPhoto", photo("c".repeat(1025)))
            .await
            .as_deref(),
        Some("Bad Request: message caption is too long")
    );
    assert_eq!(
        refused(
            &mock,
            "sendDocument",
            json!({"chat_id": 1, "document": "x", "caption": "d".repeat(1025)})
        )
        .await
        .as_deref(),
        Some("Bad Request: message caption is too long")
    );
    // An empty caption is no caption.
    assert_eq!(
        refused(&mock, "sendPhoto", photo(String::new())).await,
        None
    );
}

#[tokio::test]
async fn required_parameters_are_named_as_the_bot_api_names_them() {
    let mock = mock().await;
    assert_eq!(
        refused(&mock, "sendMessage", json!({"text": "hi"}))
            .await
            .as_deref(),
        Some("Bad Request: chat_id is empty")
    );
    assert_eq!(
        refused(&mock, "sendPhoto", json!({"chat_id": 1}))
            .await
            .as_deref(),
        Some("Bad Request: there is no photo in the request")
    );
    assert_eq!(
        refused(&mock, "editMessageText", json!({"chat_id": 1, "text": "x"}))
            .await
            .as_deref(),
        Some("Bad Request: message identifier is not specified")
    );
    assert_eq!(
        refused(
            &mock,
            "sendChatAction",
            json!({"chat_id": 1, "action": "dancing"})
        )
        .await
        .as_deref(),
        Some("Bad Request: wrong parameter action in request")
    );
    assert_eq!(
        refused(&mock, "sendMessage", json!({"chat_id": 5, "text": "x"}))
            .await
            .as_deref(),
        Some("Bad Request: chat not found")
    );
}

#[tokio::test]
async fn inline_keyboards_hold_100_buttons_with_1_to_64_bytes_of_data() {
    let mock = mock().await;
    let keyboard = |rows: Value| json!({"chat_id": 1, "text": "menu", "reply_markup": {"inline_keyboard": rows}});
    let button = |data: &str| json!({"text": "b", "callback_data": data});
    assert_eq!(
        refused(
            &mock,
            "sendMessage",
            keyboard(json!([[button(&"d".repeat(64))]]))
        )
        .await,
        None
    );
    assert_eq!(
        refused(
            &mock,
            "sendMessage",
            keyboard(json!([[button(&"d".repeat(65))]]))
        )
        .await
        .as_deref(),
        Some("Bad Request: BUTTON_DATA_INVALID")
    );
    // 64 bytes, not characters: 33 Cyrillic letters are 66 bytes.
    assert_eq!(
        refused(
            &mock,
            "sendMessage",
            keyboard(json!([[button(&"я".repeat(33))]]))
        )
        .await
        .as_deref(),
        Some("Bad Request: BUTTON_DATA_INVALID")
    );
    assert_eq!(
        refused(&mock, "sendMessage", keyboard(json!([[{"text": "no action"}]]))).await.as_deref(),
        Some("Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
    );
    let rows = |n: usize| Value::Array((0..n).map(|i| json!([button(&format!("b{i}"))])).collect());
    assert_eq!(
        refused(&mock, "sendMessage", keyboard(rows(100))).await,
        None
    );
    assert_eq!(
        refused(&mock, "sendMessage", keyboard(rows(101)))
            .await
            .as_deref(),
        Some("Bad Request: reply markup is too long")
    );
    let stats = mock.stats();
    let record = recorded(&stats.refused, "Bad Request: BUTTON_DATA_INVALID");
    assert_eq!(record.count, 2);
    assert!(
        record.examples[0].starts_with("callback_data of 65 bytes"),
        "{:?}",
        record.examples
    );
}

#[tokio::test]
async fn edits_need_a_message_and_a_change() {
    let mock = mock().await;
    let user = mock.user(1, "Ann", None);
    let (_, sent) = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 1, "text": "v1", "reply_markup": {"inline_keyboard": [[{"text": "k", "callback_data": "k"}]]}}),
    )
    .await;
    let id = sent["result"]["message_id"].as_i64().unwrap();
    let edit = |text: &str, keyboard: bool| {
        let mut body = json!({"chat_id": 1, "message_id": id, "text": text});
        if keyboard {
            body["reply_markup"] =
                json!({"inline_keyboard": [[{"text": "k", "callback_data": "k"}]]});
        }
        body
    };
    let not_modified = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";
    assert_eq!(
        refused(&mock, "editMessageText", edit("v1", true))
            .await
            .as_deref(),
        Some(not_modified)
    );
    // Telegram strips the text first: trailing blanks change nothing.
    assert_eq!(
        refused(&mock, "editMessageText", edit("v1 \u{200b}\n", true))
            .await
            .as_deref(),
        Some(not_modified)
    );
    assert_eq!(
        refused(&mock, "editMessageText", edit("v2", true)).await,
        None
    );
    // Without reply_markup the keyboard goes, as on Telegram: a change, then the same again.
    assert_eq!(
        refused(&mock, "editMessageText", edit("v2", false)).await,
        None
    );
    assert_eq!(user.last_keyboard(), None);
    assert_eq!(
        refused(&mock, "editMessageText", edit("v2", false))
            .await
            .as_deref(),
        Some(not_modified)
    );
    assert_eq!(
        refused(
            &mock,
            "editMessageText",
            json!({"chat_id": 1, "message_id": 999_999, "text": "x"})
        )
        .await
        .as_deref(),
        Some("Bad Request: message to edit not found")
    );
    let stats = mock.stats();
    let record = recorded(&stats.refused, not_modified);
    assert_eq!(
        (record.method.as_str(), record.count),
        ("editmessagetext", 3)
    );
}

#[tokio::test]
async fn a_form_posted_text_that_looks_like_json_stays_the_text() {
    let mock = mock().await;
    let user = mock.user(1, "Ann", None);
    let text = r#"{"b": 2,   "a":1}"#;
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/bot123:SECRETTOKEN/sendMessage", mock.url()))
        .form(&[("chat_id", "1"), ("text", text)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["text"], text, "{answer}");
    let said = user.transcript();
    assert!(
        matches!(said.last(), Some(Entry::BotText { text: t, .. }) if t == text),
        "{said:?}"
    );
}

#[tokio::test]
async fn a_callback_query_is_answered_once() {
    let mock = mock().await;
    let user = mock.user(1, "Ann", None);
    let (_, sent) = call(
        &mock,
        "sendMessage",
        json!({"chat_id": 1, "text": "menu", "reply_markup": {"inline_keyboard": [[{"text": "k", "callback_data": "k"}]]}}),
    )
    .await;
    user.press(sent["result"]["message_id"].as_i64().unwrap(), "k")
        .unwrap();
    let (_, updates) = call(&mock, "getUpdates", json!({"timeout": 1})).await;
    let id = updates["result"][0]["callback_query"]["id"].clone();
    let too_old =
        "Bad Request: query is too old and response timeout expired or query ID is invalid";
    assert_eq!(
        refused(
            &mock,
            "answerCallbackQuery",
            json!({"callback_query_id": id})
        )
        .await,
        None
    );
    assert_eq!(
        refused(
            &mock,
            "answerCallbackQuery",
            json!({"callback_query_id": id})
        )
        .await
        .as_deref(),
        Some(too_old)
    );
    assert_eq!(
        refused(
            &mock,
            "answerCallbackQuery",
            json!({"callback_query_id": "forged"})
        )
        .await
        .as_deref(),
        Some(too_old)
    );
    // A query in a hand-built update is real to the bot.
    mock.inject_update(json!({"callback_query": {"id": "cq1", "from": {"id": 1, "is_bot": false, "first_name": "Ann"}, "chat_instance": "c", "data": "x"}}));
    assert_eq!(
        refused(
            &mock,
            "answerCallbackQuery",
            json!({"callback_query_id": "cq1"})
        )
        .await,
        None
    );
    assert_eq!(recorded(&mock.stats().refused, too_old).count, 2);
}

#[tokio::test]
async fn stars_invoices_have_one_price_no_provider_token_and_a_positive_total() {
    let mock = mock().await;
    let invoice = |extra: Value| {
        let mut body = json!({"chat_id": 1, "title": "Credits", "description": "10 credits", "payload": "p", "currency": "XTR", "prices": [{"label": "10", "amount": 50}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    assert_eq!(
        refused(&mock, "sendInvoice", invoice(json!({}))).await,
        None
    );
    assert_eq!(
        refused(&mock, "sendInvoice", invoice(json!({"provider_token": ""}))).await,
        None
    );
    assert_eq!(
        refused(
            &mock,
            "sendInvoice",
            invoice(json!({"prices": [{"label": "a", "amount": 1}, {"label": "b", "amount": 2}]}))
        )
        .await
        .as_deref(),
        Some("Bad Request: STARS_INVOICE_INVALID")
    );
    assert_eq!(
        refused(
            &mock,
            "sendInvoice",
            invoice(json!({"provider_token": "284685063:TEST:secret"}))
        )
        .await
        .as_deref(),
        Some("Bad Request: PAYMENT_PROVIDER_INVALID")
    );
    assert_eq!(
        refused(
            &mock,
            "sendInvoice",
            invoice(json!({"prices": [{"label": "0", "amount": 0}]}))
        )
        .await
        .as_deref(),
        Some("Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
    );
    assert_eq!(
        refused(&mock, "sendInvoice", invoice(json!({"title": ""})))
            .await
            .as_deref(),
        Some("Bad Request: Parameter \"title\" is required")
    );
    // A payment provider's token is a secret: its length is recorded, never its value.
    assert!(!format!("{:?}", mock.stats().refused).contains("secret"));
}

#[tokio::test]
async fn scripted_faults_and_flood_control_are_not_refusals() {
    let mock = TelegramMock::start(TelegramMockConfig {
        enforce_limits: true,
        ..TelegramMockConfig::default()
    })
    .await
    .unwrap();
    mock.user(1, "Ann", None);
    mock.fail_next("sendMessage", 500, "Internal Server Error", 1);
    let (status, _) = call(&mock, "sendMessage", json!({"chat_id": 1, "text": "1"})).await;
    assert_eq!(status, 500);
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(
            call(
                &mock,
                "sendMessage",
                json!({"chat_id": 1, "text": n.to_string()}),
            )
            .await
            .0,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let stats = mock.stats();
    assert!(stats.refused.is_empty(), "{:?}", stats.refused);
    assert!(stats.throttled >= 1);
}

#[tokio::test]
async fn flood_control_allows_a_short_burst_per_chat_then_one_a_second() {
    let mock = TelegramMock::start(TelegramMockConfig {
        enforce_limits: true,
        ..TelegramMockConfig::default()
    })
    .await
    .unwrap();
    mock.user(1, "Ann", None);
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    for n in 0..4 {
        answers.push(
            call(
                &mock,
                "sendMessage",
                json!({"chat_id": 1, "text": n.to_string()}),
            )
            .await,
        );
    }
    // Four sends within a second: three pass (the burst), the fourth waits about a second.
    if started.elapsed() < std::time::Duration::from_millis(900) {
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, [200, 200, 200, 429]);
        assert_eq!(answers[3].1["parameters"]["retry_after"], 1);
        assert_eq!(
            answers[3].1["description"],
            "Too Many Requests: retry after 1"
        );
    }
    // Another chat is not held up by this one.
    mock.user(2, "Bob", None);
    assert_eq!(
        call(&mock, "sendMessage", json!({"chat_id": 2, "text": "x"}))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn refusals_in_exempt_chats_are_answered_alike_and_counted_apart() {
    let mock = mock().await;
    mock.user(2, "Hostile", None);
    mock.exempt_from_refusals([2]);
    let long = "Bad Request: message is too long";
    let too_long = |chat: i64| json!({"chat_id": chat, "text": "x".repeat(4097)});
    // Telegram's answer is the same in both chats…
    assert_eq!(
        refused(&mock, "sendMessage", too_long(2)).await.as_deref(),
        Some(long)
    );
    assert_eq!(
        refused(&mock, "sendMessage", too_long(1)).await.as_deref(),
        Some(long)
    );
    // …but only the ordinary chat's refusal is reported as one.
    let stats = mock.stats();
    assert_eq!(recorded(&stats.refused, long).count, 1);
    assert_eq!(stats.refused_exempt, 1);
}

/// Bytes that are no UTF-8 in a form or multipart value are refused, as the Bot API refuses
/// them, and nothing is sent; the same text well encoded goes through unchanged.
#[tokio::test]
async fn a_text_that_is_no_utf8_is_refused_and_not_sent() {
    let mock = mock().await;
    let user = mock.user(1, "Ann", None);
    let post = |body: reqwest::RequestBuilder| async move {
        let response = body.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };
    let url = format!("{}/bot123:SECRETTOKEN/sendMessage", mock.url());
    let client = reqwest::Client::new();
    let form = |body: &'static str| {
        client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let (status, answer) = post(form("chat_id=1&text=caf%E9")).await;
    assert_eq!(
        (status, answer["description"].as_str()),
        (400, Some("Bad Request: text must be encoded in UTF-8")),
        "{answer}"
    );
    let (status, answer) = post(form("chat_id=1&text=ok&parse_mode=%FF%FE")).await;
    assert_eq!(
        (status, answer["description"].as_str()),
        (400, Some("Bad Request: strings must be encoded in UTF-8")),
        "{answer}"
    );
    let latin1 = reqwest::multipart::Form::new()
        .text("chat_id", "1")
        .part("text", reqwest::multipart::Part::bytes(b"caf\xe9".to_vec()));
    let (status, answer) = post(client.post(&url).multipart(latin1)).await;
    assert_eq!(
        (status, answer["description"].as_str()),
        (400, Some("Bad Request: text must be encoded in UTF-8")),
        "{answer}"
    );
    assert!(user.transcript().is_empty(), "{:?}", user.transcript());
    // Recorded as refusals, by the parameter's name only.
    let stats = mock.stats();
    let not_text = recorded(&stats.refused, "Bad Request: text must be encoded in UTF-8");
    assert_eq!(not_text.count, 2);
    assert!(
        not_text.examples.iter().all(|e| e == "text: not UTF-8"),
        "{not_text:?}"
    );
    let not_string = recorded(
        &stats.refused,
        "Bad Request: strings must be encoded in UTF-8",
    );
    assert_eq!(not_string.examples, ["parse_mode: not UTF-8"]);
    // A query string is read the same way.
    let (status, answer) = post(client.post(format!("{url}?chat_id=1&text=%C0"))).await;
    assert_eq!(
        (status, answer["description"].as_str()),
        (400, Some("Bad Request: text must be encoded in UTF-8")),
        "{answer}"
    );
    // In a chat exempt from refusals (hostile input sent on purpose) it is counted apart.
    mock.user(2, "Bob", None);
    mock.exempt_from_refusals([2]);
    let (status, _) = post(form("chat_id=2&text=caf%E9")).await;
    assert_eq!(status, 400);
    let stats = mock.stats();
    assert_eq!(stats.refused_exempt, 1);
    assert_eq!(
        recorded(&stats.refused, "Bad Request: text must be encoded in UTF-8").count,
        3,
        "the exempt chat's refusal is not among the others"
    );
    // Well encoded, with `+`, `%2B` and a stray `%`: sent as written.
    let (status, answer) = post(form("chat_id=1&text=caf%C3%A9+%2B1%+%F0%9F%98%80")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["text"], "café +1% 😀");
}
