//! Submitting a generation, however it was asked for (a prompt, a photo, a re-run): the user
//! registered on the spot if need be, then in a private chat a queue-position message the
//! delivery task keeps current, in a group nothing but a refusal. A handler never waits for
//! the generation itself.

use genbot_engine::{GenerationRequest, SubmitError, Submitted};
use genbot_store::ReplyTarget;
use teloxide::prelude::*;
use teloxide::types::{ChatAction, User as TgUser};

use super::account::register;
use super::ids::user_id;
use super::{reply, HandlerError, HandlerResult};
use crate::pacing::{send, send_acknowledgement};
use crate::texts::{self, Lang};
use crate::{Front, Slot, Waiting};

/// A prompt's request from `from` in `update` (the user's model and settings; a replay finds
/// its job by the update), its result sent to `reply` when given.
pub(crate) fn prompt_request(
    from: &TgUser,
    prompt: &str,
    update: i64,
    reply: Option<ReplyTarget>,
) -> GenerationRequest {
    GenerationRequest {
        user: user_id(from),
        prompt: prompt.to_owned(),
        model: None,
        params: Default::default(),
        source_update: Some(update),
        reply,
    }
}

/// Submits a generation; a user who never sent /start is registered on the spot rather than
/// sent back. The outer error is the registration's, the inner the engine's refusal.
pub(crate) async fn registering(
    front: &Front,
    from: &TgUser,
    request: GenerationRequest,
) -> Result<Result<Submitted, SubmitError>, HandlerError> {
    let submitted = front.engine().submit(request.clone()).await;
    if matches!(submitted, Err(SubmitError::NotRegistered)) {
        register(front, from).await?;
        return Ok(front.engine().submit(request).await);
    }
    Ok(submitted)
}

/// What [`and_track`] told the user: queued, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Told {
    /// Queued now, or by this update before (a replay).
    Queued,
    /// Refused; the chat was told why.
    Refused,
}

/// Submits a generation (a prompt, or a re-run) and answers with its queue position, which the
/// delivery task keeps current; while the send budget is short the position waits for a
/// refresh (see [`crate::pacing::send_acknowledgement`]).
pub(crate) async fn and_track(
    front: &Front,
    from: &TgUser,
    chat: ChatId,
    lang: Lang,
    request: GenerationRequest,
) -> Result<Told, HandlerError> {
    let bot = front.bot();
    let submitted = match registering(front, from, request).await? {
        Ok(accepted) => {
            let position = accepted.position;
            if let Some(note) = removed_model_note(front, lang, &accepted) {
                // The job is in whatever becomes of the note: a failed send is not retried.
                if let Err(e) = send(front, chat, bot.send_message(chat, note)).await {
                    tracing::warn!(error = %e, "the removed model's note was not sent");
                }
            }
            // Put off while the budget is short: other users' answers go first, and the image
            // comes anyway (a refresh sends the position if the job still waits then).
            let sent = send_acknowledgement(
                front,
                chat,
                bot.send_message(chat, texts::queued(lang, position)),
            )
            .await?;
            if sent.is_none() {
                // Put off: the client shows "sending a photo…" meanwhile. A chat action is no
                // message (outside the send budget), so the prompt is acknowledged at once.
                let action = bot.send_chat_action(chat, ChatAction::UploadPhoto);
                if let Err(e) = crate::pacing::call(front, action).await {
                    tracing::debug!(error = %e, "the put-off prompt's chat action failed");
                }
            }
            let waiting = Waiting {
                chat,
                message: sent.map(|sent| sent.id),
                lang,
                position,
                edited: false,
                sent: std::time::Instant::now(),
            };
            let earlier = {
                let mut slots = front.waiting().lock();
                let earlier = slots.remove(&accepted.job);
                match &earlier {
                    Some(Slot::Finished(_)) => {}
                    // Started before a message was had: none will be, the image comes first.
                    Some(Slot::Started(_)) if waiting.message.is_none() => {}
                    _ => {
                        // A job that started first gets its one progress message here.
                        let edited = matches!(earlier, Some(Slot::Started(_)));
                        slots.insert(accepted.job, Slot::Waiting(Waiting { edited, ..waiting }));
                    }
                }
                earlier
            };
            if let (Some(Slot::Started(_)), Some(message)) = (&earlier, waiting.message) {
                crate::pacing::send_progress(
                    front,
                    chat,
                    bot.edit_message_text(chat, message, texts::generating(lang)),
                )
                .await?;
            }
            Told::Queued
        }
        Err(SubmitError::AlreadySubmitted(job)) => {
            // A replay after a crash: the job runs (or ran) and its result comes from the outbox.
            tracing::info!(job_id = job.0, "replayed prompt: its job exists already");
            Told::Queued
        }
        // The database did not answer: the prompt is tried again (the isolation's backoff).
        Err(SubmitError::Store(e)) if e.is_transient() => return Err(e.into()),
        Err(refusal) => {
            if matches!(refusal, SubmitError::Store(_) | SubmitError::ShuttingDown) {
                tracing::error!(error = %refusal, "submit failed");
            }
            send(
                front,
                chat,
                bot.send_message(chat, texts::refused(lang, &refusal)),
            )
            .await?;
            Told::Refused
        }
    };
    Ok(submitted)
}

/// The note that a job runs on the default model because the user's chosen one was removed.
fn removed_model_note(front: &Front, lang: Lang, accepted: &Submitted) -> Option<String> {
    let removed = accepted.instead_of_removed.as_deref()?;
    let default = &front.engine().catalogue().default_model().name;
    Some(texts::chosen_model_removed(lang, removed, default))
}

/// Submits a generation asked for in a group: no queue message (the group's 20 a minute are
/// kept for results); a refusal is a reply to the asking message.
pub(crate) async fn to_group(
    front: &Front,
    msg: &Message,
    from: &TgUser,
    lang: Lang,
    request: GenerationRequest,
) -> HandlerResult {
    match registering(front, from, request).await? {
        Ok(accepted) => {
            if let Some(note) = removed_model_note(front, lang, &accepted) {
                // The job is in whatever becomes of the note.
                if let Err(e) = reply::in_group(front, msg, note).await {
                    tracing::warn!(error = %e, "the removed model's note was not sent");
                }
            }
            Ok(())
        }
        Err(SubmitError::AlreadySubmitted(_)) => Ok(()),
        Err(SubmitError::Store(e)) if e.is_transient() => Err(e.into()),
        Err(refusal) => reply::in_group(front, msg, texts::refused(lang, &refusal)).await,
    }
}
