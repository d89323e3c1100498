//! One bad message never takes the bot down: the real `genbot serve` gets texts that once
//! panicked its chat worker (and, replayed from the inbox, every restart), answers them and
//! everyone after them, survives a SIGKILL and a restart on the same database, and handles
//! nothing twice. A message that panics its handler every time (`GENBOT_TEST_POISON_TEXT`, a
//! test hook) is set aside as a dead letter after a bounded number of tries, across restarts,
//! and a restart never meets it again.

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

/// The poison: a message whose handler panics every time in a bot started by [`poisoned`].
const POISON: &str = "☠ яд";
/// The Russian "could not handle your message" notice.
const NOTICE: &str = "не смог обработать";
/// Tries before an update is set aside (the isolation's `PANICS_MAX`).
const PANICS_MAX: u64 = 3;

/// A bot whose handler panics at [`POISON`].
fn poisoned(
    telegram: &genbot_mocks::telegram::TelegramMock,
    replicate: &genbot_mocks::replicate::ReplicateMock,
    url: &str,
) -> Bot {
    Bot::new(telegram, replicate, url)
        .with("GENBOT_TEST_HOOKS", "1")
        .with("GENBOT_TEST_POISON_TEXT", POISON)
}

fn notices(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { text, .. } if text.contains(NOTICE)))
        .count()
}

/// Sends `text` as `user` and waits for one more answer.
async fn say(user: &SimUser, text: &str) {
    let before = texts(user);
    user.send_text(text);
    wait_until(&format!("an answer to {text}"), WAIT, || async {
        texts(user) > before
    })
    .await;
}

/// A poison message is tried [`PANICS_MAX`] times, set aside and its sender told once; after a
/// SIGKILL and a start on the same database, the new process never handles it (no panic), never
/// tells its sender again, and handles nobody's message twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_not_met_again_after_a_sigkill_and_a_restart() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("dead.db").display());
    let mut bot = poisoned(&telegram, &replicate, &url);
    bot.start();
    let port = bot.port().await;
    let store = crate::process::open(&url).await;
    let sender = telegram.user(62_001, "Отравитель", Some("ru"));
    let other = telegram.user(62_002, "Other", Some("en"));
    sender.send_text(POISON);
    other.send_text("/start");
    wait_until("the poison set aside and its sender told", WAIT, || async {
        notices(&sender) == 1 && store.count_dead_letters().await.unwrap() == 1
    })
    .await;
    wait_until("the other user answered", WAIT, || async {
        texts(&other) >= 1
    })
    .await;
    assert_eq!(
        handler_panics(port).await,
        Some(PANICS_MAX),
        "tried {PANICS_MAX} times in all"
    );
    let answered_other = texts(&other);

    bot.kill().await;
    bot.start();
    let port = bot.port().await;
    // The new process replays what it finds unhandled before it polls, each chat in order: had
    // it taken up the poison, it would have met it before the same chat's next messages.
    say(&sender, "/help").await;
    say(&sender, "/balance").await;
    assert_eq!(
        handler_panics(port).await,
        Some(0),
        "the restarted process handled the poison again"
    );
    assert_eq!(
        notices(&sender),
        1,
        "the sender was told twice: {:?}",
        sender.transcript()
    );
    assert_eq!(store.count_dead_letters().await.unwrap(), 1);
    assert_eq!(
        texts(&other),
        answered_other,
        "the other user's message was handled again: {:?}",
        other.transcript()
    );
    assert!(bot.exited().is_none(), "genbot exited: {:?}", bot.exited());
    bot.kill().await;
}

/// A crash loop: the process is SIGKILLed while the poison waits for its next try (after two
/// panics). The next start goes on from the attempts the inbox recorded: the poison is set aside
/// after [`PANICS_MAX`] panics over both processes, its dead letter saying so (the replayed try
/// counted once), its sender told once, and the message answered before the kill is not
/// handled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_killed_between_tries_goes_on_from_its_count_after_the_restart() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("loop.db").display());
    // Every handling waits 1 s first: with the 1 s pause after the second panic, the kill has
    // 2 s to land between the second try and the third.
    let mut bot =
        poisoned(&telegram, &replicate, &url).with("GENBOT_TEST_SLOW_HANDLERS_MS", "1000");
    let log = bot.start_logged();
    let other = telegram.user(63_002, "Other", Some("en"));
    say(&other, "/start").await;
    let sender = telegram.user(63_001, "Отравитель", Some("ru"));
    sender.send_text(POISON);
    wait_until("the poison's second panic", WAIT, || async {
        log.count_all(&["update failed; trying again", "attempts=2"]) >= 1
    })
    .await;
    bot.kill().await;
    let first_log = log.finish().await;
    let first_panics = first_log.matches("a handler panicked").count() as u64;
    assert_eq!(
        first_panics, 2,
        "the kill did not land between the second try and the third"
    );
    let store = crate::process::open(&url).await;
    assert_eq!(store.count_dead_letters().await.unwrap(), 0);
    let answered_other = texts(&other);

    bot.start();
    let port = bot.port().await;
    wait_until("the poison set aside after the restart", WAIT, || async {
        store.count_dead_letters().await.unwrap() == 1
    })
    .await;
    let letter = store.dead_letters(10).await.unwrap().remove(0);
    say(&sender, "/help").await;
    let second_panics = handler_panics(port).await.unwrap();
    eprintln!(
        "crash loop: {first_panics} panics before the kill, {second_panics} after; set aside after {} attempts",
        letter.attempts
    );
    assert!(
        first_panics + second_panics <= PANICS_MAX,
        "{first_panics} panics before the kill, {second_panics} after: the count started over"
    );
    // Every try panicked and none died with the process (the kill came between tries): the
    // letter's count and its reason name the tries there were, the replay's as one.
    let tries = first_panics + second_panics;
    assert_eq!(
        (u64::from(letter.attempts), tries),
        (PANICS_MAX, PANICS_MAX),
        "set aside after {} attempts with {tries} panics",
        letter.attempts
    );
    assert!(
        letter.error.ends_with(&format!("(after {tries} attempts)")),
        "the dead letter says {:?} after {tries} panics",
        letter.error
    );
    wait_until("the sender told", WAIT, || async { notices(&sender) >= 1 }).await;
    say(&sender, "/balance").await;
    assert_eq!(notices(&sender), 1, "{:?}", sender.transcript());
    assert_eq!(
        texts(&other),
        answered_other,
        "the other user's message was handled again"
    );
    assert!(bot.exited().is_none(), "genbot exited: {:?}", bot.exited());
    bot.kill().await;
}

/// Runs `genbot inbox ARGS` on the SQLite file `db`.
fn inbox(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    inbox_at(&format!("sqlite://{}", db.display()), args)
}

/// Runs `genbot inbox ARGS` on the database at `url`.
fn inbox_at(url: &str, args: &[&str]) -> std::process::Output {
    inbox_logged(url, args, &[])
}

/// As [`inbox_at`], with the environment's `extra` variables (`RUST_LOG`).
fn inbox_logged(url: &str, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .arg("inbox")
        .args(args)
        .env_clear()
        .env("DATABASE_URL", url)
        .envs(extra.iter().copied())
        .output()
        .expect("run genbot")
}

/// The schema's `CREATE TABLE IF NOT EXISTS` on a migrated database is no news to the
/// operator: with RUST_LOG=info, every command after the first printed PostgreSQL's NOTICE
/// `relation "genbot_schema_version" already exists, skipping`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_on_postgres_print_no_migration_notice() {
    let Some(database) =
        crate::process::scratch_postgres("operator_commands_on_postgres_print_no_migration_notice")
            .await
    else {
        return;
    };
    let url = crate::process::database_url_text(&database);
    // The first run migrates a new database, the second finds it migrated.
    for run in 1..=2 {
        let listed = inbox_logged(&url, &["list"], &[("RUST_LOG", "info")]);
        assert!(listed.status.success(), "run {run}: {listed:?}");
        assert_eq!(String::from_utf8_lossy(&listed.stdout), "0 dead letters\n");
        let stderr = String::from_utf8_lossy(&listed.stderr);
        assert!(
            !stderr.contains("already exists") && !stderr.contains("NOTICE"),
            "run {run}: {stderr}"
        );
    }
    database.drop_now().await.unwrap();
}

/// An operator's `genbot inbox list` on PostgreSQL prints its answer and nothing else: sqlx's
/// info line (about a slow statement) came with it, on a terminal in the middle of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_list_on_postgres_prints_only_its_answer() {
    let Some(database) =
        crate::process::scratch_postgres("inbox_list_on_postgres_prints_only_its_answer").await
    else {
        return;
    };
    let url = crate::process::database_url_text(&database);
    drop(crate::process::open(&url).await);
    let listed = inbox_at(&url, &["list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "0 dead letters\n");
    assert_eq!(
        String::from_utf8_lossy(&listed.stderr),
        "",
        "logs beside the answer"
    );
    database.drop_now().await.unwrap();
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
        assert_eq!(
            store
                .dead_letter_update(4_200_000_001, reason)
                .await
                .unwrap(),
            genbot_store::SetAside::First
        );
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

/// `genbot inbox retry` gives a dead letter exactly one more try, as README says: a poison
/// retried while the bot runs panics once more and is set aside again, and its sender, told
/// when it was first set aside, is not told again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_dead_letter_gets_one_more_try_and_no_second_notice() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("retry.db");
    let url = format!("sqlite://{}", db.display());
    let mut bot = poisoned(&telegram, &replicate, &url);
    bot.start();
    let port = bot.port().await;
    let store = crate::process::open(&url).await;
    let sender = telegram.user(64_001, "Отравитель", Some("ru"));
    sender.send_text(POISON);
    wait_until("the poison set aside and its sender told", WAIT, || async {
        notices(&sender) == 1 && store.count_dead_letters().await.unwrap() == 1
    })
    .await;
    assert_eq!(handler_panics(port).await, Some(PANICS_MAX));
    let id = store.dead_letters(1).await.unwrap().remove(0).id;

    let retried = inbox(&db, &["retry", &id.to_string()]);
    assert!(retried.status.success(), "{retried:?}");
    wait_until("the retried poison set aside again", WAIT, || async {
        store.count_dead_letters().await.unwrap() == 1
    })
    .await;
    // Whatever else was still to come (another try, a notice) comes before the sender's next
    // message is answered: one chat's updates are handled in order.
    say(&sender, "/help").await;
    assert_eq!(
        handler_panics(port).await,
        Some(PANICS_MAX + 1),
        "a retry is one more try"
    );
    assert_eq!(
        notices(&sender),
        1,
        "the sender was told twice: {:?}",
        sender.transcript()
    );
    assert!(bot.exited().is_none(), "genbot exited: {:?}", bot.exited());
    bot.kill().await;
}
