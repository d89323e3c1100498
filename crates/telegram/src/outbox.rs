//! The delivery outbox worker: finished jobs are delivered from the database, not from memory.
//!
//! A finished job stays "undelivered" in its row until a worker records that its image (or its
//! failure) reached the user. Workers claim deliveries under the replica's lease
//! (`JOB_LEASE_SECONDS`), renewed every heartbeat while a send is in flight, so after a crash the
//! next start (or another replica, once the lease expires) sends what was not recorded. The image is downloaded (bounded,
//! type-checked) and uploaded, and Telegram's `file_id` kept for re-sends; network errors, 5xx
//! and 429 past the pacer's retries are tried again with backoff; 403 (the user blocked the
//! bot) marks the user and stops; other refusals are recorded with their reason.

use std::sync::Arc;
use std::time::Duration;

use genbot_engine::FailureReason;
use std::collections::HashSet;

use genbot_store::{Delivery, DeliveryOutcome, JobId, JobStatus};
use parking_lot::Mutex;
use teloxide::prelude::*;
use teloxide::types::InputFile;
use teloxide::{ApiError, RequestError};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::pacing::send;
use crate::texts::{self, Lang};
use crate::Front;

/// Deliveries claimed per look.
const BATCH: u32 = 64;
/// Sends in flight at once (the pacer keeps Telegram's rates; this bounds memory).
const CONCURRENT_SENDS: usize = 32;
/// How often the outbox is looked at without a wake-up (work of other replicas, retries due).
const POLL: Duration = Duration::from_secs(1);
/// Tries before a delivery that keeps failing is given up (recorded with its last error).
const MAX_ATTEMPTS: u32 = 10;
/// Largest image downloaded; Telegram takes photos up to 10 MB and documents up to 50 MB.
const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// Telegram's caption limit, in characters.
const CAPTION_MAX: usize = 1024;

/// Delivers from the outbox until `stop`; `wake` is notified when a job of this process ends.
pub(crate) async fn run(front: Front, wake: Arc<Notify>, stop: CancellationToken) {
    let owner = front.engine().replica_id().to_owned();
    let store = front.engine().store().clone();
    let replica = front.engine().config().replica.clone();
    let lease = replica.lease;
    let sends = Arc::new(Semaphore::new(CONCURRENT_SENDS));
    let in_flight: Arc<Mutex<HashSet<JobId>>> = Arc::default();
    let keeper = tokio::spawn(keep_leases(
        store.clone(),
        owner.clone(),
        in_flight.clone(),
        replica.heartbeat,
        lease,
        stop.clone(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    // The first look also takes what a previous run of this replica had claimed.
    let mut including_own = true;
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Claim no more than can be sent now: a claimed delivery waiting for a send slot would
        // sit out its whole lease if this process died.
        let room = (sends.available_permits() as u32).min(BATCH);
        let claimed = if room == 0 {
            Ok(Vec::new())
        } else {
            store
                .claim_deliveries(&owner, lease, room, including_own)
                .await
        };
        if room > 0 {
            including_own = false;
        }
        let full = match claimed {
            Ok(batch) => {
                let full = room > 0 && batch.len() == room as usize;
                for delivery in batch {
                    let permit = tokio::select! {
                        () = stop.cancelled() => break,
                        permit = sends.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else { break };
                    let (front, owner, http) = (front.clone(), owner.clone(), http.clone());
                    let in_flight = in_flight.clone();
                    in_flight.lock().insert(delivery.job);
                    tokio::spawn(async move {
                        let job = delivery.job;
                        deliver(&front, &http, &owner, delivery).await;
                        in_flight.lock().remove(&job);
                        drop(permit);
                    });
                }
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the delivery outbox failed; retrying");
                false
            }
        };
        if stop.is_cancelled() {
            break;
        }
        if full {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = notified => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
    let _ = keeper.await;
}

/// Renews the leases of the deliveries in flight every `heartbeat`, so a long send (teloxide
/// waits 10 s after a 5xx; 429s are waited out) is not taken over while it runs.
async fn keep_leases(
    store: genbot_store::Store,
    owner: String,
    in_flight: Arc<Mutex<HashSet<JobId>>>,
    heartbeat: Duration,
    lease: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(heartbeat) => {}
        }
        let jobs: Vec<JobId> = in_flight.lock().iter().copied().collect();
        if jobs.is_empty() {
            continue;
        }
        if let Err(e) = store.renew_delivery_leases(&owner, &jobs, lease).await {
            tracing::warn!(error = %e, "renewing delivery leases failed");
        }
    }
}

/// One delivery attempt, recorded whatever its outcome.
async fn deliver(front: &Front, http: &reqwest::Client, owner: &str, delivery: Delivery) {
    let chat = ChatId(delivery.user.0);
    let sent = match delivery.status {
        JobStatus::Succeeded => send_image(front, http, chat, &delivery).await,
        _ => {
            let lang = language_of(front, delivery.user).await;
            let reason = FailureReason::from_stored(delivery.error.as_deref().unwrap_or(""));
            send(
                front,
                chat,
                front.bot().send_message(chat, texts::failed(lang, &reason)),
            )
            .await
            .map(|_| None)
        }
    };
    let outcome = match sent {
        Ok(file_id) => {
            front.metrics().delivered();
            DeliveryOutcome::Delivered { file_id }
        }
        Err(e) => {
            front.metrics().send_failed();
            let outcome = classify(&e, delivery.attempts);
            if is_blocked(&e) {
                if let Err(e) = front.engine().store().mark_blocked(delivery.user).await {
                    tracing::warn!(error = %e, "recording a blocked user failed");
                }
            }
            tracing::info!(job_id = delivery.job.0, error = %e, ?outcome, "delivery failed");
            outcome
        }
    };
    match front
        .engine()
        .store()
        .finish_delivery(delivery.job, owner, outcome)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            job_id = delivery.job.0,
            "delivery recorded by another worker meanwhile (its lease passed)"
        ),
        Err(e) => {
            tracing::warn!(job_id = delivery.job.0, error = %e, "recording a delivery failed; it will be sent again")
        }
    }
}

/// Sends the image: by its kept `file_id`, else downloaded and uploaded (as a document when
/// too big for a photo), else by URL for Telegram to fetch. Returns the uploaded `file_id`.
async fn send_image(
    front: &Front,
    http: &reqwest::Client,
    chat: ChatId,
    delivery: &Delivery,
) -> Result<Option<String>, RequestError> {
    let caption: String = delivery.prompt.chars().take(CAPTION_MAX).collect();
    let bot = front.bot();
    if let Some(file_id) = &delivery.file_id {
        let input = InputFile::file_id(file_id.clone().into());
        return send(front, chat, bot.send_photo(chat, input).caption(caption))
            .await
            .map(|_| Some(file_id.clone()));
    }
    let Some(url) = delivery.result_url.as_deref() else {
        return Ok(None);
    };
    match download(http, url).await {
        Ok(image) if image.bytes.len() <= MAX_PHOTO_BYTES => {
            let input = InputFile::memory(image.bytes).file_name(image.file_name);
            let message = send(front, chat, bot.send_photo(chat, input).caption(caption)).await?;
            Ok(message
                .photo()
                .and_then(|sizes| sizes.last())
                .map(|size| size.file.id.to_string()))
        }
        Ok(image) => {
            let input = InputFile::memory(image.bytes).file_name(image.file_name);
            let message =
                send(front, chat, bot.send_document(chat, input).caption(caption)).await?;
            Ok(message.document().map(|d| d.file.id.to_string()))
        }
        Err(reason) => {
            tracing::warn!(job_id = delivery.job.0, %reason, "downloading the image failed; Telegram fetches the URL instead");
            let Ok(parsed) = url.parse() else {
                return Ok(None);
            };
            let message = send(
                front,
                chat,
                bot.send_photo(chat, InputFile::url(parsed))
                    .caption(caption),
            )
            .await?;
            Ok(message
                .photo()
                .and_then(|sizes| sizes.last())
                .map(|size| size.file.id.to_string()))
        }
    }
}

struct Image {
    bytes: Vec<u8>,
    file_name: &'static str,
}

/// The image at `url`: at most `MAX_IMAGE_BYTES`, and a PNG, JPEG or WebP by its first bytes.
async fn download(http: &reqwest::Client, url: &str) -> Result<Image, String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?;
    if response
        .content_length()
        .is_some_and(|n| n > MAX_IMAGE_BYTES as u64)
    {
        return Err(format!("larger than {MAX_IMAGE_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
            return Err(format!("larger than {MAX_IMAGE_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let file_name = image_kind(&bytes).ok_or("not a PNG, JPEG or WebP image")?;
    Ok(Image { bytes, file_name })
}

/// A file name for the image by its magic bytes, or `None` when it is not PNG, JPEG or WebP.
fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image.png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image.jpg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image.webp")
    } else {
        None
    }
}

fn is_blocked(error: &RequestError) -> bool {
    matches!(
        error,
        RequestError::Api(
            ApiError::BotBlocked
                | ApiError::UserDeactivated
                | ApiError::CantInitiateConversation
                | ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup
                | ApiError::BotKickedFromChannel
        )
    )
}

/// What to do after a failed send: retry what may pass later, give up on refusals.
fn classify(error: &RequestError, attempts: u32) -> DeliveryOutcome {
    let text = error.to_string();
    if is_blocked(error) {
        return DeliveryOutcome::GaveUp {
            error: format!("the user blocked the bot: {text}"),
        };
    }
    let retryable = match error {
        RequestError::RetryAfter(after) => {
            return DeliveryOutcome::Retry {
                error: text,
                after: Duration::from_secs(u64::from(after.seconds().max(1))),
            }
        }
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => true,
        // Unknown descriptions are mostly server errors (5xx); known ones are refusals.
        RequestError::Api(ApiError::Unknown(_)) => true,
        _ => false,
    };
    if retryable && attempts + 1 < MAX_ATTEMPTS {
        let backoff = Duration::from_secs(1u64 << attempts.min(8)).min(Duration::from_secs(300));
        DeliveryOutcome::Retry {
            error: text,
            after: backoff,
        }
    } else {
        DeliveryOutcome::GaveUp { error: text }
    }
}

async fn language_of(front: &Front, user: genbot_store::UserId) -> Lang {
    match front.engine().users().get(user).await {
        Ok(Some(stored)) => Lang::from_code(stored.language.as_deref()),
        _ => Lang::En,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_first_bytes() {
        assert_eq!(image_kind(b"\x89PNG\r\n\x1a\nrest"), Some("image.png"));
        assert_eq!(image_kind(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image.jpg"));
        assert_eq!(image_kind(b"RIFF\0\0\0\0WEBPVP8 "), Some("image.webp"));
        assert_eq!(image_kind(b"<html>not found</html>"), None);
    }

    #[test]
    fn refusals_are_given_up_and_hiccups_retried() {
        let blocked = RequestError::Api(ApiError::BotBlocked);
        assert!(matches!(
            classify(&blocked, 0),
            DeliveryOutcome::GaveUp { .. }
        ));
        let gateway = RequestError::Api(ApiError::Unknown("Bad Gateway".into()));
        assert!(matches!(
            classify(&gateway, 0),
            DeliveryOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(&gateway, MAX_ATTEMPTS),
            DeliveryOutcome::GaveUp { .. }
        ));
        let wait = RequestError::RetryAfter(teloxide::types::Seconds::from_seconds(7));
        assert_eq!(
            classify(&wait, 0),
            DeliveryOutcome::Retry {
                error: wait.to_string(),
                after: Duration::from_secs(7)
            }
        );
    }
}
