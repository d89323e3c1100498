//! Update handlers: commands, button presses and prompts.

use std::time::Instant;

use chrono::Utc;
use genbot_engine::{GenerationRequest, SubmitError, Submitted};
use genbot_store::{NewUser, User, UserId};
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::{CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, User as TgUser};

use crate::command::Input;
use crate::isolation::isolated;
use crate::pacing::send;
use crate::texts::{self, Lang};
use crate::{payments, rerun, settings};
use crate::{BotApi, Front, Slot, Waiting};

/// What a handler may fail with (logged by the dispatcher's error handler).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type HandlerResult = Result<(), HandlerError>;

/// Callback data prefix of the `/models` buttons.
const MODEL_BUTTON: &str = "model:";

/// The dispatch tree: messages, button presses, pre-checkout queries and the bot's own
/// membership; other updates are counted and ignored (`run`'s default handler). Each endpoint
/// runs its handler [`isolated`]: it always returns `Ok`, the outcome is the isolation's.
pub fn schema() -> UpdateHandler<HandlerError> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_button))
        .branch(Update::filter_pre_checkout_query().endpoint(payments::on_pre_checkout))
        .branch(Update::filter_my_chat_member().endpoint(crate::membership::on_my_membership))
}

pub(crate) fn user_id(from: &TgUser) -> UserId {
    UserId(i64::try_from(from.id.0).unwrap_or(i64::MAX))
}

/// The update's id as the inbox and the jobs store it.
fn update_id(update: &Update) -> i64 {
    i64::from(update.id.0)
}

async fn on_message(front: Front, msg: Message, update: Update) -> HandlerResult {
    let started = Instant::now();
    let delay = front.config().handler_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    isolated(
        &front,
        &update,
        handle_message(&front, &msg, update_id(&update)),
    )
    .await;
    front.metrics().observe(started.elapsed());
    Ok(())
}

#[tracing::instrument(skip_all, fields(user_id))]
async fn handle_message(front: &Front, msg: &Message, update: i64) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        // Telegram leaves `from` out only of channel messages: nobody to answer.
        front.metrics().ignored("message_without_from");
        return Ok(());
    };
    let user = user_id(from);
    tracing::Span::current().record("user_id", user.0);
    if front.config().poison.is_some() && msg.text() == front.config().poison.as_deref() {
        panic!("the test's poison message");
    }
    let lang = Lang::from_code(from.language_code.as_deref());
    let bot = front.bot();
    let chat = msg.chat.id;
    if let Some(payment) = msg.successful_payment() {
        // Money already taken: never skipped by the flood limit.
        return payments::paid(front, chat, from, lang, payment).await;
    }
    if crate::groups::is_group(&msg.chat) {
        return crate::groups::group_message(front, msg, from, lang, update).await;
    }
    if msg.photo().is_some() {
        if !front.album_photo_due(msg) {
            // An album arrives as one message per photo: one answer for the album.
            front.metrics().ignored("album_photo");
            return Ok(());
        }
        return crate::img2img::photo_received(front, msg, from, lang, update, msg.caption()).await;
    }
    let Some(text) = msg.text() else {
        // Stickers, voice, video, documents, locations, polls…: what the bot can do instead.
        front
            .metrics()
            .unsupported(crate::isolation::message_kind(msg));
        send(front, chat, bot.send_message(chat, texts::help(lang))).await?;
        return Ok(());
    };
    let engine = front.engine();
    match Input::parse(text) {
        Input::Start => {
            let stored = register(front, from).await?;
            let daily = engine.config().daily_limit;
            send(
                front,
                chat,
                bot.send_message(
                    chat,
                    texts::welcome(lang, &from.first_name, stored.credits, daily),
                ),
            )
            .await?;
        }
        Input::Help => {
            send(front, chat, bot.send_message(chat, texts::help(lang))).await?;
        }
        Input::Models => {
            let current = engine
                .users()
                .get(user)
                .await?
                .and_then(|u| u.selected_model);
            let current = current.unwrap_or_else(|| engine.catalogue().default_model().id.clone());
            let rows = engine.catalogue().enabled().map(|model| {
                let mark = if model.id == current { "✅ " } else { "" };
                vec![InlineKeyboardButton::callback(
                    format!("{mark}{} · {}", model.name, model.cost),
                    format!("{MODEL_BUTTON}{}", model.id),
                )]
            });
            send(
                front,
                chat,
                bot.send_message(chat, texts::choose_model(lang))
                    .reply_markup(InlineKeyboardMarkup::new(rows)),
            )
            .await?;
        }
        Input::Balance => {
            let stored = match engine.users().get(user).await? {
                Some(stored) => stored,
                None => register(front, from).await?,
            };
            let limit = engine.config().daily_limit;
            let today = Utc::now().date_naive();
            let remaining = limit.saturating_sub(stored.used_on(today));
            let resets_at = today
                .succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or_else(Utc::now, |d| d.and_utc());
            let mut text = texts::balance(lang, stored.credits, remaining, limit, resets_at);
            text.push_str(&payments::recent_movements(front, lang, user).await);
            send(front, chat, bot.send_message(chat, text)).await?;
        }
        Input::Buy => payments::show_packages(front, chat, lang).await?,
        Input::PaySupport => payments::support(front, chat, lang, user).await?,
        Input::Refund(args) if front.is_admin(user.0) => {
            payments::refund(front, chat, lang, args).await?;
        }
        Input::Ban(ban, args) if front.is_admin(user.0) => {
            let text = match args.trim().parse::<i64>() {
                Ok(target) => match engine.users().set_banned(UserId(target), ban).await {
                    Ok(_) => texts::ban_done(lang, target, ban),
                    Err(genbot_store::StoreError::UserNotFound(_)) => {
                        texts::ban_unknown_user(lang, target)
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(_) => texts::ban_usage(lang),
            };
            send(front, chat, bot.send_message(chat, text)).await?;
        }
        Input::Broadcast(text) if front.is_admin(user.0) => {
            crate::broadcast::start(front, chat, lang, user, text, update).await?;
        }
        Input::Refund(_) | Input::Ban(..) | Input::Broadcast(_) => {
            send(
                front,
                chat,
                bot.send_message(chat, texts::admins_only(lang)),
            )
            .await?;
        }
        Input::Cancel => {
            let text = match engine.cancel_latest(user).await {
                Ok(job) => {
                    front.waiting().lock().remove(&job);
                    texts::canceled(lang)
                }
                Err(e) => texts::cancel_refused(lang, &e),
            };
            send(front, chat, bot.send_message(chat, text)).await?;
        }
        Input::Stats if front.is_admin(user.0) => {
            send(
                front,
                chat,
                bot.send_message(chat, stats_text(front).await?),
            )
            .await?;
        }
        Input::Stats | Input::Unknown => {
            send(
                front,
                chat,
                bot.send_message(chat, texts::unknown_command(lang)),
            )
            .await?;
        }
        Input::History => rerun::show_history(front, chat, lang, user, None).await?,
        Input::Settings => {
            let stored = match engine.users().get(user).await? {
                Some(stored) => stored,
                None => register(front, from).await?,
            };
            settings::show(front, chat, lang, &stored).await?;
        }
        Input::Prompt(prompt) => {
            let request = GenerationRequest {
                user,
                prompt: prompt.to_owned(),
                model: None,
                params: Default::default(),
                source_update: Some(update),
                reply: None,
            };
            submit_and_track(front, from, chat, lang, request).await?;
        }
    }
    Ok(())
}

/// At most `max` characters of `text`, with `…` when cut (user-supplied data echoed back).
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// The chat a button was pressed in (the presser's private chat when Telegram no longer says).
pub(crate) fn press_chat(query: &CallbackQuery) -> ChatId {
    query
        .message
        .as_ref()
        .map_or_else(|| ChatId(user_id(&query.from).0), |m| m.chat().id)
}

pub(crate) async fn register(front: &Front, from: &TgUser) -> Result<User, HandlerError> {
    Ok(front
        .engine()
        .users()
        .upsert(NewUser {
            id: user_id(from),
            username: from.username.clone(),
            language: from.language_code.clone(),
            initial_credits: front.config().initial_credits,
        })
        .await?)
}

/// Submits a generation; a user who never sent /start is registered on the spot rather than
/// sent back. The outer error is the registration's, the inner the engine's refusal.
pub(crate) async fn submit_registering(
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

/// Submits a generation (a prompt, or a re-run) and answers with its queue position, which the
/// delivery task keeps current.
pub(crate) async fn submit_and_track(
    front: &Front,
    from: &TgUser,
    chat: ChatId,
    lang: Lang,
    request: GenerationRequest,
) -> HandlerResult {
    let bot = front.bot();
    match submit_registering(front, from, request).await? {
        Ok(accepted) => {
            let position = accepted.position;
            let sent = send(
                front,
                chat,
                bot.send_message(chat, texts::queued(lang, position)),
            )
            .await?;
            let waiting = Waiting {
                chat,
                message: sent.id,
                lang,
                position,
                edited: false,
                sent: std::time::Instant::now(),
            };
            let earlier = {
                let mut slots = front.waiting().lock();
                let earlier = slots.remove(&accepted.job);
                if !matches!(earlier, Some(Slot::Finished(_))) {
                    // A job that started first gets its one progress message here.
                    let edited = matches!(earlier, Some(Slot::Started(_)));
                    slots.insert(accepted.job, Slot::Waiting(Waiting { edited, ..waiting }));
                }
                earlier
            };
            if matches!(earlier, Some(Slot::Started(_))) {
                crate::pacing::send_progress(
                    front,
                    chat,
                    bot.edit_message_text(chat, sent.id, texts::generating(lang)),
                )
                .await?;
            }
        }
        Err(SubmitError::AlreadySubmitted(job)) => {
            // A replay after a crash: the job runs (or ran) and its result comes from the outbox.
            tracing::info!(job_id = job.0, "replayed prompt: its job exists already");
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
        }
    }
    Ok(())
}

async fn stats_text(front: &Front) -> Result<String, HandlerError> {
    let engine = front.engine();
    let store = engine.store();
    let users = store.count_users().await?;
    let dead = store.count_dead_letters().await?;
    let jobs = store.count_jobs_by_status().await?;
    let stats = engine.stats();
    let cache = engine.users().stats();
    let limiter = stats.limiter.map_or_else(
        || "none".to_owned(),
        |l| {
            let fallbacks = if l.fallbacks > 0 {
                format!(", {} decided locally (Redis did not answer)", l.fallbacks)
            } else {
                String::new()
            };
            format!(
                "{}/min, {} admitted, {} waited{fallbacks}",
                l.per_minute, l.admitted, l.waited
            )
        },
    );
    Ok(format!(
        "users: {users}\njobs: queued {} · running {} · succeeded {} · failed {} · canceled {}\n\
         queue: {} waiting\nsemaphore: {} of {} in flight (max {}), per user {}\n\
         rate limiter: {limiter}\ncache ({}): hit rate {:.1} %\nupdates handled: {}\n\
         dead letters: {dead} (genbot inbox list) · handler panics: {} · shed: {}",
        jobs.queued,
        jobs.running,
        jobs.succeeded,
        jobs.failed,
        jobs.canceled,
        stats.queue_length,
        stats.in_flight,
        stats.limit,
        stats.max_in_flight,
        stats.per_user_limit,
        engine.users().cache().kind(),
        cache.hit_rate() * 100.0,
        front.metrics().updates(),
        front.metrics().handler_panics(),
        front.metrics().updates_shed(),
    ))
}

async fn on_button(front: Front, query: CallbackQuery, update: Update) -> HandlerResult {
    let started = Instant::now();
    isolated(
        &front,
        &update,
        handle_button(&front, &query, update_id(&update)),
    )
    .await;
    front.metrics().observe(started.elapsed());
    Ok(())
}

async fn handle_button(front: &Front, query: &CallbackQuery, update: i64) -> HandlerResult {
    let bot: &BotApi = front.bot();
    let user = user_id(&query.from);
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let handled = match settings::on_press(front, query).await {
        Some(handled) => Some(handled),
        None => rerun::on_press(front, query, update).await,
    };
    if let Some(handled) = handled {
        return answer_press(front, query, handled?).await;
    }
    if let Some(package) = query
        .data
        .as_deref()
        .and_then(|d| d.strip_prefix(payments::BUY_BUTTON))
    {
        // Invoices go to the buyer's own chat only: a press elsewhere was forged.
        if press_chat(query).0 != user.0 {
            return answer_press(front, query, texts::button_expired(lang)).await;
        }
        let text = payments::send_invoice(front, press_chat(query), lang, package).await?;
        return answer_press(front, query, text).await;
    }
    let Some(model_id) = query
        .data
        .as_deref()
        .and_then(|d| d.strip_prefix(MODEL_BUTTON))
    else {
        // No button of ours has this data (or none): stale, or forged.
        return answer_press(front, query, texts::button_expired(lang)).await;
    };
    let engine = front.engine();
    let Some(model) = engine.catalogue().get(model_id).filter(|m| m.enabled) else {
        // Stale (a model since withdrawn) or forged: said to the presser alone, and the
        // message, which others may see, is left as it is.
        let unavailable = texts::model_unavailable(lang, &shorten(model_id, 64));
        return answer_press(front, query, unavailable).await;
    };
    if engine.users().get(user).await?.is_none() {
        register(front, &query.from).await?;
    }
    engine
        .users()
        .set_selected_model(user, Some(model.id.clone()))
        .await?;
    let text = texts::model_chosen(lang, &model.name);
    answer_press(front, query, text.clone()).await?;
    // Only the presser's own private chat shows the choice: a /models list is sent nowhere
    // else, and a press on anything else was forged.
    if let Some(message) = query.message.as_ref().filter(|m| m.chat().id.0 == user.0) {
        send(
            front,
            message.chat().id,
            bot.edit_message_text(message.chat().id, message.id(), text),
        )
        .await?;
    }
    Ok(())
}

/// Answers a press, to the presser alone: `text` shown (nothing when empty).
async fn answer_press(front: &Front, query: &CallbackQuery, text: String) -> HandlerResult {
    let mut answer = front.bot().answer_callback_query(query.id.clone());
    if !text.is_empty() {
        answer = answer.text(text);
    }
    crate::pacing::call(front, answer).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shorten;

    proptest::proptest! {
        /// User text echoed back (a forged model id, a prompt in a caption) is cut on a
        /// character boundary: at most `max` characters and the ellipsis, a prefix of the text.
        #[test]
        fn echoed_text_is_cut_on_characters(
            text in crate::command::arbitrary_text(),
            max in 0usize..80,
        ) {
            let short = shorten(&text, max);
            let kept = short.strip_suffix('…').unwrap_or(&short);
            proptest::prop_assert!(text.starts_with(kept));
            proptest::prop_assert!(kept.chars().count() <= max);
        }
    }
}
