//! The bot's own membership (`my_chat_member`): a user who blocks the bot is marked blocked
//! (no more results or broadcasts are sent there); added to a group, the bot says how to use it
//! there.
//!
//! Imports the shared layer, never another feature or the router.

use teloxide::prelude::*;
use teloxide::types::ChatMemberUpdated;

use crate::pacing::send;
use crate::shared::ids::{is_group, user_id};
use crate::shared::HandlerResult;
use crate::texts::{self, Lang};
use crate::Front;

/// The bot's membership in `change.chat` changed.
pub(crate) async fn changed(front: &Front, change: &ChatMemberUpdated) -> HandlerResult {
    let was_in = change.old_chat_member.kind.is_present();
    let is_in = change.new_chat_member.kind.is_present();
    if change.chat.is_private() {
        let store = front.engine().store();
        let user = user_id(&change.from);
        match (was_in, is_in) {
            (true, false) => store.mark_blocked(user).await?,
            // Unblocked: results and broadcasts reach them again.
            (false, true) => store.mark_unblocked(user).await?,
            _ => {}
        }
        return Ok(());
    }
    if is_group(&change.chat) && was_in && !is_in {
        // Nothing is kept per group: a result still on its way meets one 403 and is recorded
        // refused (never retried, and its asker is not marked blocked).
        tracing::info!(
            chat = change.chat.id.0,
            "removed from a group; its pending results will be refused once each"
        );
        front.metrics().ignored("my_chat_member_removed_from_group");
        return Ok(());
    }
    if is_group(&change.chat) && is_in && !was_in {
        let me = front.me().await?;
        let lang = Lang::from_code(change.from.language_code.as_deref());
        let chat = change.chat.id;
        let username = me.username.as_deref().unwrap_or_default();
        send(
            front,
            chat,
            front
                .bot()
                .send_message(chat, texts::group_help(lang, username)),
        )
        .await?;
    }
    Ok(())
}
