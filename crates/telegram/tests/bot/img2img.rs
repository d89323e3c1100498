//! A photo with a caption is drawn from by a model that takes a picture.

use genbot_mocks::telegram::Entry;
use genbot_store::JobStatus;

use crate::helpers::{reply_after, spawn_bot, Options, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captioned_photo_becomes_an_image_to_image_job() {
    let bot = spawn_bot(Options::default()).await;
    let ann = bot.telegram.user(4001, "Ann", Some("en"));
    ann.send_text("/start");
    reply_after(&ann, 1).await;

    let seen = ann.transcript().len();
    ann.send_photo(None);
    let (_, asked, _) = reply_after(&ann, seen).await;
    assert!(asked.contains("caption"), "{asked}");

    ann.send_photo(Some("as a watercolor"));
    ann.wait_for(WAIT, |t| {
        t.iter().any(|e| matches!(e, Entry::BotPhoto { .. }))
    })
    .await
    .unwrap_or_else(|| panic!("no image: {:?}", ann.transcript()));
    let job = bot
        .store
        .jobs_with_status(JobStatus::Succeeded, 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
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
