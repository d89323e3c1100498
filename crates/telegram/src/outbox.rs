//! The delivery outbox worker: finished jobs are delivered from the database, not from memory.
//!
//! A finished job stays "undelivered" in its row until a worker records that its image (or its
//! failure) reached the user. Workers claim deliveries under the replica's lease
//! (`JOB_LEASE_SECONDS`), renewed every heartbeat while a send is in flight, so after a crash the
//! next start (or another replica, once the lease expires) sends what was not recorded. The image is downloaded (bounded,
//! type-checked) and uploaded, and Telegram's `file_id` kept for re-sends; network errors, 5xx
//! and 429 past the pacer's retries are tried again with backoff; 403 (the user blocked the
//! bot) marks the user and stops; an image Telegram refuses as a photo (its size, a format it
//! cannot process) goes at once as a document; other refusals are recorded with their reason.
//! A result whose file Telegram refuses for good (not its chat) is refunded, and its user told.
//! A group's result whose group became a supergroup (Telegram names the new chat) goes there.
//! Images go out with the re-run buttons under them; their original bytes are kept a day for
//! "as file".

use std::sync::Arc;
use std::time::Duration;

use genbot_engine::FailureReason;
use std::collections::HashSet;

use genbot_store::{Delivery, DeliveryOutcome, JobId, JobImage, JobStatus};
use parking_lot::Mutex;
use teloxide::prelude::*;
use teloxide::types::{InputFile, MessageId, ReplyParameters};
use teloxide::{ApiError, RequestError};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::pacing::{is_blocked, send_result};
use crate::texts;
use crate::Front;

/// Deliveries claimed per look.
const BATCH: u32 = 64;
/// Sends in flight at once (the pacer keeps Telegram's rates; this bounds memory).
const CONCURRENT_SENDS: usize = 32;
/// How often the outbox is looked at without a wake-up (work of other replicas, retries due).
const POLL: Duration = Duration::from_secs(1);
/// Tries before a delivery that keeps failing is given up (recorded with its last error):
/// with the backoff below, about 50 minutes, so a Telegram outage that long loses no result
/// (its bytes are kept until it is delivered).
const MAX_ATTEMPTS: u32 = 20;
/// Telegram's limit for photos; larger images go as documents (up to 50 MB).
const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// A delivered image's original bytes are kept this long, for "as file".
const KEEP_ORIGINALS: Duration = Duration::from_secs(86_400);
/// A result for a group that is busy sending is looked at again this much later.
const GROUP_TURN_WAIT: Duration = Duration::from_secs(2);
/// How often originals past that are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Delivers from the outbox until `stop`; `wake` is notified when a job of this process ends.
pub(crate) async fn run(front: Front, wake: Arc<Notify>, stop: CancellationToken) {
    let owner = front.engine().replica_id().to_owned();
    let store = front.engine().store().clone();
    let replica = front.engine().config().replica.clone();
    let lease = replica.lease;
    let sends = Arc::new(Semaphore::new(CONCURRENT_SENDS));
    let in_flight: Arc<Mutex<HashSet<JobId>>> = Arc::default();
    let busy_groups: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let keeper = tokio::spawn(keep_leases(
        store.clone(),
        owner.clone(),
        in_flight.clone(),
        replica.heartbeat,
        lease,
        stop.clone(),
    ));
    // The first look also takes what a previous run of this replica had claimed.
    let mut including_own = true;
    let mut pruned_at = tokio::time::Instant::now();
    loop {
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = tokio::time::Instant::now();
            match store.prune_job_images(KEEP_ORIGINALS).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(images = n, "forgot originals kept past their day"),
                Err(e) => tracing::warn!(error = %e, "forgetting old originals failed"),
            }
        }
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
                    // Sent, with its outcome still being recorded (its lease passed during a
                    // database outage): sending it again would duplicate it.
                    if in_flight.lock().contains(&delivery.job) {
                        continue;
                    }
                    let permit = tokio::select! {
                        () = stop.cancelled() => break,
                        permit = sends.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else { break };
                    let (front, owner) = (front.clone(), owner.clone());
                    let in_flight = in_flight.clone();
                    let busy_groups = busy_groups.clone();
                    let stop = stop.clone();
                    in_flight.lock().insert(delivery.job);
                    tokio::spawn(async move {
                        let job = delivery.job;
                        deliver(&front, &owner, delivery, &busy_groups, &stop).await;
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

/// A group's one send in flight; others for the same group wait their turn in the database.
struct GroupTurn<'a> {
    busy: &'a Mutex<HashSet<i64>>,
    group: i64,
}

impl<'a> GroupTurn<'a> {
    fn take(busy: &'a Mutex<HashSet<i64>>, group: i64) -> Option<Self> {
        // The lock ends with this statement: a turn built under it would deadlock on drop.
        let free = busy.lock().insert(group);
        free.then(|| GroupTurn { busy, group })
    }
}

impl Drop for GroupTurn<'_> {
    fn drop(&mut self) {
        self.busy.lock().remove(&self.group);
    }
}

/// One delivery attempt, recorded whatever its outcome. A result recorded as undeliverable
/// (refunded) has its notice sent next, under the same claim and group turn.
async fn deliver(
    front: &Front,
    owner: &str,
    mut delivery: Delivery,
    busy_groups: &Mutex<HashSet<i64>>,
    stop: &CancellationToken,
) {
    // A group gets 20 messages a minute: a send slot waiting on one busy group's budget would
    // hold up everyone else's results, so a group has one send in flight and the rest of its
    // results are deferred (not failed) until it is free.
    let _turn = match delivery.reply {
        Some(target) => match GroupTurn::take(busy_groups, target.chat) {
            Some(turn) => Some(turn),
            None => {
                let deferred = DeliveryOutcome::Deferred {
                    after: GROUP_TURN_WAIT,
                };
                if let Err(e) = front
                    .engine()
                    .store()
                    .finish_delivery(delivery.job, owner, deferred)
                    .await
                {
                    tracing::warn!(job_id = delivery.job.0, error = %e, "deferring a group's result failed; it is sent when its lease passes");
                }
                return;
            }
        },
        None => None,
    };
    loop {
        let outcome = attempt(front, &delivery).await;
        let notice = match &outcome {
            DeliveryOutcome::Undeliverable { error } => Some(error.clone()),
            _ => None,
        };
        let recorded = record(front, owner, delivery.job, outcome, stop).await;
        match notice {
            // Now a failed job, refunded: its notice goes at once, not after its lease.
            Some(error) if recorded => delivery = failure_notice(delivery, error),
            _ => return,
        }
    }
}

/// The delivery of the notice that `delivery`'s result could not be delivered and was refunded.
fn failure_notice(delivery: Delivery, error: String) -> Delivery {
    Delivery {
        status: JobStatus::Failed,
        error: Some(error),
        attempts: 0,
        file_id: None,
        has_image: false,
        sent_as_document: false,
        ..delivery
    }
}

/// Sends `delivery` once and says what to record.
async fn attempt(front: &Front, delivery: &Delivery) -> DeliveryOutcome {
    // A group's job answers in the group, as a reply to the asking message.
    let chat = ChatId(delivery.reply.map_or(delivery.user.0, |r| r.chat));
    let reply = delivery
        .reply
        .and_then(|r| i32::try_from(r.message).ok())
        .map(|m| ReplyParameters::new(MessageId(m)).allow_sending_without_reply());
    let sent = match send_to(front, chat, reply, delivery).await {
        // The group became a supergroup (its history moved, under new message ids): the result
        // goes there, as a message of its own. The new chat id is not stored: a later try (or
        // result) asks the old group first and is redirected the same way, one send dearer.
        Err(failure) => match failure.request_error() {
            Some(RequestError::MigrateToChatId(supergroup)) if delivery.reply.is_some() => {
                tracing::info!(
                    job_id = delivery.job.0,
                    group = chat.0,
                    supergroup = supergroup.0,
                    "the group became a supergroup; delivering there"
                );
                send_to(front, *supergroup, None, delivery).await
            }
            _ => Err(failure),
        },
        sent => sent,
    };
    match sent {
        Ok(file_id) => {
            front.metrics().delivered();
            DeliveryOutcome::Delivered { file_id }
        }
        Err(failure) => {
            front.metrics().delivery_failed();
            let outcome = match &failure {
                SendFailure::Final(e) => classify(e, delivery.attempts),
                SendFailure::ByUrl(e) => classify_by_url(e, delivery.attempts),
                SendFailure::NoImage(why) => DeliveryOutcome::GaveUp { error: why.clone() },
            };
            let blocked = failure.request_error().is_some_and(is_blocked);
            if blocked && delivery.reply.is_none() {
                if let Err(e) = front.engine().store().mark_blocked(delivery.user).await {
                    tracing::warn!(error = %e, "recording a blocked user failed");
                }
            }
            let outcome =
                refund_if_never_deliverable(delivery, failure.refuses_the_result(), outcome);
            tracing::info!(job_id = delivery.job.0, error = %failure, ?outcome, "delivery failed");
            outcome
        }
    }
}

/// Sends `delivery`'s result (its image, or why it failed) into `chat`; the uploaded
/// `file_id` of an image.
async fn send_to(
    front: &Front,
    chat: ChatId,
    reply: Option<ReplyParameters>,
    delivery: &Delivery,
) -> Result<Option<String>, SendFailure> {
    match delivery.status {
        JobStatus::Succeeded => send_image(front, chat, delivery, reply).await,
        _ => {
            let lang = front.language_of(delivery.user).await;
            let reason = FailureReason::from_stored(delivery.error.as_deref().unwrap_or(""));
            let mut message = front.bot().send_message(chat, texts::failed(lang, &reason));
            if let Some(reply) = reply {
                message = message.reply_parameters(reply);
            }
            send_result(front, chat, message)
                .await
                .map(|_| None)
                .map_err(SendFailure::Final)
        }
    }
}

/// Records a delivery's outcome until it lands: a photo sent but not recorded would be sent
/// again once its lease passed (a PostgreSQL outage of 3 s did that to one photo in 49).
async fn record(
    front: &Front,
    owner: &str,
    job: JobId,
    outcome: DeliveryOutcome,
    stop: &CancellationToken,
) -> bool {
    let store = front.engine().store();
    let recorded = genbot_engine::until_written(stop, "a delivery", || {
        store.finish_delivery(job, owner, outcome.clone())
    })
    .await;
    if matches!(recorded, Ok(false)) {
        // An earlier try that committed without its answer arriving, or another replica
        // that took the delivery over after its lease passed.
        tracing::info!(
            job_id = job.0,
            "delivery already recorded (an earlier try, or another replica after its lease passed)"
        );
    }
    matches!(recorded, Ok(true))
}

/// Sends the image: by its kept `file_id`, else its stored bytes, else downloaded now from its
/// URL, else by URL for Telegram to fetch; as a document when too big for a photo. Returns the
/// uploaded `file_id`.
async fn send_image(
    front: &Front,
    chat: ChatId,
    delivery: &Delivery,
    reply: Option<ReplyParameters>,
) -> Result<Option<String>, SendFailure> {
    let caption = crate::shared::reply::caption(&delivery.prompt);
    let bot = front.bot();
    let lang = front.language_of(delivery.user).await;
    let keyboard = crate::shared::buttons::result_keyboard(lang, delivery.job);
    let photo = |input: InputFile| {
        let photo = bot
            .send_photo(chat, input)
            .caption(caption.clone())
            .reply_markup(keyboard.clone());
        match reply.clone() {
            Some(reply) => photo.reply_parameters(reply),
            None => photo,
        }
    };
    if let Some(file_id) = &delivery.file_id {
        let input = InputFile::file_id(file_id.clone().into());
        return send_result(front, chat, photo(input))
            .await
            .map(|_| Some(file_id.clone()))
            .map_err(SendFailure::Final);
    }
    // Sent as a document already (its id is kept only once Telegram took it): the process
    // stopped before the delivery was recorded. Recorded now, not sent twice.
    if delivery.sent_as_document {
        tracing::info!(
            job_id = delivery.job.0,
            "the result went out as a document before a restart; recorded as delivered"
        );
        return Ok(None);
    }
    let Some(url) = delivery.result_url.as_deref() else {
        return Err(SendFailure::NoImage("the job has no result URL".into()));
    };
    let image = match stored_image(front, delivery).await {
        Some(image) => Ok(image),
        None => front
            .engine()
            .download_output(url)
            .await
            .map(JobImage::from),
    };
    let as_document = |input: InputFile| {
        let document = bot
            .send_document(chat, input)
            .caption(caption.clone())
            .reply_markup(keyboard.clone());
        let document = match reply.clone() {
            Some(reply) => document.reply_parameters(reply),
            None => document,
        };
        send_document(front, delivery.job, chat, document)
    };
    let by_url = image.is_err();
    let (input, fits_a_photo) = match image {
        Ok(image) => {
            let fits = image.bytes.len() <= MAX_PHOTO_BYTES;
            (
                InputFile::memory(image.bytes).file_name(image.file_name),
                fits,
            )
        }
        Err(reason) => {
            tracing::warn!(job_id = delivery.job.0, %reason, "no stored image and the download failed; Telegram fetches the URL instead");
            let Ok(parsed) = url.parse() else {
                return Err(SendFailure::NoImage(format!(
                    "the result URL cannot be parsed, and its download failed: {reason}"
                )));
            };
            (InputFile::url(parsed), true)
        }
    };
    if !fits_a_photo {
        return as_document(input).await.map_err(SendFailure::Final);
    }
    // A clone of the input shares its bytes.
    match send_result(front, chat, photo(input.clone())).await {
        Ok(message) => Ok(photo_file_id(&message)),
        // Telegram sends documents by URL only for PDF, ZIP and GIF: a URL refused as a photo
        // is tried again, and the next try downloads the image and uploads it.
        Err(refusal) if refused_as_photo(&refusal) && !by_url => {
            tracing::info!(job_id = delivery.job.0, error = %refusal, "Telegram refused the image as a photo; sending it as a document");
            as_document(input).await.map_err(SendFailure::Final)
        }
        Err(other) if by_url => Err(SendFailure::ByUrl(other)),
        Err(other) => Err(SendFailure::Final(other)),
    }
}

/// Why a result's send failed.
#[derive(Debug)]
enum SendFailure {
    /// As Telegram answered: classified by [`classify`].
    Final(RequestError),
    /// Telegram was given the image's URL to fetch, and refused it: worth another try while
    /// tries are left, since the next one downloads the image again (a CDN that failed us may
    /// serve it then) and uploads the bytes.
    ByUrl(RequestError),
    /// Nothing to send: the job has no usable result URL. Never tried with Telegram.
    NoImage(String),
}

impl SendFailure {
    fn request_error(&self) -> Option<&RequestError> {
        match self {
            SendFailure::Final(e) | SendFailure::ByUrl(e) => Some(e),
            SendFailure::NoImage(_) => None,
        }
    }

    /// Whether this says the result itself cannot be sent, for good: Telegram refused the
    /// file (its size, format or URL), or there is nothing to send. Not a refusal of the chat
    /// (not found, blocked, the bot removed, or a group whose members may not send photos or
    /// files: refunding that would let a group's admin give its members images for free).
    /// Not an outage, a throttle, a bad token, or an answer that may hide a sent message (a
    /// timeout, a 5xx, a body teloxide could not read): refunding those could refund an image
    /// the user got.
    fn refuses_the_result(&self) -> bool {
        match self.request_error() {
            None => true,
            Some(RequestError::Api(error)) => refuses_the_file(error),
            Some(_) => false,
        }
    }
}

/// Whether Telegram's refusal is of the file sent, not of the chat or the request's sender.
fn refuses_the_file(error: &ApiError) -> bool {
    /// Words of Telegram's descriptions of a refused file (`Bad Request: …`).
    const FILE_WORDS: [&str; 8] = [
        "PHOTO", "IMAGE", "FILE", "MEDIA", "WEBPAGE", "web page", "file", "HTTP URL",
    ];
    match error {
        ApiError::ImageProcessFailed
        | ApiError::PhotoAsInputFileRequired
        | ApiError::WrongFileId
        | ApiError::WrongFileIdOrUrl
        | ApiError::FailedToGetUrlContent
        | ApiError::WrongHttpUrl
        | ApiError::RequestEntityTooLarge => true,
        ApiError::Unknown(description) => {
            // A chat's permissions ("not enough rights to send photos",
            // "CHAT_SEND_PHOTOS_FORBIDDEN") are the chat's, whatever words they share.
            let permission = description.contains("rights") || description.contains("FORBIDDEN");
            crate::pacing::refusal_status(description) == Some("400")
                && !permission
                && FILE_WORDS.iter().any(|word| description.contains(word))
        }
        _ => false,
    }
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Final(e) | SendFailure::ByUrl(e) => e.fmt(f),
            SendFailure::NoImage(why) => f.write_str(why),
        }
    }
}

/// A succeeded job given up because its result was refused for good (`refund`: its file
/// refused by Telegram every way it was sent, or nothing to send) is recorded as
/// undeliverable: refunded, and its user told, as for a failed job. One whose chat was refused,
/// or given up after failures that may hide a sent message, is only given up.
fn refund_if_never_deliverable(
    delivery: &Delivery,
    refund: bool,
    outcome: DeliveryOutcome,
) -> DeliveryOutcome {
    match outcome {
        DeliveryOutcome::GaveUp { error } if delivery.status == JobStatus::Succeeded && refund => {
            DeliveryOutcome::Undeliverable {
                error: FailureReason::Undeliverable(error).to_string(),
            }
        }
        other => other,
    }
}

/// Sends a result as a document. Its `file_id` is kept as the job's document (for "as file"),
/// not as its photo: `/history` re-sends photos by `file_id`, and Telegram refuses a
/// document's id as a photo.
async fn send_document(
    front: &Front,
    job: JobId,
    chat: ChatId,
    document: teloxide::requests::MultipartRequest<teloxide::payloads::SendDocument>,
) -> Result<Option<String>, RequestError> {
    let message = send_result(front, chat, document).await?;
    if let Some(sent) = message.document() {
        // The image reached the user; failing to keep the id only costs the next upload.
        if let Err(error) = front
            .engine()
            .store()
            .keep_job_document(job, &sent.file.id.to_string())
            .await
        {
            tracing::warn!(job_id = job.0, %error, "could not keep the document's file_id");
        }
    }
    Ok(None)
}

/// Whether Telegram refused an uploaded photo for what it is (its dimensions, a format it
/// cannot process), where the same bytes as a document, which Telegram takes as they are,
/// would reach the user. A refusal of the chat (blocked, not found) is not one: it would
/// refuse the document too.
fn refused_as_photo(error: &RequestError) -> bool {
    match error {
        RequestError::Api(ApiError::ImageProcessFailed | ApiError::PhotoAsInputFileRequired) => {
            true
        }
        // Its size or format, or a group that takes files but not photos.
        RequestError::Api(ApiError::Unknown(description)) => {
            crate::pacing::is_refusal_description(description)
                && ["PHOTO", "IMAGE", "rights to send photos"]
                    .iter()
                    .any(|word| description.contains(word))
        }
        _ => false,
    }
}

/// Telegram's id of the largest size of the photo `message` carries.
fn photo_file_id(message: &Message) -> Option<String> {
    message
        .photo()
        .and_then(|sizes| sizes.last())
        .map(|size| size.file.id.to_string())
}

/// The image stored when the job succeeded, if it was.
async fn stored_image(front: &Front, delivery: &Delivery) -> Option<JobImage> {
    if !delivery.has_image {
        return None;
    }
    match front.engine().store().job_image(delivery.job).await {
        Ok(image) => image,
        Err(e) => {
            tracing::warn!(job_id = delivery.job.0, error = %e, "reading the stored image failed; downloading it");
            None
        }
    }
}

/// As [`classify`], for Telegram's refusal of the image's URL: tried again while tries are
/// left (the next try downloads the image itself), unless the user blocked the bot.
fn classify_by_url(error: &RequestError, attempts: u32) -> DeliveryOutcome {
    match classify(error, attempts) {
        DeliveryOutcome::GaveUp { error: text }
            if !is_blocked(error) && attempts + 1 < MAX_ATTEMPTS =>
        {
            DeliveryOutcome::Retry {
                error: text,
                after: backoff(attempts),
            }
        }
        outcome => outcome,
    }
}

/// The pause before a delivery's next try: 1 s, doubling, at most 256 s.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(8)).min(Duration::from_secs(300))
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
        // An unknown description is a server error's (5xx) unless it says it is a refusal
        // ("Bad Request: …"): sending the same again cannot pass, so it is not tried for minutes.
        RequestError::Api(ApiError::Unknown(description)) => {
            !crate::pacing::is_refusal_description(description)
                || description.starts_with("Unauthorized")
        }
        // A bad token is the deployment's to fix (a rotation under way), not the result's.
        RequestError::Api(ApiError::InvalidToken) => true,
        _ => false,
    };
    if retryable && attempts + 1 < MAX_ATTEMPTS {
        DeliveryOutcome::Retry {
            error: text,
            after: backoff(attempts),
        }
    } else {
        DeliveryOutcome::GaveUp { error: text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_has_one_turn_at_a_time() {
        let busy = Mutex::new(HashSet::new());
        let first = GroupTurn::take(&busy, -1).expect("a free group");
        assert!(GroupTurn::take(&busy, -1).is_none(), "two turns at once");
        assert!(GroupTurn::take(&busy, -2).is_some(), "groups are apart");
        drop(first);
        assert!(GroupTurn::take(&busy, -1).is_some(), "the turn came back");
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
        // A refusal teloxide has no name for is still a refusal: given up at once.
        let unknown = RequestError::Api(ApiError::Unknown(
            "Bad Request: PHOTO_INVALID_DIMENSIONS".into(),
        ));
        assert!(matches!(
            classify(&unknown, 0),
            DeliveryOutcome::GaveUp { .. }
        ));
        assert!(refused_as_photo(&unknown));
        let proxy = RequestError::Api(ApiError::Unknown(
            "Bad Gateway (HTTP 502, not a Bot API answer)".into(),
        ));
        assert!(matches!(classify(&proxy, 0), DeliveryOutcome::Retry { .. }));
        assert!(!refused_as_photo(&proxy));
        assert!(!refused_as_photo(&RequestError::Api(
            ApiError::ChatNotFound
        )));
        // Telegram's wording today for a user who never started the bot: blocked, given up.
        let never_started = RequestError::Api(ApiError::Unknown(
            "Forbidden: bot can't initiate conversation with a user".into(),
        ));
        assert!(is_blocked(&never_started));
        // Given the URL, a refusal is tried again (the next try downloads the image)…
        let fetch = RequestError::Api(ApiError::Unknown(
            "Bad Request: wrong type of the web page content".into(),
        ));
        assert!(matches!(
            classify_by_url(&fetch, 0),
            DeliveryOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_by_url(&fetch, MAX_ATTEMPTS),
            DeliveryOutcome::GaveUp { .. }
        ));
        // …but not for a user who blocked the bot.
        assert!(matches!(
            classify_by_url(&never_started, 0),
            DeliveryOutcome::GaveUp { .. }
        ));
        // A bad token is retried (a rotation under way), and never refunds a result.
        let token = RequestError::Api(ApiError::Unknown("Unauthorized".into()));
        assert!(matches!(classify(&token, 0), DeliveryOutcome::Retry { .. }));
        assert!(!SendFailure::Final(token).refuses_the_result());
        assert!(
            !SendFailure::Final(RequestError::Api(ApiError::InvalidToken)).refuses_the_result()
        );
        // Only a refusal of the result refunds it; a failure that may hide a sent message does
        // not.
        assert!(SendFailure::Final(unknown).refuses_the_result());
        assert!(SendFailure::ByUrl(fetch).refuses_the_result());
        assert!(SendFailure::NoImage("no URL".into()).refuses_the_result());
        assert!(!SendFailure::Final(gateway).refuses_the_result());
        assert!(!SendFailure::Final(proxy).refuses_the_result());
        // A refusal of the chat is not the result's.
        for chat in [
            RequestError::Api(ApiError::ChatNotFound),
            RequestError::Api(ApiError::BotKicked),
            RequestError::Api(ApiError::Unknown(
                "Bad Request: have no rights to send a message".into(),
            )),
            RequestError::Api(ApiError::Unknown("Forbidden: bot is not a member".into())),
        ] {
            assert!(!SendFailure::Final(chat).refuses_the_result());
        }
        // A group that takes no files is the chat's choice: refunding it would let a group's
        // admin give its members images for free.
        for permission in [
            "Bad Request: not enough rights to send documents to the chat",
            "Bad Request: not enough rights to send photos to the chat",
            "Bad Request: CHAT_SEND_PHOTOS_FORBIDDEN",
        ] {
            let refusal = RequestError::Api(ApiError::Unknown(permission.into()));
            assert!(
                !SendFailure::Final(refusal).refuses_the_result(),
                "{permission}"
            );
        }
        assert!(
            SendFailure::Final(RequestError::Api(ApiError::RequestEntityTooLarge))
                .refuses_the_result()
        );
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
