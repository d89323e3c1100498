//! Options in prompts, the buttons under images (again, same seed, as file) and /history.

use genbot_mocks::telegram::{Entry, SimUser};
use genbot_store::{JobStatus, UserId};

use crate::helpers::{press, say, spawn_bot, Options, TestBot, WAIT};

/// A photo in a chat: its message id, file and buttons.
type Photo = (i64, String, Vec<(String, String)>);

/// Waits for the `n`th photo in the chat.
async fn nth_photo(user: &SimUser, n: usize) -> Photo {
    let photos = |t: &[Entry]| -> Vec<Photo> {
        t.iter()
            .filter_map(|e| match e {
                Entry::BotPhoto {
                    message_id,
                    url,
                    buttons,
                    ..
                } => Some((*message_id, url.clone(), buttons.clone())),
                _ => None,
            })
            .collect()
    };
    let transcript = user
        .wait_for(WAIT, |t| photos(t).len() >= n)
        .await
        .unwrap_or_else(|| panic!("photo {n} never came: {:?}", user.transcript()));
    photos(&transcript)[n - 1].clone()
}

fn button<'a>(buttons: &'a [(String, String)], prefix: &str) -> &'a str {
    &buttons
        .iter()
        .find(|(_, d)| d.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} button: {buttons:?}"))
        .1
}

async fn succeeded(bot: &TestBot) -> Vec<genbot_store::Job> {
    let mut jobs = bot
        .store
        .jobs_with_status(JobStatus::Succeeded, 100)
        .await
        .unwrap();
    jobs.sort_by_key(|j| j.id);
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_reruns_originals_and_history() {
    let bot = spawn_bot(Options::default()).await;
    let ann = bot.telegram.user(3001, "Ann", Some("en"));
    say(&ann, "/start").await;

    let (_, refused, _) = say(&ann, "a red fox --ar 5:4").await;
    assert!(
        refused.contains("--ar 5:4")
            && refused.contains("16:9")
            && refused.contains("Nothing was charged"),
        "{refused}"
    );
    let credits = |bot: &TestBot| {
        let store = bot.store.clone();
        async move { store.get_user(UserId(3001)).await.unwrap().unwrap().credits }
    };
    assert_eq!(credits(&bot).await, 10, "a refused option charged");

    say(&ann, "a red fox --ar 16:9 --seed 42").await;
    let (first, _, buttons) = nth_photo(&ann, 1).await;
    let jobs = succeeded(&bot).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].prompt, "a red fox");
    assert_eq!(jobs[0].params["aspect_ratio"], "16:9");
    assert_eq!(jobs[0].params["seed"], 42);

    // Same seed: the same inputs again.
    ann.press(first, button(&buttons, "seed:")).unwrap();
    nth_photo(&ann, 2).await;
    // Again: a new seed, the other inputs kept.
    ann.press(first, button(&buttons, "again:")).unwrap();
    nth_photo(&ann, 3).await;
    let jobs = succeeded(&bot).await;
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        jobs[1].params, jobs[0].params,
        "same seed changed the inputs"
    );
    assert_eq!(jobs[2].params["aspect_ratio"], "16:9");
    assert_ne!(jobs[2].params["seed"], 42, "again kept the seed");
    assert_eq!(credits(&bot).await, 7);

    // As file: the original bytes, as a document.
    ann.press(first, button(&buttons, "file:")).unwrap();
    let transcript = ann
        .wait_for(WAIT, |t| {
            t.iter().any(|e| matches!(e, Entry::BotDocument { .. }))
        })
        .await
        .expect("no document");
    assert!(transcript.iter().any(
        |e| matches!(e, Entry::BotDocument { file, .. } if file.starts_with("upload:") && file.contains("bytes"))
    ));
    // Once sent, the document goes by its file_id, even after the original is pruned. The
    // press is answered after the file_id is kept.
    ann.wait_for(WAIT, |t| {
        t.iter()
            .any(|e| matches!(e, Entry::CallbackAnswered(Some(text)) if text.contains("File sent")))
    })
    .await
    .expect("the press was not answered");
    let job = jobs[0].id;
    assert!(bot.store.job_document(job).await.unwrap().is_some());
    bot.store
        .prune_job_images(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(bot.store.job_image(job).await.unwrap().is_none());
    ann.press(first, button(&buttons, "file:")).unwrap();
    let documents = |t: &[Entry]| -> Vec<String> {
        t.iter()
            .filter_map(|e| match e {
                Entry::BotDocument { file, .. } => Some(file.clone()),
                _ => None,
            })
            .collect()
    };
    let transcript = ann
        .wait_for(WAIT, |t| documents(t).len() >= 2)
        .await
        .unwrap_or_else(|| panic!("no second document: {:?}", ann.transcript()));
    let second = &documents(&transcript)[1];
    assert!(
        second.starts_with("document"),
        "not sent by file_id: {second}"
    );

    // History: re-sent by file_id, nothing generated.
    let created = bot.replicate.stats().created;
    let seen_photos = 3;
    ann.send_text("/history");
    let (resent_id, resent, history_buttons) = nth_photo(&ann, seen_photos + 3).await;
    assert!(
        resent.starts_with("photo"),
        "not re-sent by file_id: {resent}"
    );
    assert!(history_buttons.iter().any(|(_, d)| d.starts_with("again:")));
    assert_eq!(
        bot.replicate.stats().created,
        created,
        "history generated images"
    );
    assert_eq!(succeeded(&bot).await.len(), 3);

    // Again without the credits for it (under the re-sent copy: a press on the first image now
    // could be a double tap): the chat says why, and the press is not answered "Queued" (seen:
    // a refused re-run's press said "Queued").
    let left = credits(&bot).await;
    bot.store.add_credits(UserId(3001), -left).await.unwrap();
    let seen = ann.transcript_len();
    let answer = press(&ann, resent_id, button(&history_buttons, "again:"))
        .await
        .unwrap_or_default();
    assert_eq!(answer, "Not queued: see the chat");
    ann.wait_for_after(seen, WAIT, |t| {
        t.iter().any(
            |e| matches!(e, Entry::BotText { text, .. } if text.contains("Not enough credits")),
        )
    })
    .await
    .unwrap_or_else(|| panic!("no refusal in the chat: {:?}", ann.transcript()));
    assert_eq!(succeeded(&bot).await.len(), 3);

    // Someone else's image cannot be re-run.
    let eve = bot.telegram.user(3002, "Eve", Some("en"));
    say(&eve, "/start").await;
    let (eve_history, _, _) = say(&eve, "/history").await;
    let _ = eve_history;
    let foreign = format!("again:{}", jobs[0].id.0);
    // Eve presses a forged button on her own message.
    let (message, _, _) = say(&eve, "/help").await;
    let answer = press(&eve, message, &foreign).await.unwrap_or_default();
    assert!(answer.contains("not in your history"), "{answer}");
    assert_eq!(succeeded(&bot).await.len(), 3);
}

/// A double tap on "again" (two presses on one image, sent before the first is answered) queues
/// and charges one re-run; the second press is told so (seen: 4 of 5 fast taps each charged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_tap_on_again_queues_one_rerun() {
    let bot = spawn_bot(Options::default()).await;
    let dan = bot.telegram.user(3003, "Dan", Some("en"));
    say(&dan, "/start").await;
    say(&dan, "a lighthouse").await;
    let (first, _, buttons) = nth_photo(&dan, 1).await;
    let seen = dan.transcript_len();
    for _ in 0..3 {
        dan.press(first, button(&buttons, "again:")).unwrap();
    }
    let answers = |t: &[Entry]| -> Vec<String> {
        t[seen.min(t.len())..]
            .iter()
            .filter_map(|e| match e {
                Entry::CallbackAnswered(text) => Some(text.clone().unwrap_or_default()),
                _ => None,
            })
            .collect()
    };
    let transcript = dan
        .wait_for(WAIT, |t| answers(t).len() >= 3)
        .await
        .unwrap_or_else(|| panic!("three presses, not three answers: {:?}", dan.transcript()));
    let mut answers = answers(&transcript);
    answers.sort();
    assert_eq!(
        answers,
        [
            "Already queued. For one more, press again in a few seconds",
            "Already queued. For one more, press again in a few seconds",
            "Queued",
        ]
    );
    nth_photo(&dan, 2).await;
    assert_eq!(succeeded(&bot).await.len(), 2, "a double tap ran twice");
    let dan_credits = bot.store.get_user(UserId(3003)).await.unwrap().unwrap();
    assert_eq!(dan_credits.credits, 8, "a double tap charged twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_saved_per_user_and_prompt_options_win() {
    let bot = spawn_bot(Options::default()).await;
    let bea = bot.telegram.user(3003, "Bea", Some("en"));
    say(&bea, "/start").await;
    let (menu, text, buttons) = say(&bea, "/settings").await;
    assert!(text.contains("aspect_ratio (--ar): 1:1"), "{text}");
    assert!(text.contains("seed (--seed): random"), "{text}");
    assert!(buttons
        .iter()
        .any(|(l, d)| l == "✅1:1" && d == "set:aspect_ratio=1:1"));

    assert_eq!(
        press(&bea, menu, "set:aspect_ratio=16:9").await.as_deref(),
        Some("Saved: aspect_ratio = 16:9")
    );
    let edited = bea.transcript().into_iter().find_map(|e| match e {
        Entry::BotText {
            message_id, text, ..
        } if message_id == menu => Some(text),
        _ => None,
    });
    assert!(
        edited.is_some_and(|t| t.contains("aspect_ratio (--ar): 16:9")),
        "the settings message shows the new value"
    );
    // A forged value is refused with what is allowed.
    let refused = press(&bea, menu, "set:num_inference_steps=99")
        .await
        .unwrap_or_default();
    assert!(refused.contains("from 1 to 4"), "{refused}");
    // A forged button far longer than Telegram's 64 bytes: its echo is cut to what Telegram
    // takes in a press's answer (refused whole before: the press was never answered).
    for forged in [
        format!("set:aspect_ratio={}", "x".repeat(5_000)),
        format!("set:{}=1", "x".repeat(5_000)),
    ] {
        let answer = press(&bea, menu, &forged).await.unwrap_or_default();
        assert!(
            !answer.is_empty() && answer.encode_utf16().count() <= 200,
            "{answer}"
        );
    }

    say(&bea, "a quiet lake").await;
    nth_photo(&bea, 1).await;
    say(&bea, "a quiet lake --ar 9:16").await;
    nth_photo(&bea, 2).await;
    let jobs = succeeded(&bot).await;
    assert_eq!(jobs[0].params["aspect_ratio"], "16:9", "the saved setting");
    assert_eq!(
        jobs[1].params["aspect_ratio"], "9:16",
        "the prompt's option wins"
    );
    assert_eq!(jobs[0].params["num_inference_steps"], 4);

    bea.press(menu, "set:reset").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !bot
        .store
        .get_user(UserId(3003))
        .await
        .unwrap()
        .unwrap()
        .settings_for("flux-schnell")
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "reset never saved");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
