//! Groups under privacy mode: `/img@bot`, replies to the bot, results threaded as replies.

use genbot_mocks::telegram::{Entry, SimUser};
use genbot_store::{JobStatus, UserId};

use crate::helpers::{reply_after, spawn_bot, Options, WAIT};

/// The group's photos: (message id, the message it replies to).
fn photos(chat: &SimUser) -> Vec<(i64, Option<i64>)> {
    chat.transcript()
        .iter()
        .filter_map(|e| match e {
            Entry::BotPhoto {
                message_id,
                reply_to,
                ..
            } => Some((*message_id, *reply_to)),
            _ => None,
        })
        .collect()
}

/// The data of the button starting with `prefix` under the bot's photo `photo` in `chat`.
fn button_under(chat: &SimUser, photo: i64, prefix: &str) -> Option<String> {
    chat.transcript().iter().find_map(|e| match e {
        Entry::BotPhoto {
            message_id,
            buttons,
            ..
        } if *message_id == photo => buttons
            .iter()
            .find(|(_, d)| d.starts_with(prefix))
            .map(|(_, d)| d.clone()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_gets_results_as_replies_and_only_what_is_addressed_to_the_bot() {
    let bot = spawn_bot(Options::default()).await;
    let ann = bot.telegram.user(5001, "Ann", Some("en"));
    let group = bot.telegram.group(-1_001_000, "Artists");

    assert_eq!(
        group.send_text(&ann, "hello everyone"),
        None,
        "privacy mode"
    );
    let seen = group.chat().transcript().len();
    group.send_text(&ann, "/help@genbot_mock_bot").unwrap();
    let (_, help, _) = reply_after(group.chat(), seen).await;
    assert!(help.contains("/img@genbot_mock_bot"), "{help}");

    group.send_text(&ann, "/img@otherbot a castle").unwrap();
    group
        .send_text(&ann, "/img@genbot_mock_bot a castle on a hill")
        .unwrap();
    let first = group
        .chat()
        .wait_for(WAIT, |_| !photos(group.chat()).is_empty())
        .await
        .map(|_| photos(group.chat())[0])
        .expect("no result in the group");
    assert!(first.1.is_some(), "the result is not a reply");

    // A reply to the bot's photo is a prompt.
    group
        .reply(&ann, first.0, "the same castle at night")
        .unwrap();
    group
        .chat()
        .wait_for(WAIT, |_| photos(group.chat()).len() >= 2)
        .await
        .expect("no result for the reply");
    assert!(photos(group.chat())[1].1.is_some());

    // "Again" under a group result: the new image comes to the group, no queue message.
    let again = button_under(group.chat(), first.0, "again:")
        .expect("no Again button under the group's result");
    let seen = group.chat().transcript().len();
    group.press(&ann, first.0, &again).unwrap();
    let answered = group
        .chat()
        .wait_for(WAIT, |t| {
            t[seen..]
                .iter()
                .any(|e| matches!(e, Entry::CallbackAnswered(_)))
        })
        .await
        .expect("the press was not answered");
    assert!(answered[seen..]
        .iter()
        .any(|e| matches!(e, Entry::CallbackAnswered(Some(t)) if t == "Queued")));
    group
        .chat()
        .wait_for(WAIT, |_| photos(group.chat()).len() >= 3)
        .await
        .expect("no result for Again");

    // A photo captioned with the command: image-to-image, answered in the group.
    group
        .send_photo(&ann, "/img@genbot_mock_bot as a stained glass window")
        .unwrap();
    group
        .chat()
        .wait_for(WAIT, |_| photos(group.chat()).len() >= 4)
        .await
        .expect("no image-to-image result in the group");
    assert!(photos(group.chat())[3].1.is_some());
    let drawn = bot
        .store
        .jobs_with_status(JobStatus::Succeeded, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.prompt == "as a stained glass window")
        .expect("no image-to-image job");
    assert!(drawn.params["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("data:image/png")));

    let jobs: Vec<_> = bot
        .store
        .jobs_with_status(JobStatus::Succeeded, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.model == "flux-schnell")
        .collect();
    let mut prompts: Vec<&str> = jobs.iter().map(|j| j.prompt.as_str()).collect();
    prompts.sort_unstable();
    assert_eq!(
        prompts,
        [
            "a castle on a hill",
            "a castle on a hill",
            "the same castle at night"
        ],
        "a command for another bot was taken"
    );
    assert!(jobs.iter().all(|j| j.user_id == UserId(5001)));
    let ann_now = bot.store.get_user(UserId(5001)).await.unwrap().unwrap();
    assert_eq!(
        ann_now.credits, 4,
        "the asker pays (1 + 1 + 1 + 3 for flux-dev)"
    );
    // In the group: the help answer and the two photos, no queue messages.
    let texts = group
        .chat()
        .transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { .. }))
        .count();
    assert_eq!(texts, 1);
    assert!(
        !ann.transcript()
            .iter()
            .any(|e| matches!(e, Entry::BotPhoto { .. })),
        "a group's result went to the private chat"
    );
}

/// 40 group results at once against Telegram's 20 a minute per group: the group trickles, but
/// private users' results are not held behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_group_does_not_hold_up_other_users_results() {
    let bot = spawn_bot(Options::paced_like_telegram()).await;
    let group = bot.telegram.group(-1_002_000, "Busy");
    let members: Vec<_> = (0..40)
        .map(|n| bot.telegram.user(5100 + n, &format!("m{n}"), Some("en")))
        .collect();
    for member in &members {
        group
            .send_text(
                member,
                &format!("/img@genbot_mock_bot a tower number {}", member.id()),
            )
            .unwrap();
    }
    // Wait until the group's jobs exist, so the private ones come after them in the outbox.
    let deadline = std::time::Instant::now() + WAIT;
    while bot.store.count_jobs_by_status().await.unwrap().total() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the group's jobs never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let private: Vec<_> = (0..5)
        .map(|n| bot.telegram.user(5200 + n, &format!("p{n}"), Some("en")))
        .collect();
    let started = std::time::Instant::now();
    for user in &private {
        user.send_text("a quiet street");
    }
    for user in &private {
        user.wait_for(std::time::Duration::from_secs(8), |t| {
            t.iter().any(|e| matches!(e, Entry::BotPhoto { .. }))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "user {} waited over 8 s behind the group ({} group results sent)",
                user.id(),
                photos(group.chat()).len()
            )
        });
    }
    let waited = started.elapsed();
    let sent_to_group = photos(group.chat()).len();
    assert!(sent_to_group >= 3, "the group's burst was not sent");
    assert!(
        sent_to_group <= 20,
        "{sent_to_group} messages into one group within {waited:?}"
    );
}

/// "As file" under a result in a group: its requester gets the file in the group, as a reply to
/// the image (before, the press was taken for a forged one and answered with nothing); another
/// member's press is answered, to them alone, that the image is not theirs, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_file_under_a_group_result_is_for_its_requester() {
    let bot = spawn_bot(Options::default()).await;
    let ann = bot.telegram.user(5101, "Ann", Some("en"));
    let bob = bot.telegram.user(5102, "Bob", Some("en"));
    let group = bot.telegram.group(-1_001_100, "Files");
    group
        .send_text(&ann, "/img@genbot_mock_bot a lighthouse")
        .unwrap();
    let photo = group
        .chat()
        .wait_for(WAIT, |_| !photos(group.chat()).is_empty())
        .await
        .map(|_| photos(group.chat())[0].0)
        .expect("no result in the group");
    let as_file = button_under(group.chat(), photo, "file:")
        .expect("no As file button under the group's result");
    let answers = |from: usize| -> Vec<Option<String>> {
        group.chat().transcript()[from..]
            .iter()
            .filter_map(|e| match e {
                Entry::CallbackAnswered(text) => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    let documents = || {
        group
            .chat()
            .transcript()
            .iter()
            .filter(|e| matches!(e, Entry::BotDocument { .. }))
            .count()
    };

    let seen = group.chat().transcript().len();
    group.press(&bob, photo, &as_file).unwrap();
    group
        .chat()
        .wait_for(WAIT, |_| !answers(seen).is_empty())
        .await
        .expect("Bob's press was not answered");
    assert_eq!(
        answers(seen),
        [Some(
            "Only whoever asked for this image can get it as a file.".to_owned()
        )]
    );
    assert_eq!(documents(), 0, "Bob got Ann's file");

    let seen = group.chat().transcript().len();
    group.press(&ann, photo, &as_file).unwrap();
    group
        .chat()
        .wait_for(WAIT, |_| documents() == 1 && !answers(seen).is_empty())
        .await
        .unwrap_or_else(|| {
            panic!(
                "Ann's file did not come to the group: {:?}",
                group.chat().transcript()
            )
        });
    assert_eq!(answers(seen), [Some("File sent".to_owned())]);
}

/// A group upgraded to a supergroup refuses every send with the new chat's id: a result asked
/// for in the group goes to the supergroup. Seen: the result was given up ("The group has
/// been migrated…"), its credit kept and the image never shown anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_follows_a_group_that_became_a_supergroup() {
    let bot = spawn_bot(Options::default()).await;
    let ann = bot.telegram.user(5101, "Ann", Some("en"));
    let group = bot.telegram.group(-5_101, "Sketchers");
    let supergroup = bot.telegram.group(-1_005_101, "Sketchers");
    bot.telegram.migrate(-5_101, -1_005_101);

    group
        .send_text(&ann, "/img@genbot_mock_bot a lighthouse")
        .unwrap();
    supergroup
        .chat()
        .wait_for(WAIT, |_| !photos(supergroup.chat()).is_empty())
        .await
        .unwrap_or_else(|| {
            panic!(
                "no result in the supergroup: {:?}",
                group.chat().transcript()
            )
        });
    assert!(photos(group.chat()).is_empty());
    let succeeded = bot
        .store
        .jobs_with_status(JobStatus::Succeeded, 10)
        .await
        .unwrap();
    assert_eq!(
        succeeded
            .iter()
            .filter(|j| j.user_id == UserId(5101))
            .count(),
        1
    );
    assert_eq!(photos(supergroup.chat()).len(), 1, "sent more than once");
}
