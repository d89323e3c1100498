//! A user's account: registered on first sight (a user who never sent `/start` is not sent
//! back), with the language and username Telegram reports.

use genbot_store::{NewUser, User};
use teloxide::types::User as TgUser;

use super::ids::user_id;
use super::HandlerError;
use crate::texts::Lang;
use crate::Front;

/// Registers `from` (or refreshes their username and language when they changed), returning
/// the stored user as the database has it.
pub(crate) async fn register(front: &Front, from: &TgUser) -> Result<User, HandlerError> {
    Ok(front
        .engine()
        .users()
        .register(NewUser {
            id: user_id(from),
            username: bounded(from.username.as_deref(), USERNAME_MAX_CHARS),
            language: stored_language(from.language_code.as_deref()),
            initial_credits: front.config().initial_credits,
        })
        .await?)
}

/// Telegram's usernames are 5–32 characters; a longer one came from a forged update.
const USERNAME_MAX_CHARS: usize = 32;
/// The longest IETF language tag a client could plausibly report (`language_code`).
const LANGUAGE_MAX_CHARS: usize = 35;

/// `value` without control characters, cut to its first `max` characters. What an update claims
/// about its sender is stored in the user's row and kept in the cache: a forged 20,000-character
/// username must not be, nor a `\0`, which PostgreSQL refuses in text (that user could then never
/// register). Telegram's own usernames and language codes have neither.
fn bounded(value: Option<&str>, max: usize) -> Option<String> {
    value.map(|v| v.chars().filter(|c| !c.is_control()).take(max).collect())
}

/// The stored user `from`, registered now if they never were.
pub(crate) async fn registered(front: &Front, from: &TgUser) -> Result<User, HandlerError> {
    match front.engine().users().get(user_id(from)).await? {
        Some(stored) => Ok(stored),
        None => register(front, from).await,
    }
}

/// The language code as stored: none for a code that is no code ([`Lang::usable_code`]: a
/// forged `ru\0` is answered in English, so it is stored as no language rather than cleaned
/// into `ru`, which later messages would then be written in), otherwise its first
/// [`LANGUAGE_MAX_CHARS`] characters, which keep the subtag the texts are chosen by.
fn stored_language(code: Option<&str>) -> Option<String> {
    bounded(Lang::usable_code(code), LANGUAGE_MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_fields_keep_what_telegram_sends_and_cut_the_rest() {
        assert_eq!(bounded(None, 32), None);
        assert_eq!(bounded(Some("fox_42"), 32).as_deref(), Some("fox_42"));
        let long = "я".repeat(20_000);
        assert_eq!(bounded(Some(&long), 32), Some("я".repeat(32)));
        assert_eq!(bounded(Some("pt-br"), 35).as_deref(), Some("pt-br"));
        assert_eq!(bounded(Some("fox\0\n_42"), 32).as_deref(), Some("fox_42"));
        assert_eq!(stored_language(Some("ru\0")), None);
        assert_eq!(stored_language(Some("pt-br")).as_deref(), Some("pt-br"));
        let long = format!("ru-RU{}", "x".repeat(5_000));
        assert_eq!(
            stored_language(Some(&long)).map(|l| l.chars().count()),
            Some(35)
        );
    }

    proptest::proptest! {
        #[test]
        fn a_bounded_field_is_the_texts_first_characters_without_controls(
            text in crate::command::arbitrary_text(),
            max in 0usize..70,
        ) {
            let cut = bounded(Some(&text), max).unwrap_or_default();
            let kept: String = text.chars().filter(|c| !c.is_control()).collect();
            proptest::prop_assert!(kept.starts_with(&cut));
            proptest::prop_assert_eq!(cut.chars().count(), kept.chars().count().min(max));
            proptest::prop_assert!(!cut.chars().any(char::is_control));
        }

        /// Replies choose their language from the code as received, later messages (results,
        /// notices) from the code as stored: both must choose alike.
        #[test]
        fn the_stored_language_chooses_the_texts_the_received_one_does(
            code in crate::command::arbitrary_text(),
            prefix in proptest::sample::select(vec!["", "ru", "ru-", "uk_", "en", "kk-KZ"]),
        ) {
            let code = format!("{prefix}{code}");
            let stored = stored_language(Some(&code));
            proptest::prop_assert_eq!(
                Lang::from_code(Some(&code)),
                Lang::from_code(stored.as_deref())
            );
            proptest::prop_assert!(stored.is_none_or(|s| s.chars().count() <= LANGUAGE_MAX_CHARS));
        }
    }
}
