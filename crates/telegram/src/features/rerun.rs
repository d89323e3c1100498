//! Past images: the buttons under every delivered image ("again" with a new seed, "same seed",
//! "as file" with the original bytes, then by the document's `file_id`) and `/history`, which
//! re-sends images by their stored `file_id` (no new generation), a page at a time: as photos,
//! or as documents where they were delivered as documents.
//!
//! A re-run is a new job submitted like a prompt, carrying the button press's update id: a
//! press replayed after a crash finds its job instead of charging twice.
//!
//! Imports the shared layer, never another feature or the router.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use genbot_engine::{GenerationRequest, SubmitError};
use genbot_store::{HistoryItem, JobId, UserId};
use serde_json::{Map, Value};
use teloxide::prelude::*;
use teloxide::types::{
    CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId,
    ReplyParameters,
};
use teloxide::RequestError;

use crate::pacing::{send, send_reading};
use crate::shared::buttons::{result_keyboard, Button};
use crate::shared::ids::{is_group, press_chat, reply_target, user_id};
use crate::shared::reply::{caption, shorten};
use crate::shared::{submit, HandlerError};
use crate::texts::{self, Lang};
use crate::Front;

/// A second "again" press on one image within this long of the first's re-run being queued
/// is taken for a double tap (one re-run is queued and charged); a deliberate second press
/// comes later, once the first image has been seen.
const DOUBLE_TAP: Duration = Duration::from_secs(1);

/// One press's target: a user's "again" (or "same seed") under one message showing one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DoubleTap {
    user: i64,
    chat: i64,
    message: i32,
    job: i64,
    keep_seed: bool,
}

/// The re-run presses being handled or queued lately, each with the update that claimed it.
/// In memory: a press replayed after a crash, or handled by another replica, is not seen.
#[derive(Debug, Default)]
pub(crate) struct DoubleTaps(parking_lot::Mutex<HashMap<DoubleTap, (Instant, i64)>>);

impl DoubleTaps {
    /// Whether `update` may re-run `tap`: nobody claimed it within [`DOUBLE_TAP`], or `update`
    /// did (its retry). Claims it for `update` if so.
    pub(crate) fn claim(&self, tap: DoubleTap, update: i64) -> bool {
        let mut claims = self.0.lock();
        let now = Instant::now();
        claims.retain(|_, (at, _)| now.duration_since(*at) < DOUBLE_TAP);
        match claims.get(&tap) {
            Some((_, by)) if *by != update => false,
            _ => {
                claims.insert(tap, (now, update));
                true
            }
        }
    }

    /// `update`'s re-run of `tap` was queued: the window starts now (a first press waiting for
    /// the send budget, its claim perhaps swept meanwhile, must not let its double tap through
    /// once it is answered).
    pub(crate) fn queued(&self, tap: DoubleTap, update: i64) {
        self.0.lock().insert(tap, (Instant::now(), update));
    }

    /// `update`'s re-run of `tap` was refused: the next press is no double tap.
    pub(crate) fn release(&self, tap: DoubleTap, update: i64) {
        let mut claims = self.0.lock();
        if claims.get(&tap).is_some_and(|(_, by)| *by == update) {
            claims.remove(&tap);
        }
    }
}

/// Images `/history` sends per page.
const PAGE: u32 = 5;
/// `/history`: a page of the user's images, newest first, older than `before`.
pub(crate) async fn show_history(
    front: &Front,
    chat: ChatId,
    lang: Lang,
    user: UserId,
    before: Option<JobId>,
) -> Result<(), HandlerError> {
    let bot = front.bot();
    let page = front.engine().store().history(user, before, PAGE).await?;
    let mut shown = 0;
    for item in &page {
        match resend(front, chat, lang, item).await {
            Ok(()) => shown += 1,
            // One image Telegram no longer takes by its id (before results sent as documents
            // kept their id apart, a document's id was kept as the photo's) costs only itself.
            Err(error @ RequestError::Api(_)) if !crate::pacing::is_blocked(&error) => {
                tracing::warn!(job_id = item.job.0, %error, "a history image was refused by its file_id; left out");
            }
            Err(other) => return Err(other.into()),
        }
    }
    if shown == 0 && page.len() < PAGE as usize {
        // Nothing (more) to show, or every image left was refused: the user is told the list
        // ended, not left with nothing.
        let text = if before.is_none() {
            texts::history_empty(lang)
        } else {
            texts::history_end(lang)
        };
        send(front, chat, bot.send_message(chat, text)).await?;
    }
    if page.len() == PAGE as usize {
        let oldest = page.last().map_or(0, |item| item.job.0);
        let more = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
            texts::older_button(lang),
            Button::Older(JobId(oldest)).data(),
        )]]);
        send(
            front,
            chat,
            bot.send_message(chat, texts::history_more(lang))
                .reply_markup(more),
        )
        .await?;
    }
    Ok(())
}

async fn resend(
    front: &Front,
    chat: ChatId,
    lang: Lang,
    item: &HistoryItem,
) -> Result<(), RequestError> {
    let file = InputFile::file_id(item.file_id.clone().into());
    let text = format!(
        "{} · {}",
        item.created_at.format("%Y-%m-%d"),
        caption(&item.prompt)
    );
    let bot = front.bot();
    let keyboard = result_keyboard(lang, item.job);
    // A result delivered as a document (too big for a photo, or refused as one) is re-sent as
    // one: Telegram refuses a document's id as a photo.
    let document = |keyboard| {
        let document = bot.send_document(chat, file.clone());
        send(
            front,
            chat,
            document.caption(caption(&text)).reply_markup(keyboard),
        )
    };
    if item.as_document {
        document(keyboard).await?;
        return Ok(());
    }
    let photo = bot.send_photo(chat, file.clone());
    let sent = send(
        front,
        chat,
        photo.caption(caption(&text)).reply_markup(keyboard.clone()),
    )
    .await;
    match sent {
        // A document's id kept as a photo's by a build before documents kept theirs apart.
        Err(RequestError::Api(teloxide::ApiError::Unknown(description)))
            if description.contains("type Document as Photo") =>
        {
            document(keyboard).await?;
        }
        other => {
            other?;
        }
    }
    Ok(())
}

/// The presser's own private chat, their language and id; `None` for a press anywhere else:
/// files and history go to the presser's own chat only, and a press elsewhere was forged.
fn own_chat(query: &CallbackQuery) -> Option<(ChatId, Lang, UserId)> {
    let user = user_id(&query.from);
    let chat = press_chat(query);
    let lang = Lang::from_code(query.from.language_code.as_deref());
    (chat.0 == user.0).then_some((chat, lang, user))
}

/// "As file" under an image. Returns the text the press is answered with. In a private chat
/// the file comes there; under a result in a group, to the group as a reply to the image (the
/// presser may never have opened a private chat with the bot), for its requester alone.
pub(crate) async fn as_file_pressed(
    front: &Front,
    query: &CallbackQuery,
    job: JobId,
) -> Result<String, HandlerError> {
    let user = user_id(&query.from);
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let under_group_result = query.message.as_ref().filter(|m| is_group(m.chat()));
    if let Some(message) = under_group_result {
        let Some(past) = own_job(front, user, job).await? else {
            return Ok(texts::not_your_result(lang));
        };
        return as_file(front, message.chat().id, lang, past, Some(message.id())).await;
    }
    // Anywhere else but the presser's own private chat, the press was forged.
    let Some((chat, lang, user)) = own_chat(query) else {
        return Ok(String::new());
    };
    let Some(past) = own_job(front, user, job).await? else {
        return Ok(texts::not_yours(lang));
    };
    as_file(front, chat, lang, past, None).await
}

/// "Older" under a `/history` page: the next page. Returns the text the press is answered with.
pub(crate) async fn older(
    front: &Front,
    query: &CallbackQuery,
    before: JobId,
) -> Result<String, HandlerError> {
    let Some((chat, lang, user)) = own_chat(query) else {
        return Ok(String::new());
    };
    show_history(front, chat, lang, user, Some(before)).await?;
    Ok(String::new())
}

/// The inputs a past job ran with, as overrides for a new one (`prompt` aside; `seed` too
/// unless it is to be kept).
fn rerun_params(params: &Value, keep_seed: bool) -> Map<String, Value> {
    let mut params = params.as_object().cloned().unwrap_or_default();
    params.remove("prompt");
    if !keep_seed {
        params.remove("seed");
    }
    params
}

/// "Again" under an image, with a new seed or (`keep_seed`) the same one: a new job of the
/// same inputs. Returns the text the press is answered with.
pub(crate) async fn again(
    front: &Front,
    query: &CallbackQuery,
    job: JobId,
    keep_seed: bool,
    update: i64,
) -> Result<String, HandlerError> {
    let user = user_id(&query.from);
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let chat = press_chat(query);
    let Some(past) = own_job(front, user, job).await? else {
        return Ok(texts::not_yours(lang));
    };
    // A double tap's second press (on the same message) finds the first's claim: it is
    // handled after the first (a chat's presses run in order), or beside it (presses on inline
    // messages have no chat). A retry of the same press keeps its claim; a refusal gives it up.
    let tap = DoubleTap {
        user: user.0,
        chat: chat.0,
        message: query.message.as_ref().map_or(0, |m| m.id().0),
        job: job.0,
        keep_seed,
    };
    if !front.double_taps().claim(tap, update) {
        return Ok(texts::rerun_double_tap(lang));
    }
    let queued = || front.double_taps().queued(tap, update);
    let refused = || front.double_taps().release(tap, update);
    // Pressed under a result in a group: the new one goes there too.
    let request = GenerationRequest {
        user,
        prompt: past.prompt.clone(),
        model: Some(past.model.clone()),
        params: rerun_params(&past.params, keep_seed),
        source_update: Some(update),
        reply: query
            .message
            .as_ref()
            .filter(|m| is_group(m.chat()))
            .map(|m| reply_target(m.chat(), m.id())),
    };
    if request.reply.is_some() {
        // In a group: no queue message (the group's 20 a minute are kept for results); a
        // refusal is told to the presser alone, in the press's answer.
        let submitted = submit::registering(front, &query.from, request).await;
        return Ok(match failed_kept(submitted, queued)? {
            Ok(_) | Err(SubmitError::AlreadySubmitted(_)) => {
                queued();
                texts::rerun_queued(lang)
            }
            // A press's answer holds at most 200 characters.
            Err(refusal) => {
                refused();
                shorten(&texts::refused(lang, &refusal), 190)
            }
        });
    }
    // A refusal was told in the chat; the press's answer must not say "Queued" beside it.
    let submitted = submit::and_track(front, &query.from, chat, lang, request).await;
    Ok(match failed_kept(submitted, queued)? {
        submit::Told::Queued => {
            queued();
            texts::rerun_queued(lang)
        }
        submit::Told::Refused => {
            refused();
            texts::rerun_not_queued(lang)
        }
    })
}

/// `submitted`, with a failed press's claim kept as if its re-run were queued: the job may
/// be in (an answer failing after it was), and the press's own retry passes its claim.
fn failed_kept<T>(
    submitted: Result<T, HandlerError>,
    queued: impl FnOnce(),
) -> Result<T, HandlerError> {
    if submitted.is_err() {
        queued();
    }
    submitted
}

/// Job `job` if `user` asked for it.
async fn own_job(
    front: &Front,
    user: UserId,
    job: JobId,
) -> Result<Option<genbot_store::Job>, HandlerError> {
    let found = front.engine().store().get_job(job).await?;
    Ok(found.filter(|j| j.user_id == user))
}

/// "As file" of `past` (the presser's own job) to `chat`, as a reply to `reply_to` when given:
/// by the document's `file_id` once Telegram has given one (no upload, and it outlives the
/// original's day), else the original bytes, keeping the `file_id` they get.
async fn as_file(
    front: &Front,
    chat: ChatId,
    lang: Lang,
    past: genbot_store::Job,
    reply_to: Option<MessageId>,
) -> Result<String, HandlerError> {
    let job = past.id;
    let store = front.engine().store();
    let document = |input: InputFile| {
        let mut request = front
            .bot()
            .send_document(chat, input)
            .caption(caption(&past.prompt));
        if let Some(message) = reply_to {
            request = request
                .reply_parameters(ReplyParameters::new(message).allow_sending_without_reply());
        }
        request
    };
    if let Some(file_id) = store.job_document(job).await? {
        match send(front, chat, document(InputFile::file_id(file_id.into()))).await {
            Ok(_) => return Ok(texts::file_sent(lang)),
            // Telegram no longer knows the id: upload the original while it is kept.
            Err(RequestError::Api(error)) => {
                tracing::warn!(job_id = job.0, %error, "a kept document file_id was refused; uploading the original");
            }
            Err(other) => return Err(other.into()),
        }
    }
    let Some(image) = store.job_image(job).await? else {
        return Ok(texts::original_gone(lang));
    };
    let input = InputFile::memory(image.bytes).file_name(image.file_name);
    let sent = send_reading(front, chat, document(input)).await?;
    if let Some(sent) = sent.document() {
        // The file reached the user; failing to keep its id only costs the next upload.
        if let Err(error) = store
            .keep_job_document(job, &sent.file.id.to_string())
            .await
        {
            tracing::warn!(job_id = job.0, %error, "could not keep the document's file_id");
        }
    }
    Ok(texts::file_sent(lang))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_double_tap_waits_for_the_window_while_a_retry_and_a_refusal_pass() {
        let taps = DoubleTaps::default();
        let tap = |message| DoubleTap {
            user: 1,
            chat: 1,
            message,
            job: 7,
            keep_seed: false,
        };
        assert!(taps.claim(tap(10), 100));
        assert!(
            taps.claim(tap(10), 100),
            "a retry of the same press was refused"
        );
        assert!(!taps.claim(tap(10), 101), "a double tap passed");
        assert!(
            taps.claim(tap(11), 102),
            "another message's press is no double tap"
        );
        taps.queued(tap(10), 100);
        assert!(!taps.claim(tap(10), 103));
        taps.release(tap(10), 103);
        assert!(
            !taps.claim(tap(10), 104),
            "another update's release freed the claim"
        );
        taps.release(tap(10), 100);
        assert!(taps.claim(tap(10), 105), "a refused press kept its claim");
    }

    #[test]
    fn a_rerun_keeps_every_input_but_the_prompt_and_maybe_the_seed() {
        let past = serde_json::json!({"prompt": "a fox", "seed": 7, "aspect_ratio": "16:9"});
        let again = rerun_params(&past, false);
        assert_eq!(again.len(), 1);
        assert_eq!(again["aspect_ratio"], "16:9");
        let same = rerun_params(&past, true);
        assert_eq!((same.len(), &same["seed"]), (2, &Value::from(7)));
    }
}
