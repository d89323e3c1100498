use std::time::Duration;

use genbot_engine::EngineConfig;
use genbot_mocks::replicate::{ReplicateMockConfig, ScriptedFault};
use genbot_mocks::telegram::Entry;
use genbot_telegram::FrontConfig;

use crate::helpers::{press, reply_after, say, spawn_bot, Options, WAIT};

fn strict() -> Options {
    Options {
        engine: EngineConfig {
            daily_limit: 2,
            max_prompt_chars: 40,
            ..Options::default().engine
        },
        front: FrontConfig {
            admin_ids: vec![1],
            initial_credits: 1,
            ..Options::default().front
        },
        ..Options::default()
    }
}

/// Waits for the failure message after a prompt (after the queue-position reply).
async fn second_reply(user: &genbot_mocks::telegram::SimUser, seen: usize) -> String {
    let transcript = user
        .wait_for(WAIT, |t| {
            t[seen..]
                .iter()
                .filter(|e| matches!(e, Entry::BotText { .. }))
                .count()
                >= 2
        })
        .await
        .unwrap();
    transcript[seen..]
        .iter()
        .filter_map(|e| match e {
            Entry::BotText { text, .. } => Some(text.clone()),
            _ => None,
        })
        .nth(1)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_has_its_own_message() {
    let bot = spawn_bot(strict()).await;

    // No credits: one credit buys one flux-schnell image.
    let ann = bot.telegram.user(2001, "Ann", Some("en"));
    say(&ann, "/start").await;
    say(&ann, "first").await;
    let (_, refused, _) = say(&ann, "second").await;
    assert!(
        refused.starts_with("Not enough credits: this model costs 1, you have 0"),
        "{refused}"
    );

    // Prompt too long.
    let bob = bot.telegram.user(2002, "Bob", Some("en"));
    say(&bob, "/start").await;
    let (_, refused, _) = say(&bob, &"x".repeat(41)).await;
    assert!(
        refused.starts_with("The description is too long (41 characters)"),
        "{refused}"
    );

    // Model unavailable.
    let (menu, _, _) = say(&bob, "/models").await;
    let answer = press(&bob, menu, "model:dall-e").await.unwrap_or_default();
    assert!(answer.contains("“dall-e” is not available"), "{answer}");

    // Generation failed: credits come back.
    bot.replicate.script([ScriptedFault::FailPrediction(
        "NSFW content detected".into(),
    )]);
    let seen = bob.transcript().len();
    bob.send_text("a refused picture");
    let failure = second_reply(&bob, seen).await;
    assert!(
        failure.starts_with("The model could not draw this one"),
        "{failure}"
    );
    assert!(failure.contains("Your credits are back"), "{failure}");

    // Daily limit (2): Carl has credits enough, not images.
    let carl = bot.telegram.user(2003, "Carl", Some("en"));
    say(&carl, "/start").await;
    bot.front
        .engine()
        .users()
        .add_credits(genbot_store::UserId(2003), 10)
        .await
        .unwrap();
    say(&carl, "one").await;
    say(&carl, "two").await;
    let (_, refused, _) = say(&carl, "three").await;
    assert!(
        refused.starts_with("You have used all 2 images for today"),
        "{refused}"
    );

    // /stats reveals nothing to a non-admin, and answers an admin.
    let (_, answer, _) = say(&carl, "/stats").await;
    assert_eq!(answer, "Unknown command. /help lists what I can do.");
    let admin = bot.telegram.user(1, "Root", Some("en"));
    let (_, stats, _) = say(&admin, "/stats").await;
    assert!(
        stats.starts_with("users: ") && stats.contains("semaphore:"),
        "{stats}"
    );

    // /cancel with nothing queued.
    let (_, answer, _) = say(&carl, "/cancel").await;
    assert_eq!(answer, "You have nothing in the queue.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_said_plainly_and_cancel_gives_credits_back() {
    let bot = spawn_bot(Options {
        engine: EngineConfig {
            max_concurrent: 1,
            per_user: 1,
            queue_max: 1,
            ..Options::default().engine
        },
        replicate: ReplicateMockConfig {
            median_latency: Duration::from_secs(20),
            ..ReplicateMockConfig::default()
        },
        ..Options::default()
    })
    .await;
    let dan = bot.telegram.user(3001, "Dan", Some("en"));
    say(&dan, "/start").await;
    say(&dan, "runs now").await;
    // Wait until the first job left the queue for the replicate mock.
    let deadline = tokio::time::Instant::now() + WAIT;
    while bot.replicate.stats().created == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    say(&dan, "waits").await;
    let (_, refused, _) = say(&dan, "no room").await;
    assert!(
        refused.starts_with("The queue is full right now"),
        "{refused}"
    );
    let (_, canceled, _) = say(&dan, "/cancel").await;
    assert_eq!(canceled, "Canceled; the credits are back.");
    let seen = dan.transcript().len();
    dan.send_text("/balance");
    let (_, balance, _) = reply_after(&dan, seen).await;
    assert!(
        balance.contains("Credits: 9"),
        "one running job charged: {balance}"
    );
}
