//! A photo with a caption is drawn from by a model that takes a picture.

use genbot_mocks::telegram::{Entry, SimUser};
use genbot_store::{Job, JobStatus};

use crate::helpers::{reply_after, spawn_bot, Options, TestBot, WAIT};

/// A user who sent `/start` and got its answer.
async fn started(bot: &TestBot, id: i64) -> SimUser {
    let user = bot.telegram.user(id, "Ann", Some("en"));
    user.send_text("/start");
    reply_after(&user, 1).await;
    user
}

/// Waits for `user`'s image; the jobs that succeeded.
async fn image_drawn(bot: &TestBot, user: &SimUser) -> Vec<Job> {
    user.wait_for(WAIT, |t| {
        t.iter().any(|e| matches!(e, Entry::BotPhoto { .. }))
    })
    .await
    .unwrap_or_else(|| panic!("no image: {:?}", user.transcript()));
    bot.store
        .jobs_with_status(JobStatus::Succeeded, 10)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captioned_photo_becomes_an_image_to_image_job() {
    let bot = spawn_bot(Options::default()).await;
    let ann = started(&bot, 4001).await;

    let seen = ann.transcript().len();
    ann.send_photo(None);
    let (_, asked, _) = reply_after(&ann, seen).await;
    assert!(asked.contains("caption"), "{asked}");

    ann.send_photo(Some("as a watercolor"));
    let job = image_drawn(&bot, &ann).await.pop().unwrap();
    assert_eq!(job.prompt, "as a watercolor");
    assert_eq!(
        job.model, "flux-dev",
        "the first model that takes a picture"
    );
    let image = job.params["image"].as_str().unwrap();
    assert!(
        image.starts_with("data:image/png;base64,iVBORw0KGg"),
        "{image}"
    );
    assert_eq!(bot.telegram.stats().methods.get("getfile"), Some(&1));
    assert_eq!(
        bot.replicate
            .stats()
            .models
            .get("black-forest-labs/flux-dev"),
        Some(&1)
    );
}

/// A caption is parsed as a text is: `/img cat` draws "cat" from the photo (not "/img cat"),
/// and a caption that is another command gets that command's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caption_command_is_read_as_the_same_text_would_be() {
    let bot = spawn_bot(Options::default()).await;
    let ann = started(&bot, 4002).await;

    let seen = ann.transcript().len();
    ann.send_photo(Some("/balance"));
    let (_, answer, _) = reply_after(&ann, seen).await;
    assert!(answer.starts_with("Credits: "), "{answer}");

    ann.send_photo(Some("/img cat"));
    let jobs = image_drawn(&bot, &ann).await;
    let prompts: Vec<&str> = jobs.iter().map(|j| j.prompt.as_str()).collect();
    assert_eq!(prompts, ["cat"]);
}
