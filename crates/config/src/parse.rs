//! Parsers from raw text to typed values; each error names the key, the value and the rule.

use url::Url;

use crate::urls::{masked_keyword_values, masked_userinfo_and_query};
use crate::{ConfigError, Key, RedactedUrl};

/// A whole number in `min..=max`.
pub(crate) fn integer_in(key: Key, raw: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let allowed = || format!("expected a whole number from {min} to {max}");
    let value: u64 = raw
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid(key.name(), raw, allowed()))?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(key.name(), raw, allowed()))
    }
}

/// An `http://` or `https://` base URL. A refused value is echoed with its credentials
/// masked, as every URL is.
pub(crate) fn http_url(key: Key, raw: &str) -> Result<Url, ConfigError> {
    let allowed = "expected an http:// or https:// URL, e.g. https://api.example.com";
    let refuse = || ConfigError::invalid(key.name(), &redact_url_text(raw), allowed);
    let url = Url::parse(raw.trim()).map_err(|_| refuse())?;
    if is_http_with_host(&url) {
        Ok(url)
    } else {
        Err(refuse())
    }
}

/// Whether `url` is `http://` or `https://` with a host: what the Bot API, Replicate and a
/// webhook can be reached at.
pub fn is_http_with_host(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
}

/// Masks the credentials of a URL-looking text (parsed or not), for messages.
pub(crate) fn redact_url_text(text: &str) -> String {
    if let Ok(url) = Url::parse(text.trim()) {
        return RedactedUrl::new(url).to_string();
    }
    // Unparseable: hide the whole userinfo and query, which is where credentials go, and the
    // secrets of a libpq keyword string (`host=db password=…`).
    masked_keyword_values(&masked_userinfo_and_query(text))
}

/// What Telegram accepts as a webhook's `secret_token` (setWebhook): 1 to 256 characters of
/// `A-Z`, `a-z`, `0-9`, `_` and `-`. Checked here because teloxide panics on anything else,
/// and only once the Bot API has answered.
///
/// # Errors
/// Anything else, named after `variable`; the value is never echoed.
pub fn telegram_secret_token(variable: &'static str, raw: &str) -> Result<String, ConfigError> {
    let ok = (1..=256).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ConfigError::invalid(
            variable,
            "***",
            "expected 1 to 256 of A-Z, a-z, 0-9, '_' and '-' (what Telegram accepts as a webhook secret token)",
        ))
    }
}

/// The signing key inside Replicate's webhook secret, `whsec_<base64>` (the answer of
/// `GET /v1/webhooks/default/secret`). Parsed here, the one place settings are validated, so
/// that `config check` refuses what `serve` would; the engine's `WebhookSecret` uses it too.
///
/// # Errors
/// The prefix is missing, the rest is not base64, or the key is empty; the reason never
/// contains the secret.
pub fn replicate_webhook_key(text: &str) -> Result<Vec<u8>, &'static str> {
    use base64::Engine as _;
    let encoded = text
        .trim()
        .strip_prefix("whsec_")
        .ok_or("a webhook secret starts with `whsec_`")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the part after `whsec_` is not base64")?;
    if key.is_empty() {
        return Err("the webhook secret is empty");
    }
    Ok(key)
}

/// A comma-separated list of positive Telegram user ids; empty is allowed.
pub(crate) fn user_ids(key: Key, raw: &str) -> Result<Vec<i64>, ConfigError> {
    let allowed = "expected comma-separated positive Telegram user ids, e.g. 12345,67890";
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id),
            _ => Err(ConfigError::invalid(key.name(), raw, allowed)),
        })
        .collect()
}

/// `CREDITS:STARS,…`: the credit packages sold for Telegram Stars, in the order given.
pub(crate) fn stars_packages(key: Key, raw: &str) -> Result<Vec<StarsPackage>, ConfigError> {
    let allowed = "expected comma-separated CREDITS:STARS pairs (credits 1 to 100000, Stars 1 to \
                   10000, each package once), e.g. 10:50,60:250; empty for no payments";
    let mut packages: Vec<StarsPackage> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = part.split_once(':').and_then(|(credits, stars)| {
            let credits = credits.trim().parse::<u32>().ok()?;
            let stars = stars.trim().parse::<u32>().ok()?;
            ((1..=100_000).contains(&credits) && (1..=10_000).contains(&stars))
                .then_some(StarsPackage { credits, stars })
        });
        match parsed {
            Some(package) if !packages.contains(&package) => packages.push(package),
            _ => return Err(ConfigError::invalid(key.name(), raw, allowed)),
        }
    }
    Ok(packages)
}

/// One package `/buy` offers: this many credits for this many Telegram Stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StarsPackage {
    pub credits: u32,
    pub stars: u32,
}

/// A non-empty secret token without whitespace.
pub(crate) fn token(key: Key, raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(
            key.name(),
            "***",
            "expected a token without spaces",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_bounds_are_inclusive() {
        let key = Key::DbPoolSize;
        assert_eq!(integer_in(key, "1", 1, 5).unwrap(), 1);
        assert_eq!(integer_in(key, "5", 1, 5).unwrap(), 5);
        assert!(integer_in(key, "6", 1, 5).is_err());
        assert!(integer_in(key, "0", 1, 5).is_err());
        assert!(integer_in(key, "-3", 1, 5).is_err());
        assert!(integer_in(key, "2.5", 1, 5).is_err());
    }

    #[test]
    fn stars_packages_are_pairs_within_telegrams_bounds() {
        let key = Key::StarsPackages;
        assert_eq!(
            stars_packages(key, " 10:50 , 60:250").unwrap(),
            vec![
                StarsPackage {
                    credits: 10,
                    stars: 50
                },
                StarsPackage {
                    credits: 60,
                    stars: 250
                }
            ]
        );
        assert!(stars_packages(key, "").unwrap().is_empty());
        for bad in [
            "10",
            "10:0",
            "0:5",
            "10:50,10:50",
            "10:20000",
            "a:b",
            "10:50;",
        ] {
            let error = stars_packages(key, bad).unwrap_err().to_string();
            assert!(error.contains("STARS_PACKAGES"), "{bad}: {error}");
        }
    }

    #[test]
    fn user_ids_accept_spaces_and_refuse_junk() {
        assert_eq!(
            user_ids(Key::AdminIds, " 1, 22 ,333").unwrap(),
            vec![1, 22, 333]
        );
        assert_eq!(user_ids(Key::AdminIds, "").unwrap(), Vec::<i64>::new());
        assert!(user_ids(Key::AdminIds, "1;2").is_err());
        assert!(user_ids(Key::AdminIds, "1,-2").is_err());
        assert!(user_ids(Key::AdminIds, "admin").is_err());
    }

    #[test]
    fn urls_must_be_http() {
        assert!(http_url(Key::TelegramApiUrl, "http://127.0.0.1:8081").is_ok());
        assert!(http_url(Key::TelegramApiUrl, "ftp://example.com").is_err());
        assert!(http_url(Key::TelegramApiUrl, "api.telegram.org").is_err());
    }
}
