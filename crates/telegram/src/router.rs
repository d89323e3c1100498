//! The router: reads what an update is (its kind; for a message, its chat and command, through
//! [`crate::command`]; for a press, its button, through [`Button`]) and hands it to exactly one
//! feature function. It answers nothing itself, and each endpoint runs its handler
//! [`isolated`]: it always returns `Ok`, the outcome is the isolation's.
//!
//! Owns the dispatch tree ([`schema`]) and who may use an admin command; what a command does is
//! its feature's. Features never import the router.

use std::time::Instant;

use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::{CallbackQuery, ChatMemberUpdated, PreCheckoutQuery, User as TgUser};

use crate::command::{GroupInput, Input};
use crate::features::{
    admin, balance, broadcast, groups, help, img2img, membership, models, payments, prompt, rerun,
    settings,
};
use crate::isolation::isolated;
use crate::shared::buttons::Button;
use crate::shared::ids::{from_no_person, is_group, update_id, user_id};
use crate::shared::reply::to_press;
use crate::shared::{HandlerError, HandlerResult};
use crate::texts::{self, Lang};
use crate::Front;

/// The dispatch tree: messages, button presses, pre-checkout queries and the bot's own
/// membership; other updates are counted and ignored (`run`'s default handler).
pub(crate) fn schema() -> UpdateHandler<HandlerError> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_button))
        .branch(Update::filter_pre_checkout_query().endpoint(on_pre_checkout))
        .branch(Update::filter_my_chat_member().endpoint(on_my_membership))
}

async fn on_message(front: Front, msg: Message, update: Update) -> HandlerResult {
    let started = Instant::now();
    let delay = front.config().handler_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Boxed: every feature's state lives in this future, tens of kilobytes that dptree would
    // otherwise copy (as the endpoint's future) for each update.
    let work = Box::pin(message(&front, &msg, update_id(&update)));
    isolated(&front, &update, work).await;
    front.metrics().observe(started.elapsed());
    Ok(())
}

async fn on_button(front: Front, query: CallbackQuery, update: Update) -> HandlerResult {
    let started = Instant::now();
    let work = Box::pin(button(&front, &query, update_id(&update)));
    isolated(&front, &update, work).await;
    front.metrics().observe(started.elapsed());
    Ok(())
}

async fn on_pre_checkout(front: Front, query: PreCheckoutQuery, update: Update) -> HandlerResult {
    // A query has no chat: the dispatch runs such updates at once, side by side, so a burst of
    // checkouts meets Telegram's 10 s together.
    let started = Instant::now();
    isolated(&front, &update, payments::pre_checkout(&front, &query)).await;
    front.metrics().observe(started.elapsed());
    Ok(())
}

async fn on_my_membership(
    front: Front,
    change: ChatMemberUpdated,
    update: Update,
) -> HandlerResult {
    isolated(&front, &update, membership::changed(&front, &change)).await;
    Ok(())
}

/// A message: a payment, a group's, a photo, something that is not text, or a command or
/// prompt in a private chat.
#[tracing::instrument(skip_all, fields(user_id))]
async fn message(front: &Front, msg: &Message, update: i64) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        // Telegram leaves `from` out only of channel messages: nobody to answer.
        front.metrics().ignored("message_without_from");
        return Ok(());
    };
    tracing::Span::current().record("user_id", user_id(from).0);
    if front.config().poison.is_some() && msg.text() == front.config().poison.as_deref() {
        panic!("the test's poison message");
    }
    let lang = Lang::from_code(from.language_code.as_deref());
    let chat = msg.chat.id;
    if let Some(payment) = msg.successful_payment() {
        // Money already taken: never skipped by the flood limit.
        return payments::paid(front, chat, from, lang, payment).await;
    }
    if is_group(&msg.chat) {
        return group_message(front, msg, from, lang, update).await;
    }
    if msg.photo().is_some() {
        if !front.album_photo_due(msg) {
            // An album arrives as one message per photo: one answer for the album.
            front.metrics().ignored("album_photo");
            return Ok(());
        }
        let Some(caption) = msg.caption() else {
            return img2img::photo_received(front, msg, from, lang, update, None).await;
        };
        // A caption is read as a text is: `/img cat` draws "cat", `/balance` shows the
        // balance; only a prompt redraws the photo.
        let me = front.me().await?;
        return match Input::parse(caption, me.username.as_deref().unwrap_or_default()) {
            Input::Prompt(asked) => {
                img2img::photo_received(front, msg, from, lang, update, Some(asked)).await
            }
            input => command(front, chat, from, lang, update, input).await,
        };
    }
    let Some(text) = msg.text() else {
        return help::unsupported(front, msg, lang).await;
    };
    let me = front.me().await?;
    let input = Input::parse(text, me.username.as_deref().unwrap_or_default());
    command(front, chat, from, lang, update, input).await
}

/// A command or a prompt in a private chat.
async fn command(
    front: &Front,
    chat: ChatId,
    from: &TgUser,
    lang: Lang,
    update: i64,
    input: Input<'_>,
) -> HandlerResult {
    let user = user_id(from);
    let admin = front.is_admin(user.0);
    match input {
        Input::Start => help::start(front, chat, from, lang).await,
        Input::Help => help::help(front, chat, lang).await,
        Input::Models => models::show(front, chat, lang, user).await,
        Input::Balance => balance::show(front, chat, from, lang).await,
        Input::Buy => payments::show_packages(front, chat, lang).await,
        Input::PaySupport => payments::support(front, chat, lang, user).await,
        Input::Refund(args) if admin => payments::refund(front, chat, lang, args).await,
        Input::Ban(ban, args) if admin => admin::ban(front, chat, lang, ban, args).await,
        Input::Broadcast(text) if admin => {
            broadcast::start(front, chat, lang, user, text, update).await
        }
        Input::Refund(_) | Input::Ban(..) | Input::Broadcast(_) => {
            admin::admins_only(front, chat, lang).await
        }
        Input::Stats if admin => admin::stats(front, chat).await,
        // `/stats` is hidden from everyone else.
        Input::Stats | Input::Unknown => help::unknown_command(front, chat, lang).await,
        Input::Cancel => prompt::cancel(front, chat, lang, user).await,
        Input::History => rerun::show_history(front, chat, lang, user, None).await,
        Input::Settings => settings::show(front, chat, from, lang).await,
        Input::Prompt(text) => prompt::generate(front, chat, from, lang, update, text).await,
        // `/cmd@otherbot` is not run (it is another bot's command), but a private chat has no
        // other bot to answer it: silence would leave the user guessing (and `/balance@@me`,
        // a slip of the keyboard, names nobody we know either).
        Input::NotOurs => {
            front.metrics().ignored("command_for_another_bot");
            help::unknown_command(front, chat, lang).await
        }
    }
}

/// A message in a group: only what is addressed to the bot (privacy mode, [`GroupInput`]).
async fn group_message(
    front: &Front,
    msg: &Message,
    from: &TgUser,
    lang: Lang,
    update: i64,
) -> HandlerResult {
    // A photo's caption addresses the bot as a text would.
    let Some(text) = msg.text().or(msg.caption()) else {
        front
            .metrics()
            .unsupported(crate::isolation::message_kind(msg));
        return Ok(());
    };
    if from_no_person(msg) {
        // One shared stand-in account for every anonymous admin and channel: nobody's credits.
        front.metrics().ignored("group_message_of_a_chat");
        return Ok(());
    }
    let me = front.me().await?;
    let replied_to_us = msg
        .reply_to_message()
        .and_then(|m| m.from.as_ref())
        .is_some_and(|u| u.id == me.id);
    let username = me.username.as_deref().unwrap_or_default();
    match GroupInput::parse(text, username, replied_to_us) {
        GroupInput::Prompt(asked) if msg.photo().is_some() => {
            img2img::photo_received(front, msg, from, lang, update, Some(asked)).await
        }
        GroupInput::Prompt(asked) => {
            groups::prompt(front, msg, from, lang, update, asked, username).await
        }
        GroupInput::Help => groups::help(front, msg, lang, username).await,
        GroupInput::NotOurs => {
            front.metrics().ignored("group_message_not_for_the_bot");
            Ok(())
        }
    }
}

/// A button press. The press is answered (to the presser alone) with the text its feature
/// returns; a `/models` press answers its own, before it redraws the list.
async fn button(front: &Front, query: &CallbackQuery, update: i64) -> HandlerResult {
    let answer = match Button::parse(query.data.as_deref().unwrap_or_default()) {
        Button::Setting(data) => settings::press(front, query, data).await?,
        Button::Again(job) => rerun::again(front, query, job, false, update).await?,
        Button::SameSeed(job) => rerun::again(front, query, job, true, update).await?,
        Button::AsFile(job) => rerun::as_file_pressed(front, query, job).await?,
        Button::Older(job) => rerun::older(front, query, job).await?,
        Button::Buy(package) => payments::package_pressed(front, query, package).await?,
        Button::Model(model) => return models::pressed(front, query, model).await,
        // No button of ours has this data (or none): stale, or forged.
        Button::Unknown => {
            texts::button_expired(Lang::from_code(query.from.language_code.as_deref()))
        }
    };
    // The press's work is done (a file sent, a job submitted): an answer that fails even after
    // the pacer's retries must not make the whole update run again and repeat that work. The
    // client stops its spinner by itself.
    if let Err(e) = to_press(front, query, answer).await {
        let error = genbot_config::redact_urls_in(&e.to_string());
        tracing::info!(update_id = update, %error, "answering a button press failed");
    }
    Ok(())
}
