//! `/balance`: credits, today's images left of the daily limit and when it resets, and the
//! latest credit movements.
//!
//! Imports the shared layer, never another feature or the router.

use chrono::Utc;
use genbot_store::UserId;
use teloxide::prelude::*;
use teloxide::types::User as TgUser;

use crate::pacing::send;
use crate::shared::account::registered;
use crate::shared::HandlerResult;
use crate::texts::{self, Lang};
use crate::Front;

/// Movements `/balance` shows.
const MOVEMENTS: u32 = 5;

/// `/balance` (a user never seen is registered first).
pub(crate) async fn show(front: &Front, chat: ChatId, from: &TgUser, lang: Lang) -> HandlerResult {
    let stored = registered(front, from).await?;
    let limit = front.engine().config().daily_limit;
    let today = Utc::now().date_naive();
    let remaining = limit.saturating_sub(stored.used_on(today));
    let resets_at = today
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or_else(Utc::now, |d| d.and_utc());
    let mut text = texts::balance(lang, stored.credits, remaining, limit, resets_at);
    text.push_str(&recent_movements(front, lang, stored.id).await);
    send(front, chat, front.bot().send_message(chat, text)).await?;
    Ok(())
}

/// The latest movements, or nothing when they cannot be read (the balance is still worth
/// telling).
async fn recent_movements(front: &Front, lang: Lang, user: UserId) -> String {
    match front.engine().store().movements(user, MOVEMENTS).await {
        Ok(movements) => texts::movements(lang, &movements),
        Err(e) => {
            tracing::warn!(error = %e, "reading credit movements failed");
            String::new()
        }
    }
}
