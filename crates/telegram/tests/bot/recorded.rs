//! Updates that reach the bot from the inbox rather than from Telegram: recorded while a
//! replica that died held their chat (or during a database outage), or recorded long ago and
//! no longer parsing.

use std::time::{Duration, Instant};

use genbot_mocks::telegram::{Entry, SimUser};
use genbot_store::InboxUpdate;
use serde_json::json;

use crate::helpers::{spawn_bot, Options, TestBot, WAIT};

fn texts(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { .. }))
        .count()
}

/// Waits until `done`, failing with `what` after [`WAIT`].
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `/help` of `user` in their private chat, as the inbox records it.
fn help_of(bot: &TestBot, user: i64, update_id: i64) -> InboxUpdate {
    let payload = json!({
        "update_id": update_id,
        "message": {
            "message_id": bot.telegram.fresh_message_id(),
            "from": { "id": user, "is_bot": false, "first_name": "Queued", "language_code": "en" },
            "chat": { "id": user, "type": "private", "first_name": "Queued" },
            "date": chrono::Utc::now().timestamp(),
            "text": "/help",
        }
    });
    InboxUpdate::new(update_id, user, payload.to_string())
}

/// Twenty messages of one user were recorded while a replica that then died held their chat
/// (its claim lapses after two seconds): the bot takes them over from the inbox and answers
/// every one. They are work already taken on, not a flood arriving now; before, the flood
/// limit (a burst of 10 here) dropped half of them as they entered the dispatcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_taken_from_the_inbox_are_never_dropped_as_a_flood() {
    const USER: i64 = 91_001;
    const QUEUED: i64 = 20;
    let bot = spawn_bot(Options::default()).await;
    let user = bot.telegram.user(USER, "Queued", Some("en"));
    let lease = Duration::from_secs(2);
    // The dead replica took the chat with its first update…
    bot.store
        .record_updates("gone", vec![help_of(&bot, USER, 9_100_000)], lease)
        .await
        .unwrap();
    // …and the rest were recorded (by whichever replica polled) while it held the chat.
    let rest = (1..=QUEUED)
        .map(|n| help_of(&bot, USER, 9_100_000 + n))
        .collect();
    let recorded = bot
        .store
        .record_updates("poller", rest, lease)
        .await
        .unwrap();
    assert!(recorded.taken.is_empty(), "{recorded:?}");
    let all = usize::try_from(QUEUED + 1).unwrap();
    until("every queued /help answered", || texts(&user) >= all).await;
    assert_eq!(bot.front.metrics().dropped_flood(), 0);
    assert_eq!(texts(&user), all, "{:?}", user.transcript());
}

/// Recorded updates that no longer parse (teloxide upgraded, say: one is no JSON teloxide
/// reads at all, one a message it cannot read) are set aside as dead letters, kept with an
/// error that never quotes them and counted, not marked handled as if they had been answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_update_that_no_longer_parses_is_a_dead_letter() {
    let bot = spawn_bot(Options::default()).await;
    let broken = InboxUpdate::new(9_200_001, 92_001, r#"{"message": "my secret words""#.into());
    let unreadable = InboxUpdate::new(
        9_200_002,
        92_002,
        json!({ "update_id": 9_200_002, "message": { "text": "my secret words" } }).to_string(),
    );
    // Recorded by a replica that is gone: its claims lapse at once and the bot takes them.
    bot.store
        .record_updates("gone", vec![broken, unreadable], Duration::from_millis(1))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let letters = loop {
        let letters = bot.store.dead_letters(10).await.unwrap();
        if letters.len() >= 2 {
            break letters;
        }
        assert!(Instant::now() < deadline, "not set aside: {letters:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut ids: Vec<i64> = letters.iter().map(|l| l.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [9_200_001, 9_200_002]);
    for letter in &letters {
        assert!(letter.error.contains("parse"), "{letter:?}");
        assert!(!letter.error.contains("secret"), "{letter:?}");
    }
    until("both counted", || bot.front.metrics().dead_letters() == 2).await;
}
