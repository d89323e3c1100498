//! What only admins (`ADMIN_IDS`) may do that belongs to no other feature: `/stats`, `/ban` and
//! `/unban`; and the answer to anyone else who tries an admin command. (Who is an admin is the
//! router's check; `/refund` is payments', `/broadcast` broadcast's.)
//!
//! Imports the shared layer, never another feature or the router.

use genbot_store::{StoreError, UserId};
use teloxide::prelude::*;

use crate::pacing::send;
use crate::shared::{HandlerError, HandlerResult};
use crate::texts::{self, Lang};
use crate::Front;

/// `/stats`: the bot's counters, as an admin sees them.
pub(crate) async fn stats(front: &Front, chat: ChatId) -> HandlerResult {
    let text = stats_text(front).await?;
    send(front, chat, front.bot().send_message(chat, text)).await?;
    Ok(())
}

/// `/ban <user id>` (`ban`) and `/unban <user id>`.
pub(crate) async fn ban(
    front: &Front,
    chat: ChatId,
    lang: Lang,
    ban: bool,
    args: &str,
) -> HandlerResult {
    let users = front.engine().users();
    let text = match args.trim().parse::<i64>() {
        Ok(target) => match users.set_banned(UserId(target), ban).await {
            Ok(_) => texts::ban_done(lang, target, ban),
            Err(StoreError::UserNotFound(_)) => texts::ban_unknown_user(lang, target),
            Err(e) => return Err(e.into()),
        },
        Err(_) => texts::ban_usage(lang),
    };
    send(front, chat, front.bot().send_message(chat, text)).await?;
    Ok(())
}

/// An admin command from someone who is not one.
pub(crate) async fn admins_only(front: &Front, chat: ChatId, lang: Lang) -> HandlerResult {
    let text = texts::admins_only(lang);
    send(front, chat, front.bot().send_message(chat, text)).await?;
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
