//! One bad message never takes the bot down: the real `genbot serve` gets texts that once
//! panicked its chat worker (and, replayed from the inbox, every restart), answers them and
//! everyone after them, survives a SIGKILL and a restart on the same database, and handles
//! nothing twice.

use std::time::Duration;

use genbot_mocks::telegram::{Entry, SimUser};

use crate::process::{default_mocks, wait_until, Bot};

const WAIT: Duration = Duration::from_secs(30);
const HOSTILE: [&str; 6] = [
    "/ привет",
    "/\u{a0}привет",
    "/\u{3000}猫",
    "/\t\u{202e}مرحبا",
    "/ 🦊\u{200d}🔥",
    "/ e\u{301}",
];

fn texts(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { .. }))
        .count()
}

async fn handler_panics(port: u16) -> Option<u64> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("genbot_handler_panics_total "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_that_took_the_bot_down_are_answered_across_a_restart() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("poison.db").display());
    let mut bot = Bot::new(&telegram, &replicate, &url);
    bot.start();
    let port = bot.port().await;
    let hostile = telegram.user(61_001, "Hostile", Some("ru"));
    for text in HOSTILE {
        hostile.send_text(text);
    }
    wait_until("every hostile text answered", WAIT, || async {
        texts(&hostile) >= HOSTILE.len()
    })
    .await;
    let next = telegram.user(61_002, "Next", Some("en"));
    next.send_text("/start");
    wait_until("the next user answered", WAIT, || async {
        texts(&next) >= 1
    })
    .await;
    assert!(bot.exited().is_none(), "genbot exited: {:?}", bot.exited());
    wait_until("/metrics answered", WAIT, || async {
        handler_panics(port).await.is_some()
    })
    .await;
    assert_eq!(handler_panics(port).await, Some(0), "a handler panicked");
    let answered_before = texts(&hostile);

    // A crash, then a start on the same database: the inbox replays nothing handled, and the
    // bot stays up to answer.
    bot.kill().await;
    bot.start();
    let after = telegram.user(61_003, "After", Some("en"));
    after.send_text("/start");
    wait_until("a user answered after the restart", WAIT, || async {
        texts(&after) >= 1
    })
    .await;
    hostile.send_text("/ привет");
    wait_until(
        "the hostile text answered after the restart",
        WAIT,
        || async { texts(&hostile) > answered_before },
    )
    .await;
    assert!(
        bot.exited().is_none(),
        "genbot exited after the restart: {:?}",
        bot.exited()
    );
    assert_eq!(
        texts(&hostile),
        answered_before + 1,
        "an update handled before the kill was handled again: {:?}",
        hostile.transcript()
    );
    bot.kill().await;
}

/// Runs `genbot inbox ARGS` on the SQLite file `db`.
fn inbox(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .arg("inbox")
        .args(args)
        .env_clear()
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .expect("run genbot")
}

/// An operator lists the dead letters (id, attempts, error; never the message) and gives one
/// another try; a second retry of the same update is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_and_retries_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot.db");
    {
        let store = genbot_store::Store::Sqlite(genbot_store::SqliteStore::open(&db, 1).unwrap());
        let update = genbot_store::InboxUpdate::new(
            4_200_000_001,
            42,
            r#"{"update_id":4200000001,"message":{"text":"my secret words"}}"#.into(),
        );
        store
            .record_updates("a", vec![update], std::time::Duration::from_secs(3600))
            .await
            .unwrap();
        for _ in 0..2 {
            store
                .note_update_failure(4_200_000_001, "panicked at crates/x.rs:1")
                .await
                .unwrap();
        }
        let reason = "panicked at crates/telegram/src/handlers.rs:72 (after 3 attempts)";
        assert!(store
            .dead_letter_update(4_200_000_001, reason)
            .await
            .unwrap());
    }
    let listed = inbox(&db, &["list"]);
    assert!(listed.status.success(), "{listed:?}");
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(stdout.starts_with("1 dead letters"), "{stdout}");
    assert!(stdout.contains("4200000001  attempts 2"), "{stdout}");
    assert!(
        stdout.contains("handlers.rs:72 (after 3 attempts)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("secret"),
        "the message's text is listed: {stdout}"
    );

    let retried = inbox(&db, &["retry", "4200000001"]);
    assert!(retried.status.success(), "{retried:?}");
    let listed = inbox(&db, &["list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).starts_with("0 dead letters"),
        "{listed:?}"
    );
    let again = inbox(&db, &["retry", "4200000001"]);
    assert!(!again.status.success(), "retried twice: {again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not a dead letter"),
        "{again:?}"
    );
}
