//! The durable update inbox in front of the dispatcher.
//!
//! teloxide confirms updates to Telegram (the next `getUpdates` offset) as soon as the
//! dispatcher has taken them, before they are handled: a crash then loses them. Wrapped in a
//! [`DurableListener`], each update is recorded in the database before it is passed on (so
//! before the confirming `getUpdates` is sent), and handlers mark it handled when they are done
//! ([`Front::update_handled`], written in batches). At start, what this replica recorded and did
//! not handle, and what any replica left unhandled for [`STALE_AFTER`], is handled first.
//! A prompt's job carries its update id, so a replayed prompt never charges twice; a replayed
//! command may answer twice.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use teloxide::stop::StopToken;
use teloxide::types::{AllowedUpdate, Update};
use teloxide::update_listeners::{AsUpdateStream, UpdateListener};
use tokio_util::sync::CancellationToken;

use crate::Front;

/// An update left unhandled this long by another replica is taken over (that replica is gone).
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// Updates replayed at most at one start.
const REPLAY_MAX: u32 = 10_000;
/// How often handled marks are written (a crash forgets at most this much: replayed commands).
const MARK_EVERY: Duration = Duration::from_millis(200);
/// Handled updates are forgotten after a day.
const KEEP_HANDLED: Duration = Duration::from_secs(86_400);
/// Tries to record an update before it is passed on unrecorded (the database is down).
const RECORD_TRIES: u32 = 3;

/// An update listener whose updates are recorded before they are passed on.
pub struct DurableListener<L> {
    inner: L,
    front: Front,
    replay: Vec<Update>,
}

impl<L> std::fmt::Debug for DurableListener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableListener")
            .field("replay", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl<L> DurableListener<L> {
    /// Wraps `inner`; the updates this replica (or a gone one) left unhandled come first.
    pub async fn new(inner: L, front: Front) -> Self {
        let store = front.engine().store();
        if let Err(e) = store.prune_handled_updates(KEEP_HANDLED).await {
            tracing::warn!(error = %e, "forgetting old handled updates failed");
        }
        let owner = front.engine().replica_id();
        let replay = match store
            .claim_unhandled_updates(owner, STALE_AFTER, REPLAY_MAX)
            .await
        {
            Ok(updates) => updates,
            Err(e) => {
                tracing::warn!(error = %e, "reading unhandled updates failed; none replayed");
                Vec::new()
            }
        };
        let mut decoded = Vec::with_capacity(replay.len());
        for update in replay {
            match serde_json::from_str::<Update>(&update.payload) {
                Ok(parsed) => decoded.push(parsed),
                Err(e) => {
                    tracing::warn!(update_id = update.id, error = %e, "a recorded update no longer parses; dropped");
                    front.update_handled(update.id);
                }
            }
        }
        if !decoded.is_empty() {
            tracing::info!(
                updates = decoded.len(),
                "handling updates a previous run received but did not handle"
            );
        }
        DurableListener {
            inner,
            front,
            replay: decoded,
        }
    }
}

impl<L> UpdateListener for DurableListener<L>
where
    L: UpdateListener + Send,
    L::Err: Send + 'static,
{
    type Err = L::Err;

    fn stop_token(&mut self) -> StopToken {
        self.inner.stop_token()
    }

    fn hint_allowed_updates(&mut self, hint: &mut dyn Iterator<Item = AllowedUpdate>) {
        self.inner.hint_allowed_updates(hint);
    }
}

impl<'a, L> AsUpdateStream<'a> for DurableListener<L>
where
    L: UpdateListener + Send,
    L::Err: Send + 'static,
{
    type StreamErr = L::Err;
    type Stream = BoxStream<'a, Result<Update, L::Err>>;

    fn as_stream(&'a mut self) -> Self::Stream {
        let replay = std::mem::take(&mut self.replay);
        let front = self.front.clone();
        let live = self
            .inner
            .as_stream()
            .then(move |item| {
                let front = front.clone();
                async move {
                    match item {
                        Ok(update) => record(&front, update).await.map(Ok),
                        Err(e) => Some(Err(e)),
                    }
                }
            })
            .filter_map(std::future::ready);
        stream::iter(replay.into_iter().map(Ok)).chain(live).boxed()
    }
}

/// Records `update`; `None` when it was recorded before (Telegram sent it again after a crash:
/// it is replayed from the inbox, or handled already).
async fn record(front: &Front, update: Update) -> Option<Update> {
    let id = i64::from(update.id.0);
    let payload = match serde_json::to_string(&update) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::warn!(update_id = id, error = %e, "update not recordable; handled unrecorded");
            return Some(update);
        }
    };
    let store = front.engine().store();
    let owner = front.engine().replica_id();
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=RECORD_TRIES {
        match store.record_update(owner, id, payload.clone()).await {
            Ok(true) => return Some(update),
            Ok(false) => return None,
            Err(e) if attempt < RECORD_TRIES => {
                tracing::warn!(update_id = id, error = %e, "recording an update failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                tracing::error!(update_id = id, error = %e, "update handled without being recorded (a crash now would lose it)");
            }
        }
    }
    Some(update)
}

/// Writes handled marks every [`MARK_EVERY`] until `stop`, then once more.
pub(crate) async fn keep_marking(front: Front, stop: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(MARK_EVERY) => false,
        };
        let handled = front.take_handled();
        if !handled.is_empty() {
            if let Err(e) = front.engine().store().mark_updates_handled(&handled).await {
                tracing::warn!(error = %e, updates = handled.len(), "marking updates handled failed; they may be handled again after a crash");
            }
        }
        if stopping {
            return;
        }
    }
}
