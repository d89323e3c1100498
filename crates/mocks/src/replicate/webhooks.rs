//! Webhooks the way Replicate sends them: when a prediction created with `webhook` ends, its
//! JSON is POSTed there, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`), and retried with backoff
//! while the receiver does not answer 2xx.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::Serialize;
use sha2::Sha256;

use super::state::MockState;

/// Deliveries tried per webhook before it is given up (Replicate retries for a while too).
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Sent webhooks remembered for tests (oldest dropped first).
const LOG_MAX: usize = 10_000;

/// One webhook request the mock sent, as it went on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentWebhook {
    pub url: String,
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: String,
    /// The receiver's answer (`None`: no answer, a network error).
    pub status: Option<u16>,
}

/// The account's signing secret and what was sent with it.
#[derive(Debug)]
pub(super) struct Webhooks {
    key: Vec<u8>,
    http: reqwest::Client,
    log: Mutex<Vec<SentWebhook>>,
}

impl Webhooks {
    pub(super) fn new() -> Webhooks {
        let key: [u8; 24] = rand::random();
        Webhooks {
            key: key.to_vec(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            log: Mutex::new(Vec::new()),
        }
    }

    /// `whsec_<base64 key>`, as `GET /v1/webhooks/default/secret` answers.
    pub(super) fn secret(&self) -> String {
        format!("whsec_{}", BASE64.encode(&self.key))
    }

    pub(super) fn sent(&self) -> Vec<SentWebhook> {
        self.log.lock().clone()
    }

    fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    fn record(&self, sent: SentWebhook) {
        let mut log = self.log.lock();
        if log.len() == LOG_MAX {
            log.remove(0);
        }
        log.push(sent);
    }
}

/// Waits until prediction `id` ends, then delivers its final state to `url` (unless the mock
/// is set to drop webhooks), retrying non-2xx answers and network errors.
pub(super) async fn deliver_when_done(state: Arc<MockState>, id: String, url: String) {
    while let Some(remaining) = state.remaining(&id).filter(|r| !r.is_zero()) {
        tokio::time::sleep(remaining).await;
    }
    if state.drops_webhooks() {
        state.count_webhook(WebhookCount::Dropped);
        return;
    }
    let Some(body) = state.peek(&id).map(|p| p.to_string()) else {
        return;
    };
    let hooks = state.webhooks();
    let webhook_id = format!("msg_{id}");
    let mut pause = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = hooks.sign(&webhook_id, timestamp, &body);
        let answer = hooks
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        let status = answer.as_ref().ok().map(|r| r.status().as_u16());
        hooks.record(SentWebhook {
            url: url.clone(),
            id: webhook_id.clone(),
            timestamp,
            signature,
            body: body.clone(),
            status,
        });
        if status.is_some_and(|s| (200..300).contains(&s)) {
            state.count_webhook(WebhookCount::Delivered);
            return;
        }
        state.count_webhook(WebhookCount::Failed);
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
}

/// What happened to one webhook attempt.
#[derive(Debug, Clone, Copy)]
pub(super) enum WebhookCount {
    Delivered,
    Failed,
    Dropped,
}
