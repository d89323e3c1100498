//! Where verified webhooks meet the generations waiting for them.
//!
//! A generation waiting for its prediction registers the prediction id; a webhook for it wakes
//! that wait at once. A webhook that comes before the wait is registered (it can overtake the
//! create's answer) is kept for a while and picked up at registration. Webhook ids already
//! handled are remembered past the timestamp tolerance, so a replay inside the window has no
//! effect and one after it fails the timestamp check. An id counts as handled only once its
//! outcome is where it must be (handed to a wait here, or recorded for the replica running the
//! job): a copy arriving while the first is still being recorded waits for that record, and
//! records the outcome itself if the first copy's record failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
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

/// What is known of a webhook id.
#[derive(Debug, Clone)]
enum Seen {
    /// The first copy is being handled (its outcome recorded); the channel closes when it is
    /// done, either way.
    Handling(watch::Receiver<()>),
    /// Handled: later copies are replays.
    Handled,
}

/// The right to handle one webhook id, held by the copy that arrived first. Dropped without
/// [`Ticket::handled`] (the record failed), the id is forgotten, so Replicate's retry (or a copy
/// waiting meanwhile) handles it again.
#[derive(Debug)]
pub(crate) struct Ticket {
    arrivals: Arc<Arrivals>,
    id: String,
    done: bool,
    /// Closing it wakes the copies waiting for this one.
    _waiters: watch::Sender<()>,
}

impl Ticket {
    /// The delivery's outcome is where it must be: later copies are replays.
    fn handled(mut self) {
        self.arrivals.seen.insert(self.id.clone(), Seen::Handled);
        self.done = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.arrivals.seen.invalidate(&self.id);
        }
    }
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
    seen: moka::sync::Cache<String, Seen>,
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

    /// Verifies a delivery and hands its prediction to whoever waits for it; a prediction
    /// nobody here waits for is given to `record`, for the replica running its job, and the
    /// delivery counts as handled only once `record` succeeded. A copy of a delivery whose first
    /// copy is still being handled waits for it: a replay if it succeeded, handled again if not.
    ///
    /// # Errors
    /// The delivery is not genuine, or `record` failed ([`WebhookError::NotRecorded`]: refused
    /// so that Replicate sends it again).
    pub(crate) async fn receive<R, F>(
        self: &Arc<Self>,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
        now: i64,
        record: R,
    ) -> Result<WebhookReceipt, WebhookError>
    where
        R: FnOnce(Prediction) -> F,
        F: std::future::Future<Output = Result<(), String>>,
    {
        let prediction = self.verify(headers, body, now)?;
        let id = headers.id.unwrap_or_default();
        let ticket = loop {
            match self.admit(id) {
                Ok(ticket) => break ticket,
                Err(None) => {
                    self.replayed.fetch_add(1, Ordering::Relaxed);
                    return Ok(WebhookReceipt::Replayed);
                }
                // Closed when the first copy is done, either way: look again.
                Err(Some(mut first)) => {
                    let _ = first.changed().await;
                }
            }
        };
        if !prediction.status.is_final() {
            ticket.handled();
            return Ok(WebhookReceipt::NotFinal);
        }
        let waiter = self.waiting.lock().remove(&prediction.id);
        let unclaimed = match waiter {
            Some(sender) => sender.send(prediction).err(),
            None => Some(prediction),
        };
        let Some(prediction) = unclaimed else {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            ticket.handled();
            return Ok(WebhookReceipt::Delivered);
        };
        self.kept.fetch_add(1, Ordering::Relaxed);
        self.unclaimed
            .insert(prediction.id.clone(), prediction.clone());
        match record(prediction).await {
            Ok(()) => {
                ticket.handled();
                Ok(WebhookReceipt::Kept)
            }
            // The ticket is dropped: the id is forgotten and a retry is no replay.
            Err(reason) => Err(WebhookError::NotRecorded(reason)),
        }
    }

    /// The signature, timestamp and body of a delivery checked.
    fn verify(
        &self,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<Prediction, WebhookError> {
        let checked = self
            .settings
            .secret
            .verify(headers, body, now)
            .and_then(|()| {
                serde_json::from_slice::<Prediction>(body)
                    .map_err(|e| WebhookError::NotAPrediction(e.to_string()))
            });
        if checked.is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    /// The right to handle webhook `id`; `Err(None)` when it was handled already,
    /// `Err(Some(first))` while another copy handles it (`first` closes when that one is done).
    fn admit(self: &Arc<Self>, id: &str) -> Result<Ticket, Option<watch::Receiver<()>>> {
        let (waiters, first) = watch::channel(());
        // One step, so two copies arriving together cannot both pass.
        let entry = self
            .seen
            .entry(id.to_owned())
            .or_insert(Seen::Handling(first));
        if entry.is_fresh() {
            return Ok(Ticket {
                arrivals: self.clone(),
                id: id.to_owned(),
                done: false,
                _waiters: waiters,
            });
        }
        match entry.into_value() {
            Seen::Handled => Err(None),
            Seen::Handling(first) => Err(Some(first)),
        }
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

    /// A delivery of `body` as `webhook_id`, correctly signed; a kept prediction is given to
    /// `record`.
    async fn delivery_recorded_by<F>(
        arrivals: &Arc<Arrivals>,
        webhook_id: &str,
        body: &str,
        record: impl FnOnce(Prediction) -> F,
    ) -> Result<WebhookReceipt, WebhookError>
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
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
            .receive(&headers, body.as_bytes(), now, record)
            .await
    }

    /// A delivery whose kept prediction is recorded at once.
    async fn delivery(
        arrivals: &Arc<Arrivals>,
        webhook_id: &str,
        body: &str,
    ) -> Result<WebhookReceipt, WebhookError> {
        delivery_recorded_by(arrivals, webhook_id, body, |_| async { Ok(()) }).await
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

    #[tokio::test]
    async fn a_webhook_wakes_its_wait_once_and_a_replay_does_nothing() {
        let arrivals = arrivals();
        let mut wait = arrivals.wait("p1");
        assert_eq!(
            delivery(&arrivals, "msg_1", DONE).await,
            Ok(WebhookReceipt::Delivered)
        );
        let got = wait.arrived.try_recv().unwrap();
        assert_eq!(got.status, PredictionStatus::Succeeded);
        assert_eq!(
            delivery(&arrivals, "msg_1", DONE).await,
            Ok(WebhookReceipt::Replayed)
        );
        assert_eq!(arrivals.stats().replayed, 1);
    }

    #[tokio::test]
    async fn a_webhook_nobody_here_waits_for_is_recorded_and_a_relayed_one_wakes_its_wait() {
        let receiver = arrivals();
        let kept = Arc::new(Mutex::new(None));
        let keep = kept.clone();
        let receipt = delivery_recorded_by(&receiver, "msg_9", DONE, |prediction| async move {
            *keep.lock() = Some(prediction);
            Ok(())
        })
        .await;
        assert_eq!(receipt, Ok(WebhookReceipt::Kept));
        let kept = kept
            .lock()
            .take()
            .expect("the outcome, for the replica running the job");
        // The owner is another process: it gets the outcome through the database.
        let owner = arrivals();
        let mut wait = owner.wait("p1");
        assert_eq!(owner.waiting(), vec!["p1".to_owned()]);
        owner.relay(kept);
        assert_eq!(wait.arrived.try_recv().unwrap().id, "p1");
        assert_eq!(owner.stats().relayed, 1);
        assert!(owner.waiting().is_empty());
    }

    #[tokio::test]
    async fn a_delivery_whose_record_failed_is_not_a_replay_when_replicate_sends_it_again() {
        let arrivals = arrivals();
        let failed =
            delivery_recorded_by(&arrivals, "msg_8", DONE, |_| async { Err("down".into()) }).await;
        assert_eq!(failed, Err(WebhookError::NotRecorded("down".into())));
        assert_eq!(
            delivery(&arrivals, "msg_8", DONE).await,
            Ok(WebhookReceipt::Kept)
        );
        assert_eq!(arrivals.stats().replayed, 0);
    }

    /// Replicate sends a delivery again while the first copy's record still waits for the
    /// database. The copy waits: the first record fails, so the copy records the outcome (a
    /// copy answered "replayed" at once would leave it to the owner's reconcile poll).
    #[tokio::test]
    async fn a_copy_arriving_during_the_first_record_waits_for_it_and_records_if_it_failed() {
        let arrivals = arrivals();
        let (fail_first, first_fails) = oneshot::channel::<()>();
        let (first_started, started) = oneshot::channel::<()>();
        let first = {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                delivery_recorded_by(&arrivals, "msg_7", DONE, |_| async move {
                    let _ = first_started.send(());
                    let _ = first_fails.await;
                    Err("the database did not answer".to_owned())
                })
                .await
            })
        };
        started.await.unwrap();
        let recorded = Arc::new(AtomicU64::new(0));
        let again = {
            let (arrivals, recorded) = (arrivals.clone(), recorded.clone());
            tokio::spawn(async move {
                delivery_recorded_by(&arrivals, "msg_7", DONE, |_| async move {
                    recorded.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        };
        // The copy is not answered while the first record is undecided.
        tokio::task::yield_now().await;
        assert!(
            !again.is_finished(),
            "the copy was answered before the first record ended"
        );
        fail_first.send(()).unwrap();
        assert!(matches!(
            first.await.unwrap(),
            Err(WebhookError::NotRecorded(_))
        ));
        assert_eq!(again.await.unwrap(), Ok(WebhookReceipt::Kept));
        assert_eq!(recorded.load(Ordering::SeqCst), 1);
        // Recorded now: a later copy is a replay.
        assert_eq!(
            delivery(&arrivals, "msg_7", DONE).await,
            Ok(WebhookReceipt::Replayed)
        );
    }

    #[tokio::test]
    async fn an_early_webhook_is_kept_for_the_wait_registered_after_it() {
        let arrivals = arrivals();
        assert_eq!(
            delivery(&arrivals, "msg_2", DONE).await,
            Ok(WebhookReceipt::Kept)
        );
        let mut wait = arrivals.wait("p1");
        assert_eq!(wait.arrived.try_recv().unwrap().id, "p1");
        drop(wait);
        assert!(arrivals.waiting.lock().is_empty());
    }

    #[tokio::test]
    async fn forged_and_unfinished_deliveries_change_nothing() {
        let arrivals = arrivals();
        let mut wait = arrivals.wait("p1");
        let ts = "1700000000";
        let forged = WebhookHeaders {
            id: Some("msg_3"),
            timestamp: Some(ts),
            signature: Some("v1,Zm9yZ2Vk"),
        };
        assert_eq!(
            arrivals
                .receive(&forged, DONE.as_bytes(), 1_700_000_000, |_| async {
                    Ok(())
                })
                .await,
            Err(WebhookError::BadSignature)
        );
        let running = r#"{"id":"p1","status":"processing"}"#;
        assert_eq!(
            delivery(&arrivals, "msg_4", running).await,
            Ok(WebhookReceipt::NotFinal)
        );
        assert!(wait.arrived.try_recv().is_err());
        assert_eq!(arrivals.stats().rejected, 1);
    }
}
