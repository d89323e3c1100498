//! Delivering results: the engine's events become chat actions, photos and failure messages,
//! and queue-position messages are edited in place as the queue moves.

use std::time::Duration;

use genbot_engine::JobEvent;
use genbot_store::{JobId, UserId};
use teloxide::prelude::*;
use teloxide::types::{ChatAction, InputFile};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pacing::send;
use crate::texts::{self, Lang};
use crate::{Front, Slot, Waiting};

/// How often waiting users' queue positions are refreshed. Each refresh edits only messages
/// whose position changed, so a long queue costs edits, not a flood of new messages.
const POSITION_REFRESH: Duration = Duration::from_secs(2);

/// Most position messages edited per refresh.
const EDITS_PER_REFRESH: usize = 10;

/// Telegram's caption limit, in characters.
const CAPTION_MAX: usize = 1024;

/// Reads `events` until the engine closes them or `stop` is cancelled, delivering each in its own
/// task so one slow send does not hold up the others; refreshes queue positions meanwhile.
pub async fn run(
    front: Front,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    stop: CancellationToken,
) {
    let mut refresh = tokio::time::interval(POSITION_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => {
                    let front = front.clone();
                    tokio::spawn(async move {
                        if let Err(e) = deliver(&front, event).await {
                            tracing::warn!(error = %e, "delivering a job event failed");
                        }
                    });
                }
                None => return,
            },
            _ = refresh.tick() => {
                refresh_positions(&front).await;
                front.forget_quiet_users();
            }
        }
    }
}

async fn language_of(front: &Front, user: UserId) -> Lang {
    match front.engine().users().get(user).await {
        Ok(Some(stored)) => Lang::from_code(stored.language.as_deref()),
        _ => Lang::En,
    }
}

async fn deliver(front: &Front, event: JobEvent) -> Result<(), teloxide::RequestError> {
    let bot = front.bot();
    match event {
        JobEvent::Started { job, user } => {
            let chat = ChatId(user.0);
            bot.send_chat_action(chat, ChatAction::UploadPhoto).await?;
            let waiting = {
                let mut slots = front.waiting().lock();
                match slots.get(&job) {
                    Some(Slot::Waiting(waiting)) => Some(*waiting),
                    Some(_) => None,
                    None => {
                        slots.insert(job, Slot::Started);
                        None
                    }
                }
            };
            if let Some(waiting) = waiting {
                send(
                    front,
                    waiting.chat,
                    bot.edit_message_text(
                        waiting.chat,
                        waiting.message,
                        texts::generating(waiting.lang),
                    ),
                )
                .await?;
            }
        }
        JobEvent::Succeeded {
            job,
            user,
            url,
            prompt,
        } => {
            finished(front, job);
            let Ok(url) = url.parse() else {
                tracing::warn!(job_id = job.0, "result URL is not a URL");
                return Ok(());
            };
            let caption: String = prompt.chars().take(CAPTION_MAX).collect();
            send(
                front,
                ChatId(user.0),
                bot.send_photo(ChatId(user.0), InputFile::url(url))
                    .caption(caption),
            )
            .await?;
        }
        JobEvent::Failed { job, user, reason } => {
            finished(front, job);
            let lang = language_of(front, user).await;
            send(
                front,
                ChatId(user.0),
                bot.send_message(ChatId(user.0), texts::failed(lang, &reason)),
            )
            .await?;
        }
    }
    Ok(())
}

/// Forgets the job's message, or leaves a mark for the handler still sending it.
fn finished(front: &Front, job: JobId) {
    let mut slots = front.waiting().lock();
    match slots.remove(&job) {
        Some(Slot::Waiting(_)) => {}
        Some(Slot::Started | Slot::Finished) | None => {
            slots.insert(job, Slot::Finished);
        }
    }
}

async fn refresh_positions(front: &Front) {
    let shown: Vec<_> = front
        .waiting()
        .lock()
        .iter()
        .filter_map(|(job, slot)| match slot {
            Slot::Waiting(w) => Some((*job, *w)),
            _ => None,
        })
        .collect();
    if shown.is_empty() {
        return;
    }
    let positions = match front.engine().queue_positions().await {
        Ok(positions) => positions,
        Err(e) => {
            tracing::debug!(error = %e, "reading queue positions failed; next refresh retries");
            return;
        }
    };
    // A message is worth editing when its job moved a quarter closer, or into the top three;
    // the biggest moves go first and at most a few per refresh, so a long queue costs a bounded
    // number of edits instead of one per waiting user per refresh.
    let mut moves: Vec<(f64, JobId, Waiting, usize)> = shown
        .into_iter()
        .filter_map(|(job, entry)| {
            let now = *positions.get(&job)?;
            let worth = now * 4 <= entry.position * 3 || (now <= 3 && now != entry.position);
            worth.then(|| (now as f64 / entry.position.max(1) as f64, job, entry, now))
        })
        .collect();
    moves.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, job, entry, position) in moves.into_iter().take(EDITS_PER_REFRESH) {
        if let Some(Slot::Waiting(w)) = front.waiting().lock().get_mut(&job) {
            w.position = position;
        }
        let edit = front.bot().edit_message_text(
            entry.chat,
            entry.message,
            texts::queued(entry.lang, position),
        );
        let front = front.clone();
        tokio::spawn(async move {
            if let Err(e) = send(&front, entry.chat, edit).await {
                tracing::debug!(error = %e, "position edit failed");
            }
        });
    }
}
