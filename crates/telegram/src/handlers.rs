//! Update handlers: commands, button presses and prompts.

use std::time::Instant;

use chrono::Utc;
use genbot_engine::GenerationRequest;
use genbot_store::UserId;
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::{CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup};

use crate::command::Input;
use crate::isolation::isolated;
use crate::pacing::send;
use crate::shared::account::{register, registered};
use crate::shared::buttons::Button;
use crate::shared::ids::{update_id, user_id};
use crate::shared::reply::{shorten, to_press as answer_press};
use crate::shared::{submit, HandlerError, HandlerResult};
use crate::texts::{self, Lang};
use crate::{payments, rerun, settings};
use crate::{BotApi, Front};

/// The dispatch tree: messages, button presses, pre-checkout queries and the bot's own
/// membership; other updates are counted and ignored (`run`'s default handler). Each endpoint
/// runs its handler [`isolated`]: it always returns `Ok`, the outcome is the isolation's.
pub(crate) fn schema() -> UpdateHandler<HandlerError> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_button))
        .branch(Update::filter_pre_checkout_query().endpoint(payments::on_pre_checkout))
        .branch(Update::filter_my_chat_member().endpoint(crate::membership::on_my_membership))
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
    if crate::shared::ids::is_group(&msg.chat) {
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
                    Button::Model(&model.id).data(),
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
            let stored = registered(front, from).await?;
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
        Input::Settings => settings::show(front, chat, from, lang).await?,
        Input::Prompt(prompt) => {
            let request = GenerationRequest {
                user,
                prompt: prompt.to_owned(),
                model: None,
                params: Default::default(),
                source_update: Some(update),
                reply: None,
            };
            submit::and_track(front, from, chat, lang, request).await?;
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
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let answer = match Button::parse(query.data.as_deref().unwrap_or_default()) {
        Button::Setting(data) => settings::press(front, query, data).await?,
        Button::Again(job) => rerun::again(front, query, job, false, update).await?,
        Button::SameSeed(job) => rerun::again(front, query, job, true, update).await?,
        Button::AsFile(job) => rerun::as_file_pressed(front, query, job).await?,
        Button::Older(job) => rerun::older(front, query, job).await?,
        Button::Buy(package) => payments::package_pressed(front, query, package).await?,
        Button::Model(model) => return model_pressed(front, query, model).await,
        // No button of ours has this data (or none): stale, or forged.
        Button::Unknown => texts::button_expired(lang),
    };
    answer_press(front, query, answer).await
}

/// A `/models` button: the model chosen, said to the presser and shown in their own chat.
async fn model_pressed(front: &Front, query: &CallbackQuery, model_id: &str) -> HandlerResult {
    let bot: &BotApi = front.bot();
    let user = user_id(&query.from);
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let engine = front.engine();
    let Some(model) = engine.catalogue().get(model_id).filter(|m| m.enabled) else {
        // Stale (a model since withdrawn) or forged: said to the presser alone, and the
        // message, which others may see, is left as it is.
        let unavailable = texts::model_unavailable(lang, &shorten(model_id, 64));
        return answer_press(front, query, unavailable).await;
    };
    registered(front, &query.from).await?;
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
