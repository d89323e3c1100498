//! `/broadcast` across a crash: the real `genbot serve` is SIGKILLed mid-broadcast and started
//! again; every user gets the message, at most the one in flight at the kill twice.

use std::time::Duration;

use genbot_mocks::telegram::{Entry, SimUser};

use crate::process::{default_mocks, wait_until, Bot};

const USERS: i64 = 60;
const TEXT: &str = "The bot is back: new models inside";
const WAIT: Duration = Duration::from_secs(60);

fn received(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { text, .. } if text == TEXT))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_resumes_after_sigkill_and_reaches_everyone() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("broadcast.db").display());
    let mut bot = Bot::new(&telegram, &replicate, &url).with("ADMIN_IDS", "1");
    bot.start();
    let admin = telegram.user(1, "Admin", Some("en"));
    let users: Vec<SimUser> = (0..USERS)
        .map(|n| telegram.user(50_000 + n, &format!("b{n}"), Some("en")))
        .collect();
    admin.send_text("/start");
    for user in &users {
        user.send_text("/start");
    }
    wait_until("every /start answered", WAIT, || async {
        users.iter().all(|u| {
            u.transcript()
                .iter()
                .any(|e| matches!(e, Entry::BotText { .. }))
        })
    })
    .await;
    // A slow Bot API stretches the broadcast so the kill lands in its middle.
    telegram.set_send_delay(Duration::from_millis(60));
    admin.send_text(&format!("/broadcast {TEXT}"));
    wait_until("a third of the users reached", WAIT, || async {
        users.iter().filter(|u| received(u) > 0).count() >= (USERS / 3) as usize
    })
    .await;
    bot.kill().await;
    let reached_at_kill = users.iter().filter(|u| received(u) > 0).count();
    telegram.set_send_delay(Duration::ZERO);
    assert!(
        reached_at_kill < USERS as usize,
        "the kill came after the broadcast"
    );
    bot.start();
    wait_until("the broadcast finished after the restart", WAIT, || async {
        admin
            .transcript()
            .iter()
            .any(|e| matches!(e, Entry::BotText { text, .. } if text.contains("finished")))
    })
    .await;
    bot.kill().await;
    let missing = users.iter().filter(|u| received(u) == 0).count();
    let twice: usize = users.iter().map(|u| received(u).saturating_sub(1)).sum();
    eprintln!("broadcast: {reached_at_kill} of {USERS} reached at the kill; {missing} missing, {twice} duplicates after the restart");
    assert_eq!(missing, 0, "users the broadcast never reached");
    assert!(twice <= 1, "{twice} users got the broadcast twice");
}
