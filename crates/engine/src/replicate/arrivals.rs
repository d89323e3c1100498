//! Where verified webhooks meet the generations waiting for them.
//!
//! A generation waiting for its prediction registers the prediction id; a webhook for it wakes
//! that wait at once. A webhook that comes before the wait is registered (it can overtake the
//! create's answer) is kept for a while and picked up at registration. Webhook ids already seen
//! are remembered past the timestamp tolerance, so a replay inside the window has no effect and
//! one after it fails the timestamp check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use url::Url;

use super::webhook::{WebhookError, WebhookHeaders, WebhookSecret, TOLERANCE_SECS};
use super::Prediction;

/// How Replicate tells this bot that a prediction ended. `Debug` redacts credentials in the URL.
#[derive(Clone)]
pub struct WebhookSettings {
    /// `REPLICATE_WEBHOOK_URL`: sent with every create; its path is served by the bot.
    pub url: Url,
    /// The signing secret (`REPLICATE_WEBHOOK_SECRET`, or Replicate's default one).
    pub secret: WebhookSecret,
    /// `REPLICATE_RECONCILE_SECONDS`: running predictions are still polled this often, for
    /// webhooks that never came.
    pub reconcile: Duration,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field(
                "url",
                &genbot_config::RedactedUrl::new(self.url.clone()).to_string(),
            )
            .field("secret", &self.secret)
            .field("reconcile", &self.reconcile)
            .finish()
    }
}

/// What became of a verified webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookReceipt {
    /// A generation of this process was waiting for it and has it now.
    Delivered,
    /// Nobody here waits for it (yet, or another replica runs the job): kept for a late
    /// registration, and recorded in the database for the replica running the job.
    Kept,
    /// Not a final status (the bot asks only for `completed`); nothing to do.
    NotFinal,
    /// This `webhook-id` was handled already: no effect.
    Replayed,
}

/// Counts of webhooks received, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    pub delivered: u64,
    pub kept: u64,
    /// Outcomes another replica received and recorded, handed to a wait here.
    pub relayed: u64,
    pub replayed: u64,
    /// Refused: bad or missing signature, timestamp outside the tolerance, unreadable body.
    pub rejected: u64,
}

/// How long an unclaimed prediction and a seen webhook id are remembered.
const REMEMBER: Duration = Duration::from_secs(2 * TOLERANCE_SECS as u64);
const REMEMBER_MAX: u64 = 100_000;

#[derive(Debug)]
pub(crate) struct Arrivals {
    pub(crate) settings: WebhookSettings,
    waiting: Mutex<HashMap<String, oneshot::Sender<Prediction>>>,
    unclaimed: moka::sync::Cache<String, Prediction>,
    seen: moka::sync::Cache<String, ()>,
    delivered: AtomicU64,
    kept: AtomicU64,
    relayed: AtomicU64,
    replayed: AtomicU64,
    rejected: AtomicU64,
}

/// A registered wait; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Wait {
    arrivals: Arc<Arrivals>,
    id: String,
    pub(crate) arrived: oneshot::Receiver<Prediction>,
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.arrivals.waiting.lock().remove(&self.id);
    }
}

impl Arrivals {
    pub(crate) fn new(settings: WebhookSettings) -> Arrivals {
        Arrivals {
            settings,
            waiting: Mutex::new(HashMap::new()),
            unclaimed: remembered(),
            seen: remembered(),
            delivered: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Registers a wait for prediction `id`; a webhook that came first is handed over at once.
    pub(crate) fn wait(self: &Arc<Self>, id: &str) -> Wait {
        let (sender, arrived) = oneshot::channel();
        match self.unclaimed.remove(id) {
            Some(early) => {
                let _ = sender.send(early);
            }
            None => {
                self.waiting.lock().insert(id.to_owned(), sender);
            }
        }
        Wait {
            arrivals: self.clone(),
            id: id.to_owned(),
            arrived,
        }
    }

    /// The predictions generations of this process wait for.
    pub(crate) fn waiting(&self) -> Vec<String> {
        self.waiting.lock().keys().cloned().collect()
    }

    /// Hands `prediction` (recorded by the replica that received its webhook) to the wait
    /// for it; kept for a late registration when there is none.
    pub(crate) fn relay(&self, prediction: Prediction) {
        let waiter = self.waiting.lock().remove(&prediction.id);
        let unclaimed = match waiter {
            Some(sender) => sender.send(prediction).err(),
            None => Some(prediction),
        };
        match unclaimed {
            None => {
                self.relayed.fetch_add(1, Ordering::Relaxed);
            }
            Some(prediction) => {
                self.unclaimed.insert(prediction.id.clone(), prediction);
            }
        }
    }

    /// Forgets that webhook `id` was seen: its outcome could not be recorded, so the delivery
    /// is refused and Replicate's retry (same id) must not count as a replay.
    pub(crate) fn unsee(&self, id: &str) {
        self.seen.invalidate(id);
    }

    /// Verifies a delivery and hands its prediction to whoever waits for it; a prediction
    /// nobody here waits for comes back with [`WebhookReceipt::Kept`], to be recorded for the
    /// replica running its job.
    pub(crate) fn receive(
        &self,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<(WebhookReceipt, Option<Prediction>), WebhookError> {
        let checked = self
            .settings
            .secret
            .verify(headers, body, now)
            .and_then(|()| {
                serde_json::from_slice::<Prediction>(body)
                    .map_err(|e| WebhookError::NotAPrediction(e.to_string()))
            });
        let prediction = match checked {
            Ok(prediction) => prediction,
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let id = headers.id.unwrap_or_default().to_owned();
        // One step, so two copies of one delivery arriving together cannot both pass.
        if !self.seen.entry(id).or_insert(()).is_fresh() {
            self.replayed.fetch_add(1, Ordering::Relaxed);
            return Ok((WebhookReceipt::Replayed, None));
        }
        if !prediction.status.is_final() {
            return Ok((WebhookReceipt::NotFinal, None));
        }
        let waiter = self.waiting.lock().remove(&prediction.id);
        let unclaimed = match waiter {
            Some(sender) => sender.send(prediction).err(),
            None => Some(prediction),
        };
        Ok(match unclaimed {
            None => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                (WebhookReceipt::Delivered, None)
            }
            Some(prediction) => {
                self.kept.fetch_add(1, Ordering::Relaxed);
                self.unclaimed
                    .insert(prediction.id.clone(), prediction.clone());
                (WebhookReceipt::Kept, Some(prediction))
            }
        })
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WebhookStats {
            delivered: get(&self.delivered),
            kept: get(&self.kept),
            relayed: get(&self.relayed),
            replayed: get(&self.replayed),
            rejected: get(&self.rejected),
        }
    }
}

fn remembered<V: Clone + Send + Sync + 'static>() -> moka::sync::Cache<String, V> {
    moka::sync::Cache::builder()
        .time_to_live(REMEMBER)
        .max_capacity(REMEMBER_MAX)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::PredictionStatus;

    fn arrivals() -> Arc<Arrivals> {
        Arc::new(Arrivals::new(WebhookSettings {
            url: Url::parse("http://127.0.0.1:1/replicate/webhook").unwrap(),
            secret: WebhookSecret::parse("whsec_c2VjcmV0LWtleQ==").unwrap(),
            reconcile: Duration::from_secs(30),
        }))
    }

    fn delivery(
        arrivals: &Arrivals,
        webhook_id: &str,
        body: &str,
    ) -> Result<WebhookReceipt, WebhookError> {
        let now = 1_700_000_000;
        let signature = arrivals
            .settings
            .secret
            .sign(webhook_id, now, body.as_bytes());
        let ts = now.to_string();
        let headers = WebhookHeaders {
            id: Some(webhook_id),
            timestamp: Some(&ts),
            signature: Some(&signature),
        };
        arrivals
            .receive(&headers, body.as_bytes(), now)
            .map(|(receipt, _)| receipt)
    }

    #[test]
    fn debug_shows_neither_the_secret_nor_credentials_in_the_url() {
        let settings = WebhookSettings {
            url: Url::parse("https://hook:pa55@bot.example/replicate?token=t0k3n").unwrap(),
            secret: WebhookSecret::parse("whsec_c2VjcmV0LWtleQ==").unwrap(),
            reconcile: Duration::from_secs(30),
        };
        let shown = format!("{settings:?}");
        for secret in ["pa55", "t0k3n", "c2VjcmV0"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    const DONE: &str = r#"{"id":"p1","status":"succeeded","output":["http://x/1.png"]}"#;

    #[test]
    fn a_webhook_wakes_its_wait_once_and_a_replay_does_nothing() {
        let arrivals = arrivals();
        let mut wait = arrivals.wait("p1");
        assert_eq!(
            delivery(&arrivals, "msg_1", DONE),
            Ok(WebhookReceipt::Delivered)
        );
        let got = wait.arrived.try_recv().unwrap();
        assert_eq!(got.status, PredictionStatus::Succeeded);
        assert_eq!(
            delivery(&arrivals, "msg_1", DONE),
            Ok(WebhookReceipt::Replayed)
        );
        assert_eq!(arrivals.stats().replayed, 1);
    }

    #[test]
    fn a_webhook_nobody_here_waits_for_comes_back_to_be_recorded_and_a_relayed_one_wakes_its_wait()
    {
        let receiver = arrivals();
        let (receipt, kept) = receiver
            .receive(
                &WebhookHeaders {
                    id: Some("msg_9"),
                    timestamp: Some("1700000000"),
                    signature: Some(&receiver.settings.secret.sign(
                        "msg_9",
                        1_700_000_000,
                        DONE.as_bytes(),
                    )),
                },
                DONE.as_bytes(),
                1_700_000_000,
            )
            .unwrap();
        assert_eq!(receipt, WebhookReceipt::Kept);
        let kept = kept.expect("the outcome, for the replica running the job");
        // The owner is another process: it gets the outcome through the database.
        let owner = arrivals();
        let mut wait = owner.wait("p1");
        assert_eq!(owner.waiting(), vec!["p1".to_owned()]);
        owner.relay(kept);
        assert_eq!(wait.arrived.try_recv().unwrap().id, "p1");
        assert_eq!(owner.stats().relayed, 1);
        assert!(owner.waiting().is_empty());
    }

    #[test]
    fn a_refused_delivery_is_not_a_replay_when_replicate_sends_it_again() {
        let arrivals = arrivals();
        assert_eq!(delivery(&arrivals, "msg_8", DONE), Ok(WebhookReceipt::Kept));
        arrivals.unsee("msg_8");
        assert_eq!(delivery(&arrivals, "msg_8", DONE), Ok(WebhookReceipt::Kept));
        assert_eq!(arrivals.stats().replayed, 0);
    }

    #[test]
    fn an_early_webhook_is_kept_for_the_wait_registered_after_it() {
        let arrivals = arrivals();
        assert_eq!(delivery(&arrivals, "msg_2", DONE), Ok(WebhookReceipt::Kept));
        let mut wait = arrivals.wait("p1");
        assert_eq!(wait.arrived.try_recv().unwrap().id, "p1");
        drop(wait);
        assert!(arrivals.waiting.lock().is_empty());
    }

    #[test]
    fn forged_and_unfinished_deliveries_change_nothing() {
        let arrivals = arrivals();
        let mut wait = arrivals.wait("p1");
        let ts = "1700000000";
        let forged = WebhookHeaders {
            id: Some("msg_3"),
            timestamp: Some(ts),
            signature: Some("v1,Zm9yZ2Vk"),
        };
        assert_eq!(
            arrivals.receive(&forged, DONE.as_bytes(), 1_700_000_000),
            Err(WebhookError::BadSignature)
        );
        let running = r#"{"id":"p1","status":"processing"}"#;
        assert_eq!(
            delivery(&arrivals, "msg_4", running),
            Ok(WebhookReceipt::NotFinal)
        );
        assert!(wait.arrived.try_recv().is_err());
        assert_eq!(arrivals.stats().rejected, 1);
    }
}
