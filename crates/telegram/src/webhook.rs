//! Telegram's webhook, served by genbot itself so that any number of replicas can share it.
//!
//! - Every replica derives the same secret token from the bot token ([`derived_secret`]; an
//!   explicit `WEBHOOK_SECRET` wins), so whichever replica set the webhook last, the others'
//!   requests still pass: Telegram keeps one secret per bot.
//! - An update is recorded in the inbox before Telegram is answered 200: a crash before that
//!   means Telegram sends it again; a database that does not answer gets 503, and Telegram keeps
//!   the update and retries. Pre-checkout queries alone go ahead unrecorded (see
//!   `crate::inbox`).
//! - A stopping replica leaves the webhook alone (Telegram keeps one webhook per bot: deleting
//!   it would silence every other replica). Setting and deleting it are the operator's
//!   (`genbot webhook set | delete | info`); `serve` sets it at start, the same for all.
//! - The replica a delivery reached records it and takes it when it may (its chat is free or
//!   its own); an update of a chat another replica holds waits for that replica's next round.
//!   While running, a replica takes over the chats of a dead replica, as polling replicas do.
//!
//! This module owns the intake; what happens to an update after the inbox is the dispatcher's.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::stream::{self, BoxStream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use teloxide::stop::{mk_stop_token, StopFlag, StopToken};
use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use teloxide::update_listeners::{AsUpdateStream, UpdateListener};
use tokio::sync::mpsc;

mod refusals;

use crate::keyed::{keyed_hex, same_in_constant_time};
use crate::Front;

/// The header Telegram sends the secret token in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Longest a webhook body may take to arrive once its headers have (Telegram sends an update
/// at once; the header timeout is `http_serve`'s).
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest webhook body read: an update is a few kilobytes (axum's own default limit).
const MAX_UPDATE_BYTES: usize = 2 * 1024 * 1024;

/// Updates received and recorded, waiting for the dispatcher (beyond this, Telegram waits).
const QUEUE: usize = 1024;

/// The update kinds genbot handles (those `router::schema` branches on), asked of Telegram
/// with the webhook and with `getUpdates`.
pub const ALLOWED_UPDATES: [AllowedUpdate; 4] = [
    AllowedUpdate::Message,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::PreCheckoutQuery,
    AllowedUpdate::MyChatMember,
];

/// The webhook secret every replica of the bot `token` agrees on: HMAC-SHA256 of a fixed label
/// keyed with the token, in hex (64 of the characters Telegram allows). It reveals nothing of
/// the token, and changes when the token does.
pub fn derived_secret(token: &SecretString) -> String {
    keyed_hex(
        token.expose_secret().as_bytes(),
        b"genbot telegram webhook secret v1",
        b"",
    )
}

/// What the webhook route needs.
#[derive(Clone)]
pub(crate) struct Intake {
    front: Front,
    secret: String,
    updates: mpsc::Sender<Update>,
    last_record: crate::claims::LastRecord,
    refusals: std::sync::Arc<refusals::RefusalLog>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

/// The route, and what feeds the dispatcher from it (with when the route last recorded, for
/// the replica's rounds).
pub(crate) fn intake(
    front: Front,
    secret: String,
) -> (Intake, mpsc::Receiver<Update>, crate::claims::LastRecord) {
    let (updates, received) = mpsc::channel(QUEUE);
    let last_record = crate::claims::LastRecord::default();
    (
        Intake {
            front,
            secret,
            updates,
            last_record: last_record.clone(),
            refusals: std::sync::Arc::default(),
        },
        received,
        last_record,
    )
}

/// `POST` from Telegram: 401 without the secret, 503 when the update cannot be recorded (Telegram
/// retries), 200 once it is recorded (or was before, or does not parse: Telegram would only send
/// it again).
///
/// The body is read only once the secret is right, within [`BODY_READ_TIMEOUT`] and up to
/// [`MAX_UPDATE_BYTES`]: anyone can post here, and a body trickled in a byte at a time held a
/// connection (and a graceful stop) for as long as the sender liked.
pub(crate) async fn receive(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_in_constant_time(given, intake.secret.as_bytes()) {
        intake.front.metrics().ignored("webhook_without_secret");
        intake.refusals.log(std::time::Instant::now());
        return StatusCode::UNAUTHORIZED;
    }
    let body: Bytes = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_UPDATE_BYTES),
    )
    .await
    {
        Ok(Ok(body)) => body,
        // Too large, or the connection broke: Telegram sends neither.
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a webhook body could not be read; refused");
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        Err(_) => {
            tracing::warn!(timeout = ?BODY_READ_TIMEOUT, "a webhook body did not arrive in time; refused");
            return StatusCode::REQUEST_TIMEOUT;
        }
    };
    // Decoded as polling decodes (an update teloxide cannot decode, or panics on, is set
    // aside); a body that is no update at all is acknowledged and dropped.
    let Some(update) = std::str::from_utf8(&body)
        .ok()
        .and_then(crate::inbox::decode)
    else {
        tracing::warn!("a webhook body that is no update; acknowledged and dropped");
        return StatusCode::OK;
    };
    if matches!(update.kind, UpdateKind::PreCheckoutQuery(_)) {
        // Answered within Telegram's 10 s or the payment is canceled, so never held up by the
        // database; one lost to a crash moved no money (and would be expired when replayed).
        return forward(&intake, update).await;
    }
    // Live intake: over its sender's flood limit, it is dropped before it is recorded.
    if !intake.front.within_flood_limit(&update) {
        return StatusCode::OK;
    }
    let id = i64::from(update.id.0);
    let Some(row) = crate::inbox::row_as_received(&update, &body) else {
        return forward(&intake, update).await;
    };
    let hold = intake.front.config().intake_delay;
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let front = &intake.front;
    let owner = front.engine().replica_id();
    let lease = front.config().inbox_takeover_after;
    match front
        .engine()
        .store()
        .record_updates(owner, vec![row], lease)
        .await
    {
        // A repeat: recorded (and taken or handled) already.
        Ok(recorded) if recorded.new.is_empty() => {
            front.intake_recorded();
            StatusCode::OK
        }
        Ok(recorded) => {
            intake.last_record.now();
            front.intake_recorded();
            let mut known = std::collections::HashMap::from([(id, update)]);
            for taken in crate::claims::feed_known(front, recorded.taken, &mut known) {
                forward(&intake, taken).await;
            }
            StatusCode::OK
        }
        Err(e) => {
            if e.is_transient() {
                front.intake_refused();
            }
            tracing::warn!(update_id = id, error = %e, "recording a webhook update failed; Telegram will send it again");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Hands a recorded update to the dispatcher; if it is stopping, the inbox keeps the update for
/// the next start or another replica.
async fn forward(intake: &Intake, update: Update) -> StatusCode {
    if intake.updates.send(update).await.is_err() {
        tracing::debug!("the dispatcher stopped; the update waits in the inbox");
    }
    StatusCode::OK
}

/// The dispatcher's updates in webhook mode: what this replica's previous run (or a gone one)
/// left unhandled, then what the route records and takes, with the updates its rounds take.
pub(crate) struct WebhookListener {
    front: Front,
    last_record: crate::claims::LastRecord,
    received: Option<mpsc::Receiver<Update>>,
    replay: Vec<Update>,
    token: StopToken,
    flag: Option<StopFlag>,
}

impl std::fmt::Debug for WebhookListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookListener")
            .field("replay", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl WebhookListener {
    pub(crate) async fn new(
        front: Front,
        received: mpsc::Receiver<Update>,
        last_record: crate::claims::LastRecord,
    ) -> Self {
        let replay = crate::claims::at_start(&front).await;
        let (token, flag) = mk_stop_token();
        WebhookListener {
            front,
            last_record,
            received: Some(received),
            replay,
            token,
            flag: Some(flag),
        }
    }
}

impl UpdateListener for WebhookListener {
    type Err = std::convert::Infallible;

    fn stop_token(&mut self) -> StopToken {
        self.token.clone()
    }

    fn hint_allowed_updates(&mut self, _hint: &mut dyn Iterator<Item = AllowedUpdate>) {
        // Asked of Telegram with setWebhook (ALLOWED_UPDATES).
    }
}

impl<'a> AsUpdateStream<'a> for WebhookListener {
    type StreamErr = std::convert::Infallible;
    type Stream = BoxStream<'a, Result<Update, std::convert::Infallible>>;

    fn as_stream(&'a mut self) -> Self::Stream {
        let replay = std::mem::take(&mut self.replay);
        let flag = self.flag.take().unwrap_or_else(|| {
            let (token, flag) = mk_stop_token();
            self.token = token;
            flag
        });
        let received = match self.received.take() {
            Some(received) => stream::unfold(received, |mut received| async move {
                received.recv().await.map(|u| (u, received))
            })
            .boxed(),
            None => stream::empty().boxed(),
        };
        let taken = crate::claims::rounds(self.front.clone(), self.last_record.clone());
        let live = crate::claims::alongside(received.take_until(flag), taken).map(Ok);
        let updates = stream::iter(replay.into_iter().map(Ok)).chain(live);
        crate::inbox::to_dispatcher(self.front.clone(), updates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_of_one_bot_agree_on_a_secret_telegram_accepts() {
        let token = SecretString::from("123456:ABC-secret");
        let secret = derived_secret(&token);
        assert_eq!(
            secret,
            derived_secret(&SecretString::from("123456:ABC-secret"))
        );
        assert_ne!(
            secret,
            derived_secret(&SecretString::from("123456:ABC-other"))
        );
        assert_eq!(secret.len(), 64);
        assert!(secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert!(!secret.contains("ABC"));
    }
}
