//! Every kind of update has a defined outcome: answered, or ignored and counted by kind, and
//! handled either way (the inbox keeps none of them for a replay).

use std::time::{Duration, Instant};

use genbot_mocks::telegram::{Entry, SimUser};
use serde_json::{json, Value};

use crate::helpers::{say, spawn_bot, Options, TestBot, WAIT};

const USER: i64 = 8601;

fn texts(user: &SimUser) -> Vec<String> {
    user.transcript()
        .into_iter()
        .filter_map(|e| match e {
            Entry::BotText { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

/// A message of `USER` in their private chat, with `extra` fields.
fn message(bot: &TestBot, extra: Value) -> Value {
    let mut message = json!({
        "message_id": bot.telegram.fresh_message_id(),
        "from": { "id": USER, "is_bot": false, "first_name": "Kinds", "language_code": "en" },
        "chat": { "id": USER, "type": "private", "first_name": "Kinds" },
        "date": chrono::Utc::now().timestamp(),
    });
    if let (Some(m), Some(extra)) = (message.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    message
}

/// Waits until `done`, failing with `what` after [`WAIT`].
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_update_is_answered_or_counted_and_handled() {
    let bot = spawn_bot(Options::without_flood_limit()).await;
    let user = bot.telegram.user(USER, "Kinds", Some("en"));
    say(&user, "/start").await;
    let before = texts(&user).len();
    let photo =
        |id: &str| json!([{ "file_id": id, "file_unique_id": id, "width": 1, "height": 1 }]);
    // Contents the bot does not take: each answered with the help text, counted by kind.
    let unsupported = [
        (
            "sticker",
            json!({ "sticker": { "file_id": "s1", "file_unique_id": "s1", "type": "regular",
                "width": 512, "height": 512, "is_animated": false, "is_video": false } }),
        ),
        (
            "voice",
            json!({ "voice": { "file_id": "v1", "file_unique_id": "v1", "duration": 3,
                "mime_type": "audio/ogg" } }),
        ),
        (
            "video",
            json!({ "video": { "file_id": "vd1", "file_unique_id": "vd1", "width": 1, "height": 1,
                "duration": 1, "mime_type": "video/mp4" }, "caption": "/ привет" }),
        ),
        (
            "document",
            json!({ "document": { "file_id": "d1", "file_unique_id": "d1",
                "file_name": "../../etc/passwd" }, "caption": "/ привет" }),
        ),
        (
            "location",
            json!({ "location": { "latitude": 91.5, "longitude": -181.0 } }),
        ),
        (
            "poll",
            json!({ "poll": { "id": "p1", "question": "/ привет?",
                "options": [{ "text": "a", "voter_count": 0 }], "total_voter_count": 0,
                "is_closed": false, "is_anonymous": true, "type": "regular",
                "allows_multiple_answers": false } }),
        ),
        (
            "contact",
            json!({ "contact": { "phone_number": "+0", "first_name": "Other", "user_id": 1 } }),
        ),
    ];
    let mut ids = Vec::new();
    for (_, content) in &unsupported {
        ids.push(
            bot.telegram
                .inject_update(json!({ "message": message(&bot, content.clone()) })),
        );
    }
    // A picture sent as a file: told to send it as a photo (counted as a document).
    ids.push(
        bot.telegram
            .inject_update(json!({ "message": message(&bot, json!({
        "document": { "file_id": "d2", "file_unique_id": "d2", "file_name": "cat.png",
            "mime_type": "image/png" }, "caption": "make it blue" })) })),
    );
    // An album without a caption: one message per photo, one answer for the album.
    for n in 0..3 {
        let content = json!({ "media_group_id": "album-1", "photo": photo(&format!("a{n}")) });
        ids.push(
            bot.telegram
                .inject_update(json!({ "message": message(&bot, content) })),
        );
    }
    // A forwarded command is the forwarder's.
    ids.push(
        bot.telegram
            .inject_update(json!({ "message": message(&bot, json!({
        "text": "/balance", "forward_origin": { "type": "hidden_user", "date": 0,
            "sender_user_name": "Someone" } })) })),
    );
    // The bot's own membership: blocked in private, then unblocked.
    let bot_user = bot.telegram.bot_user();
    let membership = |old: &str, new: &str| {
        json!({ "my_chat_member": {
            "chat": { "id": USER, "type": "private", "first_name": "Kinds" },
            "from": { "id": USER, "is_bot": false, "first_name": "Kinds" },
            "date": 0,
            "old_chat_member": { "status": old, "user": bot_user },
            "new_chat_member": { "status": new, "user": bot_user, "until_date": 0 },
        }})
    };
    ids.push(bot.telegram.inject_update(membership("member", "kicked")));
    // Kinds the bot does not ask Telegram for never reach it.
    for update in [
        json!({ "edited_message": message(&bot, json!({ "text": "/ привет", "edit_date": 0 })) }),
        json!({ "channel_post": { "message_id": 1, "date": 0, "text": "/start",
            "chat": { "id": -100_777, "type": "channel", "title": "c" } } }),
        json!({ "inline_query": { "id": "q1", "from": { "id": USER, "is_bot": false,
            "first_name": "Kinds" }, "query": "/ привет", "offset": "" } }),
    ] {
        let (_, delivered) = bot.telegram.inject_update(update);
        assert!(
            !delivered,
            "the bot asked Telegram for a kind it has nothing for"
        );
    }

    let answers = unsupported.len() + 1 + 1 + 1;
    until("every message answered", || {
        texts(&user).len() >= before + answers
    })
    .await;
    let metrics = bot.front.metrics();
    for (kind, _) in &unsupported {
        let expected = if *kind == "document" { 2 } else { 1 };
        assert_eq!(metrics.unsupported_count(kind), expected, "{kind}");
    }
    let as_photo = texts(&user)
        .iter()
        .filter(|t| t.contains("Send it as a photo"))
        .count();
    assert_eq!(as_photo, 1, "{:?}", texts(&user));
    let asked_for_captions = texts(&user)
        .iter()
        .filter(|t| t.contains("Send it again with a caption"))
        .count();
    assert_eq!(asked_for_captions, 1, "{:?}", texts(&user));
    assert_eq!(metrics.ignored_count("album_photo"), 2);
    assert!(
        texts(&user).iter().any(|t| t.contains("Credits")),
        "the forwarded /balance went unanswered: {:?}",
        texts(&user)
    );
    // Handled, every one: nothing is left for a replay.
    let path = bot.database_path();
    let unhandled = || -> i64 {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM telegram_updates WHERE handled_at IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    until("every update marked handled", || unhandled() == 0).await;
    let recipients = bot.store.broadcast_recipients(USER - 1, 1).await.unwrap();
    assert_eq!(
        recipients,
        [(genbot_store::UserId(USER), true)],
        "a user who blocked the bot is not marked"
    );
    assert_eq!(metrics.handler_panics(), 0);
    assert!(ids.iter().all(|(_, delivered)| *delivered));
}
