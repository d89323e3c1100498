//! Which replica handles which updates: per-chat claims.
//!
//! Every replica handles recorded updates, one chat at a time: a replica takes a chat's updates
//! only while it holds the chat's claim in the database (renewed by its heartbeat three times
//! per `FrontConfig::inbox_takeover_after`, given up once none of the chat's updates waits), so
//! one chat's updates are handled in order by one replica at a time. The replica that records a
//! batch (the poller, or the webhook replica a delivery reached) takes in the same transaction
//! the updates of chats it holds and its share of the free ones (all of them when it is the
//! only replica: no extra step, no added latency); every replica looks every [`ROUND_EVERY`] for
//! free chats with waiting updates (and its own chats' updates others recorded) and takes them.
//! A replica that dies leaves its claims to lapse: another takes its chats over within the
//! bound, its unfinished updates as replays. At start a replica takes its previous run's chats
//! back at once. A prompt's job carries its update id, so a replayed prompt never charges
//! twice; a replayed command may answer twice.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use genbot_store::{InboxUpdate, Unhandled};
use parking_lot::Mutex;
use teloxide::types::Update;
use tokio_util::sync::CancellationToken;

use crate::Front;

/// How often a replica looks for updates to take: free chats' (a replica that recorded them
/// left them, or died), and those of its own chats that another replica recorded.
const ROUND_EVERY: Duration = Duration::from_millis(100);
/// A replica that recorded a batch leaves the free chats it did not take to the other replicas
/// this long before its own rounds take them.
const LEAVE_TO_OTHERS: Duration = Duration::from_millis(250);
/// How often handled marks are written (a crash forgets at most this much: replayed commands).
const MARK_EVERY: Duration = Duration::from_millis(200);
/// Handled updates are forgotten after a day.
const KEEP_HANDLED: Duration = Duration::from_secs(86_400);

/// The chat an update belongs to for its claim: its chat, else its sender's private chat (a
/// pre-checkout query goes with its buyer's messages), else 0.
pub(crate) fn chat_key(update: &Update) -> i64 {
    update
        .chat()
        .map(|c| c.id.0)
        .or_else(|| update.from().and_then(|u| i64::try_from(u.id.0).ok()))
        .unwrap_or(0)
}

/// When this replica last recorded updates: its rounds then leave the rest of that batch to
/// the others for a moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastRecord(std::sync::Arc<Mutex<Option<tokio::time::Instant>>>);

impl LastRecord {
    pub(crate) fn now(&self) {
        *self.0.lock() = Some(tokio::time::Instant::now());
    }

    /// How fresh a free chat's updates may be for this replica's round to take them.
    fn leave_fresh(&self) -> Duration {
        match *self.0.lock() {
            Some(at) if at.elapsed() < LEAVE_TO_OTHERS => LEAVE_TO_OTHERS,
            _ => Duration::ZERO,
        }
    }
}

/// The updates to handle before new ones: this replica's previous run's chats (taken back at
/// once) and free chats with waiting updates.
pub(crate) async fn at_start(front: &Front) -> Vec<Update> {
    let store = front.engine().store();
    if let Err(e) = store.prune_handled_updates(KEEP_HANDLED).await {
        tracing::warn!(error = %e, "forgetting old handled updates failed");
    }
    let owner = front.engine().replica_id();
    let lease = front.config().inbox_takeover_after;
    match store.take_updates(owner, Unhandled::AtStart, lease).await {
        Ok(taken) => {
            let fed = feed(front, taken);
            if !fed.is_empty() {
                tracing::info!(
                    updates = fed.len(),
                    "handling updates a previous run (or a replica that is gone) received but did not handle"
                );
            }
            fed
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading unhandled updates failed; a round takes them");
            Vec::new()
        }
    }
}

/// The updates this replica took, decoded for the dispatcher. One taken before (its handling
/// may have died with a process) is a replay, counted as it starts; one that died too often, or
/// whose JSON no longer parses (a teloxide upgrade), is set aside instead.
pub(crate) fn feed(front: &Front, taken: Vec<InboxUpdate>) -> Vec<Update> {
    feed_known(front, taken, &mut std::collections::HashMap::new())
}

/// As [`feed`], with the updates of `known` (the batch just recorded, by id) passed on as
/// they are instead of decoded again from their JSON: the intake is one task for every chat,
/// and decoding a flood's batch twice held everyone's updates up.
pub(crate) fn feed_known(
    front: &Front,
    taken: Vec<InboxUpdate>,
    known: &mut std::collections::HashMap<i64, Update>,
) -> Vec<Update> {
    let mut decoded = Vec::with_capacity(taken.len());
    for update in taken {
        let parsed = match known.remove(&update.id) {
            Some(parsed) => parsed,
            // Decoded as it was received (a panic in teloxide's decoding is caught).
            None => match crate::inbox::parse(&update.payload) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    let reason = format!("the recorded update no longer parses ({reason})");
                    front.set_aside_unparsed(update.id, reason);
                    continue;
                }
            },
        };
        if update.attempts >= crate::isolation::PANICS_MAX {
            // Its handling died with the process (or panicked) again and again: a crash loop.
            let front = front.clone();
            tokio::spawn(async move {
                let reason = "the process stopped while handling it";
                front.set_aside(&parsed, reason, update.attempts).await;
            });
            continue;
        }
        if update.replay {
            front.note_replayed([update.id]);
        }
        decoded.push(parsed);
    }
    decoded
}

/// This replica's rounds, every [`ROUND_EVERY`], as batches of updates to handle (never ends:
/// run it [`alongside`] the intake).
pub(crate) fn rounds(front: Front, last_record: LastRecord) -> BoxStream<'static, Update> {
    stream::unfold((front, last_record), |(front, last_record)| async move {
        loop {
            tokio::time::sleep(ROUND_EVERY).await;
            let which = Unhandled::Running {
                leave_fresh: last_record.leave_fresh(),
            };
            let owner = front.engine().replica_id();
            let lease = front.config().inbox_takeover_after;
            match front
                .engine()
                .store()
                .take_updates(owner, which, lease)
                .await
            {
                Ok(taken) if taken.is_empty() => {}
                Ok(taken) => {
                    let fed = feed(&front, taken);
                    return Some((stream::iter(fed), (front, last_record)));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "looking for updates to take failed; trying again");
                }
            }
        }
    })
    .flatten()
    .boxed()
}

/// `primary`'s items with `extra`'s merged in, ending when `primary` ends.
pub(crate) fn alongside<'a, T: Send + 'a>(
    primary: impl futures_util::Stream<Item = T> + Send + 'a,
    extra: impl futures_util::Stream<Item = T> + Send + 'a,
) -> BoxStream<'a, T> {
    let primary = primary
        .map(Some)
        .chain(stream::once(std::future::ready(None)));
    stream::select(primary, extra.map(Some))
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
        .boxed()
}

/// Writes handled marks every [`MARK_EVERY`] until `stop`, then once more (giving up the
/// claims of chats left with nothing waiting); and three times per takeover bound renews this
/// replica's membership and chat claims, so no other replica takes over a chat it is still
/// handling (a handler waiting for Telegram's send budget, say).
pub(crate) async fn keep_marking(front: Front, stop: CancellationToken) {
    let lease = front.config().inbox_takeover_after;
    let renew_every = lease / 3;
    let owner = front.engine().replica_id();
    let mut renewed = tokio::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(MARK_EVERY) => false,
        };
        let handled = front.take_handled();
        if !handled.is_empty() {
            if let Err(e) = front
                .engine()
                .store()
                .mark_updates_handled(owner, &handled)
                .await
            {
                tracing::warn!(error = %e, updates = handled.len(), "marking updates handled failed; trying again (a crash before then would handle them again)");
                front.return_handled(handled);
            }
        }
        if renewed.elapsed() >= renew_every {
            renewed = tokio::time::Instant::now();
            if let Err(e) = front.engine().store().renew_chat_claims(owner, lease).await {
                tracing::warn!(error = %e, "renewing this replica's chat claims failed; another replica may take its chats over");
            }
        }
        if stopping {
            return;
        }
    }
}
