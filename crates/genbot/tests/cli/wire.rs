//! Photos sent twice across a SIGKILL: judged from the Bot API mock's record of the wire (when
//! each answer went out) against the moments the bot was killed, never by a fixed allowance.

use std::collections::HashMap;
use std::time::Duration;

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::repeats::{in_flight_at, repeats, Kill, WIRE_GRACE};
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};

use crate::process::{open, wait_until, Bot};

/// Every photo sent more than once was at the wire at one of `kills` (judged from the mock's
/// record of when each answer went out); returns those repeats, by chat.
pub(crate) fn assert_photos_repeated_only_at_the_wire(
    telegram: &TelegramMock,
    kills: &[Kill],
) -> HashMap<i64, usize> {
    assert_files_repeated_only_at_the_wire(telegram, kills, false)
}

/// As [`assert_photos_repeated_only_at_the_wire`], for the documents (`documents`) or photos.
pub(crate) fn assert_files_repeated_only_at_the_wire(
    telegram: &TelegramMock,
    kills: &[Kill],
    documents: bool,
) -> HashMap<i64, usize> {
    let sends: Vec<_> = telegram
        .file_sends()
        .into_iter()
        .filter(|s| s.document == documents)
        .collect();
    let found = repeats(&sends, kills, WIRE_GRACE);
    let defects: Vec<String> = found
        .iter()
        .filter(|r| !r.at_wire())
        .map(|r| format!("chat {}: {}", r.chat, r.describe()))
        .collect();
    assert!(
        defects.is_empty(),
        "{} photo(s) sent again although the bot had read their answer: {defects:#?}",
        defects.len()
    );
    let in_flight = in_flight_at(&sends, kills, WIRE_GRACE);
    assert!(
        found.len() <= in_flight,
        "{} photos sent again at the wire, {in_flight} were at the wire at the kills",
        found.len()
    );
    for repeat in &found {
        eprintln!(
            "at the wire (allowed): chat {}: {}",
            repeat.chat,
            repeat.describe()
        );
    }
    let mut by_chat = HashMap::new();
    for repeat in found {
        *by_chat.entry(repeat.chat).or_default() += 1;
    }
    by_chat
}

fn photos(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotPhoto { .. }))
        .count()
}

/// Telegram posts every photo but its answers never come back before the kill: after the
/// restart each photo goes out again, and each repeat is judged at the wire (never answered),
/// not a defect. The other side of the judgement (a repeat of a photo the bot had read) is
/// what a build that records deliveries late fails on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_whose_answers_the_kill_cut_off_are_sent_again_and_judged_at_the_wire() {
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(200),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("wire.db").display());
    let mut bot = Bot::new(&telegram, &replicate, &database_url);
    // Longer than the test waits for the photos, shorter than teloxide's request timeout (a
    // timed-out send retried without a kill would be a defect).
    telegram.hold_file_answers(Duration::from_secs(12));
    bot.start();
    let users: Vec<_> = (0..10)
        .map(|n| telegram.user(40_000 + n, &format!("w{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
        user.send_text(&format!("a buoy number {}", user.id()));
    }
    wait_until(
        "every photo posted, its answer held",
        Duration::from_secs(60),
        || async { users.iter().all(|u| photos(u) == 1) },
    )
    .await;
    bot.kill().await;
    let held = telegram.file_sends();
    assert!(
        held.iter().all(|s| s.answered.is_none()),
        "an answer went out before the kill: {held:#?}"
    );
    telegram.hold_file_answers(Duration::ZERO);
    bot.start();
    let store = open(&database_url).await;
    wait_until(
        "every result delivered again after the restart",
        Duration::from_secs(60),
        || async {
            store.undelivered().await.unwrap() == 0 && users.iter().all(|u| photos(u) == 2)
        },
    )
    .await;
    bot.kill().await;
    let at_wire = assert_photos_repeated_only_at_the_wire(&telegram, bot.kills());
    let per_user: Vec<usize> = users
        .iter()
        .map(|u| at_wire.get(&u.id()).copied().unwrap_or(0))
        .collect();
    assert_eq!(per_user, vec![1; users.len()], "{at_wire:?}");
}
