//! Arbitrary text (any Unicode, and text close to valid) in the variables a person types:
//! parsing never panics, and a refusal names the variable it refuses, without echoing a
//! secret.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;

use genbot_config::{redact_urls_in, ConfigError, Key, Settings, Sources};
use proptest::prelude::*;

/// Every key whose value is checked on its own (no files read, no other key involved).
const KEYS: [Key; 19] = [
    Key::TelegramBotToken,
    Key::TelegramApiUrl,
    Key::ReplicateApiToken,
    Key::ReplicateApiUrl,
    Key::DatabaseUrl,
    Key::DbPoolSize,
    Key::RedisUrl,
    Key::RedisKeyPrefix,
    Key::CacheTtlSeconds,
    Key::DailyGenerationLimit,
    Key::QueueMaxLength,
    Key::DefaultModel,
    Key::AdminIds,
    Key::StarsPackages,
    Key::ReplicaId,
    Key::ReplicateWebhookUrl,
    Key::ReplicateWebhookSecret,
    Key::TelegramSendsPerSecond,
    Key::WebhookSecret,
];

/// Any Unicode, and text made of the characters the parsers look for, so that near-misses of
/// valid values are tried as often as noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[0-9:, \\-]{0,30}",
        "[a-z]{1,8}://[a-zA-Z0-9:@/?=&%._\\-]{0,40}",
        "[ -~]{0,300}",
    ]
}

fn load(key: Key, value: &str) -> Result<Settings, ConfigError> {
    let env = HashMap::from([(key.name().to_owned(), value.to_owned())]);
    Settings::from_sources(&Sources::from_env(env))
}

fn refused_for_itself(key: Key, value: &str) -> Result<(), TestCaseError> {
    match load(key, value) {
        Ok(settings) => {
            // Accepted: config check can show it.
            let _ = settings.effective();
            let _ = format!("{settings:?}");
        }
        Err(ConfigError::Invalid {
            variable,
            value: shown,
            allowed,
        }) => {
            prop_assert_eq!(variable, key.name());
            prop_assert!(!allowed.is_empty());
            if key.is_secret() {
                prop_assert_eq!(shown, "***");
            }
        }
        Err(other) => prop_assert!(false, "{}: unexpected error {}", key, other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_value_of_any_key_is_taken_or_refused_by_name(
        key in proptest::sample::select(KEYS.to_vec()),
        value in value(),
    ) {
        refused_for_itself(key, &value)?;
    }

    #[test]
    fn stars_packages_never_panic(value in "[0-9:,\\s\\PC]{0,60}") {
        refused_for_itself(Key::StarsPackages, &value)?;
    }

    #[test]
    fn admin_ids_never_panic(value in "[0-9,\\-+\\s\\PC]{0,60}") {
        refused_for_itself(Key::AdminIds, &value)?;
    }

    #[test]
    fn redis_key_prefixes_never_panic(value in "[a-zA-Z0-9:._\\-\\s\\PC]{0,80}") {
        refused_for_itself(Key::RedisKeyPrefix, &value)?;
    }

    #[test]
    fn urls_in_any_text_are_masked_without_panicking(
        before in "\\PC{0,20}",
        user in "[a-z]{1,8}",
        password in "[a-zA-Z0-9]{12,20}",
        after in "\\PC{0,20}",
        noise in any::<String>(),
    ) {
        let _ = redact_urls_in(&noise);
        let text = format!("{before} (https://{user}:{password}@host.example/p?token={password}) {after}");
        let shown = redact_urls_in(&text);
        prop_assert!(!shown.contains(&password), "{}", shown);
    }
}
