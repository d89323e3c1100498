//! The delivery outbox against the mocks: where the image comes from (the bytes kept when the
//! prediction succeeded, else a download at delivery, else Telegram fetching the URL), photo or
//! document by size, the 20 MB cap, no API token on output URLs, 429s waited out, refusals
//! recorded with their reason and a 403 marking the user blocked.

use std::time::Duration;

use genbot_mocks::telegram::{Entry, SimUser};
use genbot_store::UserId;

use crate::helpers::{say, spawn_bot, Options, TestBot, WAIT};

/// Bytes above which an image goes as a document (Telegram's limit for photos).
const PHOTO_MAX: usize = 10 * 1024 * 1024;
/// Bytes above which an output is not kept (nor downloaded at delivery).
const OUTPUT_MAX: usize = 20 * 1024 * 1024;

/// Sends a prompt and waits for the image it brings, as a photo or document: returns what the
/// bot gave Telegram (`upload:<name> (<n> bytes)`, a URL or a `file_id`) and whether it came
/// as a document.
async fn draw(user: &SimUser, prompt: &str) -> (String, bool) {
    let seen = user.transcript().len();
    user.send_text(prompt);
    let transcript = user
        .wait_for(WAIT, |t| t[seen.min(t.len())..].iter().any(is_image))
        .await
        .unwrap_or_else(|| panic!("no image for {prompt:?}: {:?}", user.transcript()));
    transcript[seen..]
        .iter()
        .find_map(|e| match e {
            Entry::BotPhoto { url, .. } => Some((url.clone(), false)),
            Entry::BotDocument { file, .. } => Some((file.clone(), true)),
            _ => None,
        })
        .unwrap()
}

/// The entries after the transcript's first `seen`, once a document is among them; `missing`
/// (with the transcript) when none came in time.
async fn document_after(user: &SimUser, seen: usize, missing: &str) -> Vec<Entry> {
    user.wait_for_after(seen, WAIT, |since| {
        since.iter().any(|e| matches!(e, Entry::BotDocument { .. }))
    })
    .await
    .unwrap_or_else(|| panic!("{missing}: {:?}", user.transcript()))
}

fn is_image(entry: &Entry) -> bool {
    matches!(entry, Entry::BotPhoto { .. } | Entry::BotDocument { .. })
}

fn images(user: &SimUser) -> usize {
    user.transcript().iter().filter(|e| is_image(e)).count()
}

fn calls(bot: &TestBot, method: &str) -> u64 {
    bot.telegram
        .stats()
        .methods
        .get(method)
        .copied()
        .unwrap_or(0)
}

/// The user's one job's `delivery_error` once the outbox recorded the delivery as done
/// (delivered, or given up: either way never tried again).
async fn recorded_delivery(bot: &TestBot, user: i64) -> Option<String> {
    let path = bot.database_path();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let path = path.clone();
        let row = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.query_row(
                "SELECT delivery_error FROM generation_jobs
                 WHERE user_id = ?1 AND delivered_at IS NOT NULL",
                [user],
                |r| r.get::<_, Option<String>>(0),
            )
            .ok()
        })
        .await
        .unwrap();
        if let Some(error) = row {
            return error;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "user {user}'s delivery was not recorded as done within {WAIT:?} (retried?)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_comes_from_kept_bytes_else_a_download_at_delivery_else_its_url() {
    let bot = spawn_bot(Options::default()).await;
    let ada = bot.telegram.user(8001, "Ada", Some("en"));
    say(&ada, "/start").await;
    let files = format!("{}/files/", bot.replicate.url());

    // Kept when the prediction succeeded: one download, the bytes uploaded.
    let (kept, _) = draw(&ada, "a kept harbour").await;
    assert!(kept.starts_with("upload:image.png"), "{kept}");
    let stats = bot.replicate.stats();
    assert_eq!(
        (stats.output_downloads, stats.output_downloads_failed),
        (1, 0)
    );

    // The three downloads at success fail: the delivery fetches the URL itself.
    bot.replicate.fail_output_downloads(3);
    let (fetched, _) = draw(&ada, "a fetched harbour").await;
    assert!(fetched.starts_with("upload:image.png"), "{fetched}");
    let stats = bot.replicate.stats();
    assert_eq!(
        (stats.output_downloads, stats.output_downloads_failed),
        (2, 3)
    );

    // That fails too: Telegram is given the URL.
    bot.replicate.fail_output_downloads(4);
    let (linked, _) = draw(&ada, "a linked harbour").await;
    assert!(linked.starts_with(&files), "{linked}");
    let stats = bot.replicate.stats();
    assert_eq!(
        (stats.output_downloads, stats.output_downloads_failed),
        (2, 7)
    );

    assert_eq!(
        stats.output_requests_with_token, 0,
        "the Replicate token went to an output URL"
    );
    assert_eq!(images(&ada), 3, "{:?}", ada.transcript());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_to_10_mb_is_a_photo_above_a_document_and_above_20_mb_a_link() {
    let bot = spawn_bot(Options::default()).await;
    let bo = bot.telegram.user(8002, "Bo", Some("en"));
    say(&bo, "/start").await;

    bot.replicate.set_output_size(Some(PHOTO_MAX));
    let (photo, as_document) = draw(&bo, "exactly ten").await;
    assert_eq!(
        (photo.as_str(), as_document),
        (
            format!("upload:image.png ({PHOTO_MAX} bytes)").as_str(),
            false
        )
    );

    bot.replicate.set_output_size(Some(PHOTO_MAX + 1));
    let (document, as_document) = draw(&bo, "one byte more").await;
    assert_eq!(
        (document.as_str(), as_document),
        (
            format!("upload:image.png ({} bytes)", PHOTO_MAX + 1).as_str(),
            true
        )
    );

    // Not kept, not downloaded at delivery: only Telegram may fetch it.
    bot.replicate.set_output_size(Some(OUTPUT_MAX + 1));
    let (link, as_document) = draw(&bo, "too big to keep").await;
    assert!(
        link.starts_with(&format!("{}/files/", bot.replicate.url())) && !as_document,
        "{link}"
    );
    assert_eq!(bot.replicate.stats().output_requests_with_token, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_send_photo_is_waited_out_and_the_photo_sent_once() {
    let bot = spawn_bot(Options::default()).await;
    let cy = bot.telegram.user(8003, "Cy", Some("en"));
    say(&cy, "/start").await;
    // More 429s than a send waits out by itself (3): the outbox tries the delivery again.
    bot.telegram.throttle_next("sendPhoto", 1, 4);
    let (photo, _) = draw(&cy, "a patient photo").await;
    assert!(photo.starts_with("upload:image.png"), "{photo}");
    assert_eq!(calls(&bot, "sendphoto"), 5, "four 429s, then the photo");
    // Recorded as delivered (its last 429 stays as the delivery's last error).
    recorded_delivery(&bot, 8003).await;
    assert_eq!(images(&cy), 1);
}

/// A result Telegram refuses for good, with the chat still there, is refunded and its user
/// told (it was given up in silence, the credits spent); one for a user who blocked the bot is
/// only given up, and marks the user blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_is_refunded_and_told_and_a_403_marks_the_user_blocked() {
    let bot = spawn_bot(Options::default()).await;
    let balance = |user: i64| {
        let store = bot.store.clone();
        async move { store.get_user(UserId(user)).await.unwrap().unwrap().credits }
    };
    let di = bot.telegram.user(8004, "Di", Some("en"));
    say(&di, "/start").await;
    let before = balance(8004).await;
    bot.telegram.fail_next(
        "sendPhoto",
        400,
        "Bad Request: wrong file identifier/HTTP URL specified",
        1,
    );
    let seen = di.transcript().len();
    di.send_text("a refused photo");
    // Recorded as done once the notice went: a refusal is final, not retried.
    let reason = recorded_delivery(&bot, 8004).await.unwrap_or_default();
    assert!(reason.contains("wrong file identifier"), "{reason:?}");
    assert_eq!(calls(&bot, "sendphoto"), 1);
    assert_eq!(images(&di), 0);
    let told = di.transcript()[seen..].iter().any(|e| {
        matches!(e, Entry::BotText { text, .. }
            if text.contains("Telegram would not take it") && text.contains("credits are back"))
    });
    assert!(told, "not told: {:?}", di.transcript());
    assert_eq!(
        balance(8004).await,
        before,
        "the refused result was charged"
    );
    for audit in bot.store.credit_audit(8004..8005).await.unwrap() {
        assert_eq!(audit.credits, audit.expected, "{audit:?}");
    }

    let ed = bot.telegram.user(8005, "Ed", Some("en"));
    say(&ed, "/start").await;
    let before = bot.store.broadcast_recipients(8004, 1).await.unwrap();
    assert_eq!(before, [(UserId(8005), false)]);
    bot.telegram.block(8005);
    ed.send_text("a photo for nobody");
    let reason = recorded_delivery(&bot, 8005).await.unwrap_or_default();
    assert!(reason.contains("blocked"), "{reason:?}");
    assert_eq!(
        calls(&bot, "sendphoto"),
        2,
        "one attempt for the blocked user"
    );
    let after = bot.store.broadcast_recipients(8004, 1).await.unwrap();
    assert_eq!(after, [(UserId(8005), true)], "blocked_at was not set");
    assert!(
        balance(8005).await < balance(8004).await,
        "refunded though the user blocked the bot"
    );
}

/// A panorama Telegram refuses as a photo ("PHOTO_INVALID_DIMENSIONS": width + height over
/// 10,000, or one side over 20 times the other) reaches the user as a document, at once: the
/// refusal was retried for minutes as a server error, then given up, the credit spent. The
/// document's `file_id` is kept for "as file", not as the job's photo (`/history` sends photos
/// by id, and Telegram refuses a document's id as a photo).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_telegram_refuses_as_a_photo_comes_as_a_document() {
    let bot = spawn_bot(Options::default()).await;
    let fay = bot.telegram.user(8006, "Fay", Some("en"));
    say(&fay, "/start").await;
    bot.replicate.set_output_dimensions(Some((2_100, 100)));
    let (document, as_document) = draw(&fay, "a very wide panorama").await;
    assert!(
        as_document && document.starts_with("upload:image.png"),
        "{document} (as a document: {as_document})"
    );
    assert_eq!(
        recorded_delivery(&bot, 8006).await,
        None,
        "delivered, with no error left"
    );
    assert_eq!(calls(&bot, "sendphoto"), 1, "refused once, not retried");
    assert_eq!(calls(&bot, "senddocument"), 1);
    let refused = bot.telegram.stats().refused;
    assert!(
        refused
            .iter()
            .any(|r| r.description.contains("PHOTO_INVALID_DIMENSIONS")),
        "{refused:?}"
    );
    assert_eq!(images(&fay), 1);
    // The history sends it as the document it went as, by its id: never as a photo.
    let seen = fay.transcript().len();
    fay.send_text("/history");
    let answered = document_after(&fay, seen, "/history left the document out").await;
    let resent: Vec<&Entry> = answered.iter().filter(|e| is_image(e)).collect();
    assert!(
        matches!(resent.as_slice(), [Entry::BotDocument { file, .. }] if !file.starts_with("upload:")),
        "{resent:?}"
    );
    let refused = bot.telegram.stats().refused;
    assert!(
        !refused
            .iter()
            .any(|r| r.description.contains("type Document as Photo")),
        "/history sent the document's id as a photo: {refused:?}"
    );
    // A row an older build wrote (the document's id kept as the photo's): Telegram refuses it
    // as a photo, and /history sends it as the document it is instead of leaving it out.
    let path = bot.database_path();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "UPDATE generation_jobs SET telegram_file_id =
                (SELECT file_id FROM job_documents WHERE job_id = generation_jobs.id)
             WHERE user_id = 8006;
             DELETE FROM job_documents;",
        )
        .unwrap();
    })
    .await
    .unwrap();
    let seen = fay.transcript().len();
    fay.send_text("/history");
    document_after(&fay, seen, "/history left the old row out").await;
}

/// Telegram refusing to fetch the image's URL (the downloads had failed) is tried again, not
/// given up: the next try downloads the image itself and uploads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_url_is_tried_again_with_the_image_downloaded() {
    let bot = spawn_bot(Options::default()).await;
    let gus = bot.telegram.user(8007, "Gus", Some("en"));
    say(&gus, "/start").await;
    // The three downloads at success and the one at delivery fail: Telegram gets the URL…
    bot.replicate.fail_output_downloads(4);
    // …and cannot fetch it (teloxide has no name for this refusal).
    bot.telegram.fail_next(
        "sendPhoto",
        400,
        "Bad Request: wrong type of the web page content",
        1,
    );
    let (photo, as_document) = draw(&gus, "a harbour behind a flaky CDN").await;
    assert!(
        photo.starts_with("upload:image.png") && !as_document,
        "{photo}"
    );
    assert_eq!(
        calls(&bot, "sendphoto"),
        2,
        "the URL refused, then the upload"
    );
    assert_eq!(
        recorded_delivery(&bot, 8007)
            .await
            .as_deref()
            .map(|e| e.contains("web page")),
        Some(true),
        "delivered, its last error kept"
    );
    assert_eq!(images(&gus), 1);
}

/// A URL Telegram refuses as a photo (the downloads had failed, and the image is a panorama)
/// is not sent as a document by URL, which Telegram refuses for anything but GIF, PDF and ZIP:
/// the next try downloads the image and uploads it, as a document once refused as a photo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_refused_as_a_photo_is_uploaded_on_the_next_try() {
    let bot = spawn_bot(Options::default()).await;
    let hal = bot.telegram.user(8008, "Hal", Some("en"));
    say(&hal, "/start").await;
    bot.replicate.set_output_dimensions(Some((2_100, 100)));
    bot.replicate.fail_output_downloads(4);
    // Telegram fetched the URL and found the panorama (the mock fetches nothing: scripted).
    bot.telegram
        .fail_next("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS", 1);
    let (document, as_document) = draw(&hal, "a panorama behind a flaky CDN").await;
    assert!(
        as_document && document.starts_with("upload:image.png"),
        "{document} (as a document: {as_document})"
    );
    assert_eq!(
        calls(&bot, "sendphoto"),
        2,
        "the URL, then the upload, both refused as photos"
    );
    assert_eq!(calls(&bot, "senddocument"), 1, "no document by URL");
    assert_eq!(images(&hal), 1);
}
