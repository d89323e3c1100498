//! The Bot API, through the client the bot uses: `getMe` (the token, the bot's name, whether
//! it may join groups and its privacy mode) and `getWebhookInfo` (whether the mode matches
//! what `serve` will be started with, updates waiting, Telegram's last delivery error).

use chrono::Utc;
use genbot_config::{ExposeSecret, Settings};
use teloxide::requests::Requester;
use teloxide::{ApiError, RequestError};

use super::{hide, Check, Intent};

/// Updates waiting at Telegram above which a WARN says the bot is behind (or down).
const PENDING_WARN: u32 = 100;

/// A webhook error younger than this is a WARN: Telegram is failing to deliver right now.
const RECENT_ERROR_SECS: i64 = 3600;

pub(super) async fn checks(settings: &Settings, intent: &Intent) -> Vec<Check> {
    let Some(token) = settings.telegram_bot_token.as_ref() else {
        return vec![Check::fail(
            "telegram.token",
            "TELEGRAM_BOT_TOKEN is not set",
            "set it to the token @BotFather gave the bot",
        )];
    };
    let secret = token.expose_secret();
    let bot = genbot_telegram::connect_bot(token, settings.telegram_api_url.clone());
    let api = genbot_config::RedactedUrl::new(settings.telegram_api_url.clone());
    let me = match bot.get_me().await {
        Ok(me) => me,
        Err(RequestError::Api(ApiError::InvalidToken)) => {
            return vec![rejected(&api, "Unauthorized".to_owned())]
        }
        Err(RequestError::Api(ApiError::Unknown(text))) if text.contains("Unauthorized") => {
            return vec![rejected(&api, hide(&text, secret))]
        }
        Err(e) => {
            return vec![Check::fail(
                "telegram.token",
                format!("getMe at {api} failed: {}", hide(&e.to_string(), secret)),
                "check TELEGRAM_API_URL and that this host reaches it (proxy, firewall, DNS)",
            )]
        }
    };
    let name = me.user.username.as_deref().unwrap_or("?");
    let mut checks = vec![Check::ok(
        "telegram.token",
        format!(
            "@{name} ({}), id {}: token valid",
            me.user.first_name, me.user.id
        ),
    )];
    checks.push(if me.can_read_all_group_messages {
        Check::warn(
            "telegram.privacy",
            "privacy mode is off: in groups the bot receives every message, and each costs a handler",
            "turn privacy mode on (@BotFather → /setprivacy → Enable) unless you need it off; genbot needs only commands and replies",
        )
    } else if me.can_join_groups {
        Check::ok(
            "telegram.privacy",
            "may join groups; privacy mode on (only commands and replies to the bot reach it)",
        )
    } else {
        Check::ok(
            "telegram.privacy",
            "may not join groups (private chats only); privacy mode on",
        )
    });
    checks.push(match bot.get_webhook_info().await {
        Ok(info) => webhook(
            info.url.as_ref().map(url::Url::as_str),
            info.pending_update_count,
            info.last_error_message.as_deref(),
            info.last_error_date
                .map(|at| (Utc::now() - at).num_seconds()),
            intent,
        ),
        Err(e) => Check::fail(
            "telegram.webhook",
            format!("getWebhookInfo failed: {}", hide(&e.to_string(), secret)),
            "check the Bot API's reachability and try again",
        ),
    });
    checks
}

fn rejected(api: &genbot_config::RedactedUrl, reason: String) -> Check {
    Check::fail(
        "telegram.token",
        format!("the Bot API at {api} rejected TELEGRAM_BOT_TOKEN ({reason})"),
        "copy the token again from @BotFather (/mybots → API Token); a revoked token must be replaced",
    )
}

/// The webhook's state against the mode `serve` will run in.
fn webhook(
    url: Option<&str>,
    pending: u32,
    last_error: Option<&str>,
    error_age_secs: Option<i64>,
    intent: &Intent,
) -> Check {
    const NAME: &str = "telegram.webhook";
    let url = url.filter(|u| !u.is_empty());
    let waiting = format!("{pending} updates waiting");
    match (url, &intent.webhook_url) {
        (Some(set), None) => {
            return Check::fail(
                NAME,
                format!("a webhook is set ({}) but serve is to poll; {waiting}", shown(set)),
                "run `genbot webhook delete` (or `serve --drop-webhook`), or pass --webhook-url to doctor and serve; `serve` refuses to poll while a webhook is set (exit 2)",
            )
        }
        (None, Some(wanted)) => {
            return Check::fail(
                NAME,
                format!("no webhook is set but serve is to receive at {}; {waiting}", shown(wanted.as_str())),
                format!("`genbot serve --webhook-url {}` sets it at start, or run `genbot webhook set` now", shown(wanted.as_str())),
            )
        }
        (Some(set), Some(wanted)) if set != wanted.as_str() => {
            return Check::fail(
                NAME,
                format!("the webhook is {} but serve is to receive at {}", shown(set), shown(wanted.as_str())),
                format!("run `genbot webhook set {}`", shown(wanted.as_str())),
            )
        }
        _ => {}
    }
    let mode = match url {
        Some(set) => format!("webhook {} as configured", shown(set)),
        None => "no webhook: long polling as configured".to_owned(),
    };
    if let (Some(message), Some(age)) = (last_error, error_age_secs) {
        if age < RECENT_ERROR_SECS {
            return Check::warn(
                NAME,
                format!("{mode}; {waiting}; Telegram's last delivery error {age} s ago: {message}"),
                "check that the URL is reachable from the internet over HTTPS and that serve answers on it",
            );
        }
    }
    if pending > PENDING_WARN {
        return Check::warn(
            NAME,
            format!("{mode}; {waiting}"),
            "the bot is behind or not running: start it, or see why it does not take updates",
        );
    }
    let history = match (last_error, error_age_secs) {
        (Some(message), Some(age)) => {
            format!("; last delivery error {} h ago: {message}", age / 3600)
        }
        _ => String::new(),
    };
    Check::ok(NAME, format!("{mode}; {waiting}{history}"))
}

fn shown(url: &str) -> String {
    genbot_config::redact_urls_in(url)
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    fn polling() -> Intent {
        Intent::default()
    }

    fn hooked(url: &str) -> Intent {
        Intent {
            webhook_url: Some(url.parse().unwrap()),
        }
    }

    #[test]
    fn the_mode_must_match_what_serve_will_do() {
        let url = "https://bot.example/telegram/webhook";
        assert_eq!(webhook(None, 0, None, None, &polling()).status, Status::Ok);
        assert_eq!(
            webhook(Some(url), 0, None, None, &polling()).status,
            Status::Fail
        );
        assert_eq!(
            webhook(None, 0, None, None, &hooked(url)).status,
            Status::Fail
        );
        assert_eq!(
            webhook(Some(url), 0, None, None, &hooked(url)).status,
            Status::Ok
        );
        assert_eq!(
            webhook(Some(url), 0, None, None, &hooked("https://other.example/x")).status,
            Status::Fail
        );
    }

    #[test]
    fn a_recent_delivery_error_or_a_backlog_warns() {
        let url = "https://bot.example/hook";
        let recent = webhook(
            Some(url),
            3,
            Some("Connection refused"),
            Some(120),
            &hooked(url),
        );
        assert_eq!(recent.status, Status::Warn);
        assert!(
            recent.detail.contains("120 s ago: Connection refused"),
            "{}",
            recent.detail
        );
        let old = webhook(
            Some(url),
            3,
            Some("Connection refused"),
            Some(90_000),
            &hooked(url),
        );
        assert_eq!(old.status, Status::Ok, "{}", old.detail);
        assert_eq!(
            webhook(None, 5_000, None, None, &polling()).status,
            Status::Warn
        );
    }
}
