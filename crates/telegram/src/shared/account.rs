//! A user's account: registered on first sight (a user who never sent `/start` is not sent
//! back), with the language and username Telegram reports.

use genbot_store::{NewUser, User};
use teloxide::types::User as TgUser;

use super::ids::user_id;
use super::HandlerError;
use crate::Front;

/// Registers `from` (or refreshes their username and language when they changed), returning
/// the stored user as the database has it.
pub(crate) async fn register(front: &Front, from: &TgUser) -> Result<User, HandlerError> {
    Ok(front
        .engine()
        .users()
        .register(NewUser {
            id: user_id(from),
            username: from.username.clone(),
            language: from.language_code.clone(),
            initial_credits: front.config().initial_credits,
        })
        .await?)
}

/// The stored user `from`, registered now if they never were.
pub(crate) async fn registered(front: &Front, from: &TgUser) -> Result<User, HandlerError> {
    match front.engine().users().get(user_id(from)).await? {
        Some(stored) => Ok(stored),
        None => register(front, from).await,
    }
}
