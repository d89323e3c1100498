//! `/broadcast`: every user gets the text once, blocked users are counted, the admin sees progress.

use genbot_mocks::telegram::Entry;

use crate::helpers::{say, spawn_bot, Options, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_user_once_and_counts_the_blocked() {
    let bot = spawn_bot(Options::default()).await;
    let admin = bot.telegram.user(1, "Admin", Some("en"));
    say(&admin, "/start").await;
    let users: Vec<_> = (0..20)
        .map(|n| bot.telegram.user(6000 + n, &format!("u{n}"), Some("en")))
        .collect();
    for user in &users {
        say(user, "/start").await;
    }
    bot.telegram.block(6003);

    let (_, refused, _) = say(&users[0], "/broadcast hi all").await;
    assert!(refused.contains("administrators"), "{refused}");
    let (_, usage, _) = say(&admin, "/broadcast").await;
    assert!(usage.starts_with("Usage: /broadcast"), "{usage}");

    let text = "Maintenance tonight at 22:00 UTC";
    say(&admin, &format!("/broadcast {text}")).await;
    let finished = admin
        .wait_for(WAIT, |t| {
            t.iter()
                .any(|e| matches!(e, Entry::BotText { text, .. } if text.contains("finished")))
        })
        .await
        .unwrap_or_else(|| panic!("the broadcast never finished: {:?}", admin.transcript()));
    let progress = finished
        .iter()
        .find_map(|e| match e {
            Entry::BotText { text, .. } if text.contains("finished") => Some(text.clone()),
            _ => None,
        })
        .unwrap();
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
    let blocked = bot
        .store
        .get_user(genbot_store::UserId(6003))
        .await
        .unwrap();
    assert!(blocked.is_some());
}
