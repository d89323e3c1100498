//! No update takes the bot down or holds it up: texts that once panicked a chat's worker, a
//! busy group beside private users, forged button data.

use std::time::{Duration, Instant};

use genbot_mocks::telegram::{Entry, SimGroup, SimUser};

use crate::helpers::{say, spawn_bot, Options, TestBot};

/// Each of these is answered, and the user's next message too. A slash, whitespace of any
/// kind, then a non-ASCII word cut a character in half and took the bot down for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_that_once_panicked_are_answered_and_nothing_panics() {
    let bot = spawn_bot(Options::without_flood_limit()).await;
    let user = bot.telegram.user(8001, "Hostile", Some("ru"));
    say(&user, "/start").await;
    for text in [
        "/ привет",
        "/\u{a0}привет",
        "/\u{3000}猫",
        "/img\u{2003}кот",
        "/\u{200b}",
        "/ 🦊‍🔥",
        "/\t\u{202e}مرحبا",
        "/help@ бот",
        "/ e\u{301}",
    ] {
        let (_, answer, _) = say(&user, text).await;
        assert!(!answer.is_empty(), "{text:?} unanswered");
    }
    let (_, balance, _) = say(&user, "/balance").await;
    assert!(balance.contains("Кредиты"), "{balance}");
    assert_eq!(bot.front.metrics().handler_panics(), 0);
}

/// Ten members of a group ask `/help` again and again, each far from the per-user limit (here
/// lifted): the group's answers wait for its 20 a minute, and before, its worker's queue
/// filled and the dispatcher waited, so nobody was answered. Private users are answered within
/// 2 s throughout, and the group gets one `/help` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_group_never_holds_up_private_answers() {
    let paced = Options::paced_like_telegram();
    let bot = spawn_bot(Options {
        front: genbot_telegram::FrontConfig {
            user_updates_per_sec: 100_000,
            user_burst: 100_000,
            ..paced.front
        },
        ..paced
    })
    .await;
    let group = bot.telegram.group(-1_003_000, "Busy");
    let members: Vec<_> = (0..10)
        .map(|n| bot.telegram.user(8100 + n, &format!("m{n}"), Some("en")))
        .collect();
    for _ in 0..120 {
        for member in &members {
            group.send_text(member, "/help@genbot_mock_bot").unwrap();
        }
    }
    let private: Vec<_> = (0..5)
        .map(|n| bot.telegram.user(8200 + n, &format!("p{n}"), Some("en")))
        .collect();
    let slowest = private_users_answered_within_2s(&bot, &private, 3, "the busy group").await;
    eprintln!(
        "15 private answers beside 1200 group /help: slowest {slowest:?}; {} shed",
        bot.front.metrics().updates_shed()
    );
    let helps = group
        .chat()
        .transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { .. }))
        .count();
    assert!(
        helps <= 2,
        "{helps} /help answers in the group: asked 1200 times within a minute, answer once"
    );
}

/// Each of `private` sends `/start` in turn, `rounds` times over, and must be answered within
/// 2 s beside the group `beside` names; the slowest answer's time.
async fn private_users_answered_within_2s(
    bot: &TestBot,
    private: &[SimUser],
    rounds: usize,
    beside: &str,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for round in 0..rounds {
        for user in private {
            let asked = Instant::now();
            let seen = user.transcript().len();
            user.send_text("/start");
            user.wait_for(Duration::from_secs(2), |t| {
                t[seen..].iter().any(|e| matches!(e, Entry::BotText { .. }))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: user {} unanswered after {:?} beside {beside} ({} shed)",
                    user.id(),
                    asked.elapsed(),
                    bot.front.metrics().updates_shed()
                )
            });
            slowest = slowest.max(asked.elapsed());
        }
    }
    slowest
}

/// A group whose every message is answered and so waits for the group's 20 a minute (1,400
/// members each sending `/img@bot` with an option the model refuses, once; refusals are
/// answered once a minute per member, so each of these is): its handlers take 3 s each, so its
/// queue would hold over an hour of answers (and, under teloxide's dispatcher, whose queue
/// per chat held 1,024, stalled everyone). The per-chat backlog cap sheds the group's excess
/// instead: private users are answered within 2 s, and updates were shed. (The `/help` flood above is answered once a
/// minute, so its handlers are quick and never meet the cap; this one does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_slow_answers_is_shed_beyond_its_backlog() {
    const MEMBERS: i64 = 1_400;
    let bot = spawn_bot(Options::paced_like_telegram()).await;
    let group = bot.telegram.group(-1_003_100, "Slow");
    for n in 0..MEMBERS {
        let member = bot
            .telegram
            .user(9_000_000 + n, &format!("s{n}"), Some("en"));
        group
            .send_text(&member, "/img@genbot_mock_bot a castle --ar 5:4")
            .unwrap();
    }
    // Until the first is shed the group's backlog is still filling; a build without the cap
    // sheds none, and by the deadline its worker's queue has long been full.
    let deadline = Instant::now() + Duration::from_secs(20);
    while bot.front.metrics().updates_shed() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let private: Vec<_> = (0..5)
        .map(|n| {
            bot.telegram
                .user(9_100_000 + n, &format!("q{n}"), Some("en"))
        })
        .collect();
    private_users_answered_within_2s(&bot, &private, 2, "a group of slow answers").await;
    let shed = bot.front.metrics().updates_shed();
    assert!(
        shed >= 1,
        "nothing shed of {MEMBERS} slow group updates: the group's backlog is not capped"
    );
}

/// Button data a client can forge: a model that does not exist, settings, unknown data, on a
/// message in a group. Each press is answered to the presser alone and no message changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_button_data_edits_nothing() {
    let bot = spawn_bot(Options::default()).await;
    let group = bot.telegram.group(-1_004_000, "Forged");
    let mallory = bot.telegram.user(8301, "Mallory", Some("en"));
    let ann = bot.telegram.user(8302, "Ann", Some("en"));
    let (models, _, _) = say(&ann, "/models").await;
    group.send_text(&ann, "/help@genbot_mock_bot").unwrap();
    let help = group
        .chat()
        .wait_for(Duration::from_secs(15), |t| {
            t.iter().any(|e| matches!(e, Entry::BotText { .. }))
        })
        .await
        .expect("the group got no /help answer");
    let help_id = help
        .iter()
        .find_map(|e| match e {
            Entry::BotText { message_id, .. } => Some(*message_id),
            _ => None,
        })
        .unwrap();
    let long = format!("model:{}", "<b>x</b>".repeat(7));
    for data in [
        "model:<script>pwned</script>",
        long.as_str(),
        "set:steps=4",
        "nonsense",
    ] {
        let pressed = group.press(&mallory, help_id, data);
        assert!(pressed.is_some(), "the mock refused a press on {help_id}");
    }
    // Ann's /models list pressed by Mallory with another model id: Ann's message stays.
    let _ = ann.press(models, "model:<i>none</i>");
    let answered = || {
        bot.telegram
            .stats()
            .methods
            .get("answercallbackquery")
            .copied()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while answered() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered(), 5, "every forged press is answered");
    let expired = group.chat().transcript().iter().any(|e| {
        matches!(e, Entry::CallbackAnswered(Some(text)) if text.contains("This button has expired"))
    });
    assert!(
        expired,
        "unknown data was not answered as expired: {:?}",
        group.chat().transcript()
    );
    let edited = |t: &[Entry]| {
        t.iter()
            .any(|e| matches!(e, Entry::BotText { edits, .. } if *edits > 0))
    };
    assert!(
        !edited(&group.chat().transcript()),
        "a forged press edited the group's message: {:?}",
        group.chat().transcript()
    );
    assert!(!edited(&ann.transcript()), "{:?}", ann.transcript());
    assert_eq!(bot.front.metrics().handler_panics(), 0);
}

/// Many members each sending an empty `/img` (answered with the group's help) get one answer
/// a minute between them, as `/help` does: seen, 30 of them were 30 answers, and a real
/// result waited 99 s behind them for the group's 20 messages a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_img_commands_share_the_groups_help_limit() {
    let bot = spawn_bot(Options::default()).await;
    let group = bot.telegram.group(-1_005_100, "Empty");
    for n in 0..30 {
        let member = bot.telegram.user(8_450 + n, &format!("e{n}"), Some("en"));
        group.send_text(&member, "/img@genbot_mock_bot").unwrap();
    }
    let asker = bot.telegram.user(8_499, "Asker", Some("en"));
    group
        .send_text(&asker, "/img@genbot_mock_bot a lighthouse")
        .unwrap();
    let answers = texts_once_a_photo_came(&group, "the real prompt's result never came").await;
    assert_eq!(answers, 1, "{:?}", group.chat().transcript());
}

/// How many texts `group` holds once a photo came there (within 15 s; else fails with `what`).
async fn texts_once_a_photo_came(group: &SimGroup, what: &str) -> usize {
    let photo = group
        .chat()
        .wait_for(Duration::from_secs(15), |t| {
            t.iter().any(|e| matches!(e, Entry::BotPhoto { .. }))
        })
        .await;
    assert!(photo.is_some(), "{what}");
    group
        .chat()
        .transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { .. }))
        .count()
}

/// One member repeating what the bot must refuse (an empty `/img`) is answered once a minute:
/// the group's 20 messages a minute stay for everyone's results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_cannot_spend_a_groups_budget_on_refusals() {
    let bot = spawn_bot(Options::default()).await;
    let group = bot.telegram.group(-1_005_000, "Spent");
    let member = bot.telegram.user(8401, "Loud", Some("en"));
    let other = bot.telegram.user(8402, "Quiet", Some("en"));
    for _ in 0..8 {
        group.send_text(&member, "/img@genbot_mock_bot").unwrap();
    }
    group
        .send_text(&other, "/img@genbot_mock_bot a lighthouse")
        .unwrap();
    let refusals = texts_once_a_photo_came(&group, "the other member's result never came").await;
    assert_eq!(refusals, 1, "{:?}", group.chat().transcript());
}

/// An answer whose send meets Telegram's 5xx is sent again after a short backoff, in its place:
/// the user hears within a second. teloxide itself waits 10 s after every 5xx before it returns
/// it, so two in a row held the answer (and the chat's worker) for over 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_meets_server_errors_is_sent_again_at_once() {
    let bot = spawn_bot(Options::default()).await;
    let ann = bot.telegram.user(8501, "Ann", Some("en"));
    say(&ann, "/start").await;
    let sends = || {
        bot.telegram
            .stats()
            .methods
            .get("sendmessage")
            .copied()
            .unwrap_or(0)
    };
    let before = sends();
    bot.telegram.fail_next("sendMessage", 502, "Bad Gateway", 2);
    let seen = ann.transcript().len();
    let asked = Instant::now();
    ann.send_text("/help");
    let answered = ann
        .wait_for(Duration::from_secs(5), |t| {
            t[seen.min(t.len())..]
                .iter()
                .any(|e| matches!(e, Entry::BotText { .. }))
        })
        .await;
    let took = asked.elapsed();
    assert!(
        answered.is_some(),
        "the answer that met two 502s was not sent again within 5 s"
    );
    eprintln!("answered {took:?} after two 502s");
    assert_eq!(
        sends(),
        before + 3,
        "two failed sends and the one that went"
    );
    let (_, help, _) = say(&ann, "/help").await;
    assert!(!help.is_empty());
}

/// A message whose handler panics every time: the panic is caught and counted, the update tried
/// again with backoff, set aside as a dead letter after three panics (kept with its error,
/// never its text), and its sender told once, in their language. The chat's next messages are
/// answered as usual, before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_panicking_is_set_aside_and_its_sender_told_once() {
    const POISON: &str = "☠ яд";
    genbot_telegram::install_panic_hook();
    let defaults = Options::default();
    let bot = spawn_bot(Options {
        front: genbot_telegram::FrontConfig {
            poison: Some(POISON.into()),
            ..defaults.front
        },
        ..defaults
    })
    .await;
    let boris = bot.telegram.user(8601, "Boris", Some("ru"));
    say(&boris, "/start").await;
    let sent = Instant::now();
    boris.send_text(POISON);
    let (_, help, _) = say(&boris, "/help").await;
    assert!(!help.is_empty(), "the chat's next message was not answered");
    const NOTICE: &str = "не смог обработать";
    let notices = |t: &[Entry]| {
        t.iter()
            .filter(|e| matches!(e, Entry::BotText { text, .. } if text.contains(NOTICE)))
            .count()
    };
    boris
        .wait_for(Duration::from_secs(15), |t| notices(t) == 1)
        .await
        .unwrap_or_else(|| panic!("the sender was never told: {:?}", boris.transcript()));
    eprintln!("set aside and told {:?} after it was sent", sent.elapsed());
    let metrics = bot.front.metrics();
    assert_eq!(metrics.handler_panics(), 3, "tried three times in all");
    assert_eq!(metrics.dead_letters(), 1);
    assert_eq!(bot.store.count_dead_letters().await.unwrap(), 1);
    let letters = bot.store.dead_letters(10).await.unwrap();
    assert!(letters[0].error.contains("panicked at"), "{:?}", letters[0]);
    assert!(
        !letters[0].error.contains("яд") && !letters[0].error.contains("poison"),
        "the dead letter quotes the message or the panic's text: {:?}",
        letters[0]
    );
    // Shown to an admin.
    let admin = bot.telegram.user(1, "Admin", Some("en"));
    let (_, stats, _) = say(&admin, "/stats").await;
    assert!(
        stats.contains("dead letters: 1") && stats.contains("handler panics: 3"),
        "{stats}"
    );
    // Never tried again: no more panics, no second notice, and the chat still answered.
    let (_, balance, _) = say(&boris, "/balance").await;
    assert!(balance.contains("Кредиты"), "{balance}");
    assert_eq!(metrics.handler_panics(), 3);
    assert_eq!(notices(&boris.transcript()), 1, "{:?}", boris.transcript());
}

/// A button press shed because its chat has too many updates waiting is answered (a "busy" toast
/// to the presser alone), as a press dropped by the flood limit is: unanswered, the presser's
/// client spins until it gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_press_shed_at_a_full_chat_backlog_is_answered() {
    let defaults = Options::without_flood_limit();
    let bot = spawn_bot(Options {
        front: genbot_telegram::FrontConfig {
            // The chat's worker takes 2 s a message: 300 quick ones leave its backlog full.
            handler_delay: Duration::from_secs(2),
            user_updates_per_sec: 100_000,
            user_burst: 100_000,
            ..defaults.front
        },
        ..defaults
    })
    .await;
    let user = bot.telegram.user(8401, "Presser", Some("ru"));
    let (menu, _, buttons) = say(&user, "/models").await;
    let (_, data) = buttons.first().expect("/models has buttons").clone();
    for n in 0..300 {
        user.send_text(&format!("/help {n}"));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while bot.front.metrics().updates_shed() == 0 {
        assert!(Instant::now() < deadline, "the chat's backlog never filled");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = crate::helpers::press(&user, menu, &data).await;
    assert_eq!(
        answer.as_deref(),
        Some("В этом чате я сейчас занят; пожалуйста, попробуйте через минуту.")
    );
}
