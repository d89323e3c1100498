//! Progress: the engine's events become chat actions and in-place edits of queue-position
//! messages. Results themselves (photos, failure messages) are sent by the durable
//! [`crate::outbox`], which these events only wake.

use std::time::Duration;

use genbot_engine::JobEvent;
use genbot_store::JobId;
use teloxide::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pacing::send_progress;
use crate::texts;
use crate::{Front, Slot, Waiting};

/// How often waiting users' queue positions are refreshed. Each refresh edits only messages
/// whose position changed, so a long queue costs edits, not a flood of new messages.
const POSITION_REFRESH: Duration = Duration::from_secs(2);

/// Most position messages edited per refresh.
const EDITS_PER_REFRESH: usize = 10;

/// Reads `events` until the engine closes them or `stop` is cancelled, delivering each in its own
/// task so one slow send does not hold up the others; refreshes queue positions meanwhile.
pub async fn run(
    front: Front,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    stop: CancellationToken,
) {
    let mut refresh = tokio::time::interval(POSITION_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let outbox = tokio::spawn(crate::outbox::run(
        front.clone(),
        wake.clone(),
        stop.clone(),
    ));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => {
                    if !matches!(event, JobEvent::Started { .. }) {
                        wake.notify_one();
                    }
                    let front = front.clone();
                    tokio::spawn(async move {
                        if let Err(e) = deliver(&front, event).await {
                            tracing::warn!(error = %e, "delivering a job event failed");
                        }
                    });
                }
                None => break,
            },
            _ = refresh.tick() => {
                refresh_positions(&front).await;
                front.forget_quiet_users();
            }
        }
    }
    stop.cancel();
    let _ = outbox.await;
}

async fn deliver(front: &Front, event: JobEvent) -> Result<(), teloxide::RequestError> {
    let bot = front.bot();
    match event {
        // One progress message per job, and only if the budget is free: the queue message turns
        // into "generating".
        JobEvent::Started { job, .. } => {
            // The job's one progress message: taken here unless a position edit took it.
            let waiting = {
                let mut slots = front.waiting().lock();
                match slots.get_mut(&job) {
                    Some(Slot::Waiting(waiting)) if waiting.edited => {
                        return Ok(());
                    }
                    Some(Slot::Waiting(waiting)) => {
                        waiting.edited = true;
                        Some(*waiting)
                    }
                    Some(_) => None,
                    None => {
                        slots.insert(job, Slot::Started(std::time::Instant::now()));
                        None
                    }
                }
            };
            // Without a queue message recorded yet, the handler turns it into "generating"
            // when it records it (the job's one progress message). A position put off becomes
            // a "generating" message of its own, if the budget has room now: a crowd held up by
            // Replicate's rate limit otherwise heard nothing between the chat action and the
            // image, tens of seconds later.
            match waiting.map(|waiting| (waiting, waiting.message)) {
                Some((waiting, Some(message))) => {
                    send_progress(
                        front,
                        waiting.chat,
                        bot.edit_message_text(
                            waiting.chat,
                            message,
                            texts::generating(waiting.lang),
                        ),
                    )
                    .await?;
                }
                Some((waiting, None)) => {
                    let generating =
                        bot.send_message(waiting.chat, texts::generating(waiting.lang));
                    if let Some(sent) = send_progress(front, waiting.chat, generating).await? {
                        if let Some(Slot::Waiting(w)) = front.waiting().lock().get_mut(&job) {
                            w.message = Some(sent.id);
                        }
                    }
                }
                None => {}
            }
        }
        // The outbox sends the result; here only the position message is let go.
        JobEvent::Succeeded { job, .. } | JobEvent::Failed { job, .. } => finished(front, job),
    }
    Ok(())
}

/// Forgets the job's message, or leaves a mark for the handler still sending it.
fn finished(front: &Front, job: JobId) {
    let mut slots = front.waiting().lock();
    match slots.remove(&job) {
        Some(Slot::Waiting(_)) => {}
        Some(Slot::Started(_) | Slot::Finished(_)) | None => {
            slots.insert(job, Slot::Finished(std::time::Instant::now()));
        }
    }
}

/// Marks left for a handler that never records a queue message (group jobs, re-runs in groups,
/// jobs taken over or replayed) are forgotten after this: a handler records its message within
/// seconds of the job's start. A queue message is kept at least this long too, and then only
/// while its job waits in the queue: a job another replica ran (or took over, or cancelled)
/// sends no event here.
const MARK_KEPT: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether `job`'s entry is still of use; `queued` is the queue's positions when they were read
/// (unread: a message still to be edited is kept).
fn still_of_use(
    job: &JobId,
    slot: &Slot,
    queued: Option<&std::collections::HashMap<JobId, usize>>,
) -> bool {
    match slot {
        Slot::Started(at) | Slot::Finished(at) => at.elapsed() < MARK_KEPT,
        Slot::Waiting(w) if w.sent.elapsed() < MARK_KEPT => true,
        // Its one progress message was had: nothing more will be done with it.
        Slot::Waiting(w) if w.edited => false,
        Slot::Waiting(_) => queued.is_none_or(|q| q.contains_key(job)),
    }
}

async fn refresh_positions(front: &Front) {
    let shown: Vec<_> = front
        .waiting()
        .lock()
        .iter()
        .filter_map(|(job, slot)| match slot {
            Slot::Waiting(w) if !w.edited => Some((*job, *w)),
            _ => None,
        })
        .collect();
    let positions = if shown.is_empty() {
        None
    } else {
        match front.engine().queue_positions().await {
            Ok(positions) => Some(positions),
            Err(e) => {
                tracing::debug!(error = %e, "reading queue positions failed; next refresh retries");
                None
            }
        }
    };
    front
        .waiting()
        .lock()
        .retain(|job, slot| still_of_use(job, slot, positions.as_ref()));
    let Some(positions) = positions else {
        return;
    };
    // A message put off is worth sending while its job waits (those go first); one sent is
    // worth editing when its job moved a quarter closer, or into the top three. The biggest
    // moves go first and at most a few per refresh, so a long queue costs a bounded number of
    // sends instead of one per waiting user per refresh.
    let mut moves: Vec<(f64, JobId, Waiting, usize)> = shown
        .into_iter()
        .filter_map(|(job, entry)| {
            let now = *positions.get(&job)?;
            if entry.message.is_none() {
                // Put off: first, the longest waiting first.
                return Some((-1.0 - entry.sent.elapsed().as_secs_f64(), job, entry, now));
            }
            let worth = now * 4 <= entry.position * 3 || (now <= 3 && now != entry.position);
            worth.then(|| (now as f64 / entry.position.max(1) as f64, job, entry, now))
        })
        .collect();
    moves.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, job, entry, position) in moves.into_iter().take(EDITS_PER_REFRESH) {
        // Take the job's one progress message, unless its start took it meanwhile.
        match front.waiting().lock().get_mut(&job) {
            Some(Slot::Waiting(w)) if !w.edited => w.edited = true,
            _ => continue,
        }
        let text = texts::queued(entry.lang, position);
        let front = front.clone();
        match entry.message {
            Some(message) => {
                let edit = front.bot().edit_message_text(entry.chat, message, text);
                tokio::spawn(async move {
                    match send_progress(&front, entry.chat, edit).await {
                        // Remember what the message shows only once it shows it: a dropped
                        // edit is tried again at a later refresh.
                        Ok(Some(_)) => {
                            if let Some(Slot::Waiting(w)) = front.waiting().lock().get_mut(&job) {
                                w.position = position;
                            }
                        }
                        // Dropped or failed: the job's progress message is still to be had.
                        Ok(None) => release_progress(&front, job),
                        Err(e) => {
                            release_progress(&front, job);
                            tracing::debug!(error = %e, "position edit failed");
                        }
                    }
                });
            }
            None => {
                tokio::spawn(send_put_off(front, job, entry, position, text));
            }
        }
    }
}

/// A prompt's position put off while the budget was short, sent now that its job still waits,
/// as progress: dropped again while answers wait (the prompt was acknowledged by a chat action
/// when it was put off). Once sent it is the job's one progress message: its start edits
/// nothing, so a job still costs at most three sends.
async fn send_put_off(front: Front, job: JobId, entry: Waiting, position: usize, text: String) {
    let request = front.bot().send_message(entry.chat, text);
    match send_progress(&front, entry.chat, request).await {
        Ok(Some(sent)) => {
            if let Some(Slot::Waiting(w)) = front.waiting().lock().get_mut(&job) {
                w.message = Some(sent.id);
                w.position = position;
            }
        }
        // Dropped: tried again at a later refresh while the job waits.
        Ok(None) => release_progress(&front, job),
        // A new message is not sent twice (it may have arrived): the job goes without one.
        Err(e) => tracing::debug!(error = %e, "sending a put-off queue position failed"),
    }
}

/// Gives a job its progress message back after a position edit was dropped or failed.
fn release_progress(front: &Front, job: JobId) {
    if let Some(Slot::Waiting(w)) = front.waiting().lock().get_mut(&job) {
        w.edited = false;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use teloxide::types::{ChatId, MessageId};

    use super::*;
    use crate::{Lang, Waiting};

    fn message(sent_ago: Duration, edited: bool) -> Slot {
        Slot::Waiting(Waiting {
            chat: ChatId(1),
            message: Some(MessageId(1)),
            lang: Lang::En,
            position: 3,
            edited,
            sent: Instant::now()
                .checked_sub(sent_ago)
                .unwrap_or_else(Instant::now),
        })
    }

    /// Every kind of entry goes once it is of no use, so the map is bounded by the queue and five
    /// minutes of traffic, whatever ran elsewhere.
    #[test]
    fn entries_whose_jobs_ran_elsewhere_are_forgotten() {
        let (job, other) = (JobId(7), JobId(8));
        let queued: HashMap<JobId, usize> = [(job, 1)].into();
        let old = MARK_KEPT + Duration::from_secs(1);
        let fresh = Duration::from_secs(1);
        // A queue message whose job another replica ran: no event will ever remove it.
        assert!(!still_of_use(&other, &message(old, false), Some(&queued)));
        assert!(!still_of_use(&other, &message(old, true), None));
        // Still waiting in the queue, or the queue unread, or sent just now: kept.
        assert!(still_of_use(&job, &message(old, false), Some(&queued)));
        assert!(still_of_use(&other, &message(old, false), None));
        assert!(still_of_use(&other, &message(fresh, false), Some(&queued)));
        // Marks for handlers that never record a message.
        let long_ago = Instant::now().checked_sub(old).unwrap_or_else(Instant::now);
        assert!(!still_of_use(&other, &Slot::Started(long_ago), None));
        assert!(!still_of_use(&other, &Slot::Finished(long_ago), None));
        assert!(still_of_use(&other, &Slot::Finished(Instant::now()), None));
    }
}
