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
//! - While running, a replica takes over the updates a dead replica recorded and did not handle,
//!   as polling replicas do.
//!
//! This module owns the intake; what happens to an update after the inbox is the dispatcher's.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::stream::{self, BoxStream, StreamExt};
use genbot_store::InboxUpdate;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use teloxide::stop::{mk_stop_token, StopFlag, StopToken};
use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use teloxide::update_listeners::{AsUpdateStream, UpdateListener};
use tokio::sync::mpsc;

use crate::Front;

/// The header Telegram sends the secret token in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Updates received and recorded, waiting for the dispatcher (beyond this, Telegram waits).
const QUEUE: usize = 1024;

/// The update kinds genbot handles, asked of Telegram with the webhook.
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
    // Any key length is valid for HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"genbot telegram webhook secret v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal, in time that does not depend on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// What the webhook route needs.
#[derive(Clone)]
pub(crate) struct Intake {
    front: Front,
    secret: String,
    updates: mpsc::Sender<Update>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

/// The route and the listener that feeds the dispatcher from it.
pub(crate) fn intake(front: Front, secret: String) -> (Intake, mpsc::Receiver<Update>) {
    let (updates, received) = mpsc::channel(QUEUE);
    (
        Intake {
            front,
            secret,
            updates,
        },
        received,
    )
}

/// `POST` from Telegram: 401 without the secret, 503 when the update cannot be recorded (Telegram
/// retries), 200 once it is recorded (or was before, or does not parse: Telegram would only send
/// it again).
pub(crate) async fn receive(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_secret(given, intake.secret.as_bytes()) {
        tracing::warn!("telegram webhook request without the right secret token; refused");
        return StatusCode::UNAUTHORIZED;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => {
            tracing::warn!(error = %e, "a webhook body that is no update; acknowledged and dropped");
            return StatusCode::OK;
        }
    };
    if matches!(update.kind, UpdateKind::PreCheckoutQuery(_)) {
        // Answered within Telegram's 10 s or the payment is canceled, so never held up by the
        // database; one lost to a crash moved no money (and would be expired when replayed).
        return forward(&intake, update).await;
    }
    let id = i64::from(update.id.0);
    let payload = match serde_json::to_string(&update) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::warn!(update_id = id, error = %e, "update not recordable; handled unrecorded");
            return forward(&intake, update).await;
        }
    };
    let hold = intake.front.config().intake_delay;
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let owner = intake.front.engine().replica_id();
    let row = InboxUpdate {
        id,
        payload,
        attempts: 0,
    };
    match intake
        .front
        .engine()
        .store()
        .record_updates(owner, vec![row])
        .await
    {
        Ok(new) if new.is_empty() => StatusCode::OK, // a repeat: recorded (and handled) already
        Ok(_) => forward(&intake, update).await,
        Err(e) => {
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

/// The dispatcher's updates in webhook mode: what this replica (or a gone one) left unhandled,
/// then what the route records, with other replicas' orphaned updates swept up as it runs.
pub(crate) struct WebhookListener {
    front: Front,
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
    pub(crate) async fn new(front: Front, received: mpsc::Receiver<Update>) -> Self {
        let replay = crate::inbox::unhandled(&front).await;
        let (token, flag) = mk_stop_token();
        WebhookListener {
            front,
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
        let front = self.front.clone();
        let every = crate::inbox::sweep_every(&front);
        let sweeps = stream::unfold(front, move |front| async move {
            tokio::time::sleep(every).await;
            let orphaned = crate::inbox::claim_stale(&front).await;
            Some((stream::iter(orphaned), front))
        })
        .flatten();
        let live = stream::select(received, sweeps).take_until(flag).map(Ok);
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

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
