//! `/broadcast`: every user gets the text once, blocked users are counted, the admin sees progress.

use std::time::Duration;

use genbot_mocks::telegram::{Entry, SimUser};

use crate::helpers::{say, spawn_bot, Options, TestBot, WAIT};

/// The store's busy timeout in the outage test (production's is 5 s): it gives a write up
/// after this, so a record asked for during the lock fails.
const BUSY_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the database refuses writes: past [`BUSY_TIMEOUT`], so the broadcast's record
/// meets a refusal, not a wait.
const LOCKED_FOR: Duration = Duration::from_millis(1_200);

/// The admin (id 1) and `count` users from id `first`, each having sent /start.
async fn admin_and_users(bot: &TestBot, first: i64, count: i64) -> (SimUser, Vec<SimUser>) {
    let admin = bot.telegram.user(1, "Admin", Some("en"));
    say(&admin, "/start").await;
    let users: Vec<SimUser> = (0..count)
        .map(|n| bot.telegram.user(first + n, &format!("u{n}"), Some("en")))
        .collect();
    for user in &users {
        say(user, "/start").await;
    }
    (admin, users)
}

/// The admin's progress message once it says the broadcast finished, waiting up to `within`.
async fn finished_progress(admin: &SimUser, within: Duration) -> String {
    let done = |e: &Entry| matches!(e, Entry::BotText { text, .. } if text.contains("finished"));
    let transcript = admin
        .wait_for(within, |t| t.iter().any(done))
        .await
        .unwrap_or_else(|| panic!("the broadcast never finished: {:?}", admin.transcript()));
    transcript
        .iter()
        .find_map(|e| match e {
            Entry::BotText { text, .. } if done(e) => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_user_once_and_counts_the_blocked() {
    let bot = spawn_bot(Options::default()).await;
    let (admin, users) = admin_and_users(&bot, 6000, 20).await;
    bot.telegram.block(6003);

    let (_, refused, _) = say(&users[0], "/broadcast hi all").await;
    assert!(refused.contains("administrators"), "{refused}");
    let (_, usage, _) = say(&admin, "/broadcast").await;
    assert!(usage.starts_with("Usage: /broadcast"), "{usage}");

    let text = "Maintenance tonight at 22:00 UTC";
    say(&admin, &format!("/broadcast {text}")).await;
    let progress = finished_progress(&admin, WAIT).await;
    // 21 users (the admin too), one of whom blocked the bot.
    assert!(progress.contains("delivered: 20"), "{progress}");
    assert!(progress.contains("blocked the bot: 1"), "{progress}");
    for user in users.iter().filter(|u| u.id() != 6003) {
        let received = user
            .transcript()
            .iter()
            .filter(|e| matches!(e, Entry::BotText { text: t, .. } if t == text))
            .count();
        assert_eq!(received, 1, "user {} got it {received} times", user.id());
    }
    // The 403 marked the user: later broadcasts skip them.
    let recipients = bot.store.broadcast_recipients(6002, 1).await.unwrap();
    assert_eq!(recipients, [(genbot_store::UserId(6003), true)]);
}

/// A broadcast message is out when the database refuses to record it (here a lock held past
/// the store's busy timeout; in production an outage): the record is written once the
/// database is back, and no one gets the text twice. Giving the record up used to resume the
/// broadcast from the previous cursor, sending the last recipient's message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_send_the_database_refused_to_record_is_not_sent_again() {
    // A 300 ms busy timeout (production's is 5 s) with the lock held past it: the record is
    // refused just the same, in a fifth of the time.
    let bot = spawn_bot(Options::default().busy_timeout(BUSY_TIMEOUT)).await;
    // 61 recipients at 20 a second: the broadcast is under way for 3 s.
    let (admin, users) = admin_and_users(&bot, 7000, 60).await;
    let text = "Back in five minutes";
    let got_it = |user: &SimUser| {
        user.transcript()
            .iter()
            .filter(|e| matches!(e, Entry::BotText { text: t, .. } if t == text))
            .count()
    };
    say(&admin, &format!("/broadcast {text}")).await;
    // Lock the database once the broadcast is under way.
    let under_way = tokio::time::Instant::now() + WAIT;
    while users.iter().all(|u| got_it(u) == 0) {
        assert!(
            tokio::time::Instant::now() < under_way,
            "the broadcast never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let path = bot.database_path();
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let lock = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let _ = locked_tx.send(());
        std::thread::sleep(LOCKED_FOR);
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.await.unwrap();
    let sent_before_the_lock = users.iter().filter(|u| got_it(u) > 0).count();
    assert!(
        sent_before_the_lock < users.len(),
        "the broadcast ended before the lock ({sent_before_the_lock} sent)"
    );
    tokio::task::spawn_blocking(move || lock.join().unwrap())
        .await
        .unwrap();
    let progress = finished_progress(&admin, WAIT * 2).await;
    for user in &users {
        assert_eq!(
            got_it(user),
            1,
            "user {} got it {} times",
            user.id(),
            got_it(user)
        );
    }
    assert!(progress.contains("delivered: 61"), "{progress}");
}
