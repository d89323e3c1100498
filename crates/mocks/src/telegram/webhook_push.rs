//! Webhook deliveries as Telegram makes them: up to [`WEBHOOK_CONNECTIONS`] at once, one chat's
//! updates one at a time and in order, and a delivery that is answered with anything but 2xx,
//! or not answered within [`ANSWER_WITHIN`], is kept and tried again with backoff (Telegram
//! keeps an update for a day) until it is taken or the webhook is replaced or deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::state::{BotState, RawUpdate, Webhook};

type Shared = Arc<BotState>;

/// Webhook deliveries in flight at once, as Telegram's default `max_connections`.
const WEBHOOK_CONNECTIONS: usize = 40;
/// A delivery not answered this soon failed.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// First pause after a failed delivery; doubled after each until [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Delivers `updates` to `webhook` until the channel closes (the webhook was replaced or
/// deleted); then what is still undelivered is dropped with it.
pub(super) async fn push_updates(
    state: Shared,
    webhook: Webhook,
    mut updates: mpsc::UnboundedReceiver<RawUpdate>,
) {
    let client = reqwest::Client::builder()
        .timeout(ANSWER_WITHIN)
        .build()
        .unwrap_or_default();
    let slots = Arc::new(Semaphore::new(WEBHOOK_CONNECTIONS));
    let replaced = CancellationToken::new();
    let _stop_lanes = replaced.clone().drop_guard();
    let mut lanes: HashMap<i64, mpsc::UnboundedSender<RawUpdate>> = HashMap::new();
    while let Some(update) = updates.recv().await {
        let chat = chat_of(&update);
        let lane = lanes.entry(chat).or_insert_with(|| {
            let (sender, queue) = mpsc::unbounded_channel();
            let delivery = Delivery {
                client: client.clone(),
                webhook: webhook.clone(),
                state: state.clone(),
                slots: slots.clone(),
            };
            tokio::spawn(delivery.lane(queue, replaced.clone()));
            sender
        });
        let _ = lane.send(update);
    }
}

/// The chat an update belongs to (its sender's id when it has no chat; 0 when neither).
fn chat_of(update: &str) -> i64 {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(update) else {
        return 0;
    };
    let Some(body) = value
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| *k != "update_id"))
        .map(|(_, v)| v)
    else {
        return 0;
    };
    let id = |pointer: &str| body.pointer(pointer).and_then(serde_json::Value::as_i64);
    id("/chat/id")
        .or_else(|| id("/message/chat/id"))
        .or_else(|| id("/from/id"))
        .unwrap_or(0)
}

struct Delivery {
    client: reqwest::Client,
    webhook: Webhook,
    state: Shared,
    slots: Arc<Semaphore>,
}

impl Delivery {
    /// One chat's updates, each delivered (retried as long as it takes) before the next.
    async fn lane(
        self,
        mut queue: mpsc::UnboundedReceiver<RawUpdate>,
        replaced: CancellationToken,
    ) {
        loop {
            let update = tokio::select! {
                () = replaced.cancelled() => return,
                update = queue.recv() => match update {
                    Some(update) => update,
                    None => return,
                },
            };
            let mut pause = RETRY_FIRST;
            while !self.try_once(&update).await {
                self.state.count_webhook_retry();
                tokio::select! {
                    () = replaced.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
            self.state.count_delivered(1);
        }
    }

    /// One delivery: true when the bot answered 2xx.
    async fn try_once(&self, update: &RawUpdate) -> bool {
        let Ok(_slot) = self.slots.acquire().await else {
            return false;
        };
        let mut request = self
            .client
            .post(&self.webhook.url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(update.to_string());
        if let Some(secret) = &self.webhook.secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        match request.send().await {
            Ok(response) => {
                self.state.count_webhook_answer(response.status().as_u16());
                response.status().is_success()
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chat_of;

    #[test]
    fn updates_are_laned_by_chat_then_sender() {
        let message =
            r#"{"update_id":5,"message":{"message_id":1,"chat":{"id":-100},"from":{"id":7}}}"#;
        assert_eq!(chat_of(message), -100);
        let press = r#"{"update_id":6,"callback_query":{"id":"q","from":{"id":7},"message":{"chat":{"id":42}}}}"#;
        assert_eq!(chat_of(press), 42);
        let inline = r#"{"update_id":7,"inline_query":{"id":"i","from":{"id":9}}}"#;
        assert_eq!(chat_of(inline), 9);
        assert_eq!(chat_of("not json"), 0);
    }
}
