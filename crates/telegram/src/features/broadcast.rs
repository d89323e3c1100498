//! `/broadcast <text>` (admins): the text goes to every user in id order, at most
//! [`SENDS_PER_SEC`] a second (the rest of Telegram's 30 stays for answers), with progress edited
//! into the admin's chat every few seconds and counts of delivered, blocked (403: the user is
//! marked and skipped from then on) and failed. The broadcast lives in the database with its
//! cursor, moved after every send and leased to one replica, so a crash resumes after the last
//! recorded user: at most the one message in flight at the crash goes out twice.
//!
//! Imports the shared layer, never another feature or the router. (`run`, the broadcaster,
//! is started with the bot's other tasks in [`crate::run`].)

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use genbot_store::{Broadcast, BroadcastSend, UserId};
use governor::{DefaultDirectRateLimiter, Quota};
use teloxide::prelude::*;
use teloxide::types::MessageId;
use tokio_util::sync::CancellationToken;

use crate::pacing::{is_blocked, send, send_reading};
use crate::shared::HandlerResult;
use crate::texts::{self, Lang};
use crate::Front;

/// Broadcast messages a second, at most.
const SENDS_PER_SEC: u32 = 20;
/// Users read per database query.
const BATCH: u32 = 100;
/// How often the admin's progress message is edited.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often unfinished broadcasts (a crashed replica's) are looked for.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// `/broadcast <text>`.
pub(crate) async fn start(
    front: &Front,
    chat: ChatId,
    lang: Lang,
    admin: UserId,
    text: &str,
    update: i64,
) -> HandlerResult {
    let bot = front.bot();
    if text.is_empty() {
        send(
            front,
            chat,
            bot.send_message(chat, texts::broadcast_usage(lang)),
        )
        .await?;
        return Ok(());
    }
    let engine = front.engine();
    let lease = engine.config().replica.lease;
    let Some(broadcast) = engine
        .store()
        .create_broadcast(
            admin,
            text.to_owned(),
            Some(update),
            engine.replica_id(),
            lease,
        )
        .await?
    else {
        tracing::info!(update, "replayed /broadcast: its broadcast exists already");
        return Ok(());
    };
    let progress = texts::broadcast_progress(lang, broadcast.id, 0, 0, 0, false);
    let message = send_reading(front, chat, bot.send_message(chat, progress)).await?;
    engine
        .store()
        .finish_broadcast(broadcast.id, Some(i64::from(message.id.0)), false)
        .await?;
    front.broadcasts().notify_one();
    Ok(())
}

/// Runs broadcasts (this replica's, and those a gone replica left) until `stop`.
pub(crate) async fn run(front: Front, stop: CancellationToken) {
    let engine = front.engine().clone();
    let lease = engine.config().replica.lease;
    loop {
        loop {
            match engine
                .store()
                .claim_broadcast(engine.replica_id(), lease)
                .await
            {
                Ok(Some(broadcast)) => {
                    if let Err(e) = continue_broadcast(&front, broadcast, &stop).await {
                        tracing::warn!(error = %e, "a broadcast stopped; it resumes from its cursor");
                        break;
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for broadcasts failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = front.broadcasts().notified() => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

async fn continue_broadcast(
    front: &Front,
    mut broadcast: Broadcast,
    stop: &CancellationToken,
) -> Result<(), genbot_store::StoreError> {
    let engine = front.engine();
    let store = engine.store();
    let owner = engine.replica_id();
    let lease = engine.config().replica.lease;
    let pace = DefaultDirectRateLimiter::direct(Quota::per_second(
        NonZeroU32::new(SENDS_PER_SEC).unwrap_or(NonZeroU32::MIN),
    ));
    let lang = front.language_of(broadcast.admin).await;
    let mut shown = Instant::now();
    loop {
        let batch = store.broadcast_recipients(broadcast.cursor, BATCH).await?;
        if batch.is_empty() {
            store.finish_broadcast(broadcast.id, None, true).await?;
            show_progress(front, &broadcast, lang, true).await;
            tracing::info!(
                broadcast = broadcast.id,
                delivered = broadcast.delivered,
                blocked = broadcast.blocked,
                failed = broadcast.failed,
                "broadcast finished"
            );
            return Ok(());
        }
        for (user, known_blocked) in batch {
            if stop.is_cancelled() {
                return Ok(());
            }
            let sent = if known_blocked {
                BroadcastSend::Blocked
            } else {
                pace.until_ready().await;
                let chat = ChatId(user.0);
                match send(
                    front,
                    chat,
                    front.bot().send_message(chat, broadcast.text.clone()),
                )
                .await
                {
                    Ok(_) => BroadcastSend::Delivered,
                    Err(e) if is_blocked(&e) => {
                        if let Err(e) = store.mark_blocked(user).await {
                            tracing::warn!(error = %e, "recording a blocked user failed");
                        }
                        BroadcastSend::Blocked
                    }
                    Err(e) => {
                        tracing::info!(user_id = user.0, error = %e, "a broadcast message was refused");
                        BroadcastSend::Failed
                    }
                }
            };
            // The message is out: losing its record would send it again from the cursor.
            let recorded = genbot_engine::until_written(stop, "a broadcast send", || {
                store.record_broadcast_send(broadcast.id, owner, user, sent, lease)
            })
            .await;
            let Ok(still_ours) = recorded else {
                return Ok(());
            };
            if !still_ours {
                tracing::warn!(
                    broadcast = broadcast.id,
                    "the broadcast passed to another replica"
                );
                return Ok(());
            }
            broadcast.cursor = user.0;
            match sent {
                BroadcastSend::Delivered => broadcast.delivered += 1,
                BroadcastSend::Blocked => broadcast.blocked += 1,
                BroadcastSend::Failed => broadcast.failed += 1,
            }
            if shown.elapsed() >= PROGRESS_EVERY {
                shown = Instant::now();
                show_progress(front, &broadcast, lang, false).await;
            }
        }
    }
}

async fn show_progress(front: &Front, broadcast: &Broadcast, lang: Lang, done: bool) {
    let chat = ChatId(broadcast.admin.0);
    let text = texts::broadcast_progress(
        lang,
        broadcast.id,
        broadcast.delivered,
        broadcast.blocked,
        broadcast.failed,
        done,
    );
    let bot = front.bot();
    let sent = match broadcast
        .progress_message
        .and_then(|m| i32::try_from(m).ok())
    {
        Some(message) => send(
            front,
            chat,
            bot.edit_message_text(chat, MessageId(message), text),
        )
        .await
        .map(|_| ()),
        None => send(front, chat, bot.send_message(chat, text))
            .await
            .map(|_| ()),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "showing broadcast progress failed");
    }
}
