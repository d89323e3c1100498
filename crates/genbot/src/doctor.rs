//! `genbot doctor`: a live preflight of a deployment from its settings, before traffic.
//!
//! Each check asks the real thing (the Bot API and Replicate through the clients the bot uses,
//! the database read-only, Redis, the disk, the services' clocks) and ends as one line:
//! OK, WARN (works, but an operator should know) or FAIL (the bot would not work, or would
//! break a guarantee), with what to do. Any FAIL makes the exit code 1. Nothing is changed:
//! no migration, no file created, no webhook set, nothing billed.

mod clock;
mod redis;
mod replicate;
mod storage;
mod telegram;

use std::fmt::Write as _;

use genbot_config::Settings;
use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    /// Stable dotted name (`telegram.token`), for scripts reading the JSON.
    pub(crate) name: &'static str,
    pub(crate) status: Status,
    /// What was found, with the figures.
    pub(crate) detail: String,
    /// What to do about a WARN or FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fix: Option<String>,
}

impl Check {
    pub(crate) fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn warn(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn fail(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub(crate) checks: Vec<Check>,
}

impl Report {
    /// The worst status of any check.
    pub(crate) fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// One line per check: status, name, what was found, `→` what to do; then a summary.
    pub(crate) fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let _ = write!(
                out,
                "{:<4}  {:width$}  {}",
                check.status.label(),
                check.name,
                check.detail
            );
            if let Some(fix) = &check.fix {
                let _ = write!(out, " → {fix}");
            }
            out.push('\n');
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "{} checks: {} OK, {} WARN, {} FAIL",
            self.checks.len(),
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        );
        out
    }

    /// `{"status": "FAIL", "checks": [{"name", "status", "detail", "fix"?}, …]}`.
    pub(crate) fn json(&self) -> String {
        let value = serde_json::json!({ "status": self.worst(), "checks": self.checks });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }
}

/// What the deployment is meant to be, beyond the settings: `serve`'s mode flag.
#[derive(Debug, Clone, Default)]
pub(crate) struct Intent {
    /// `serve --webhook-url`: the webhook Telegram should have; `None` = long polling.
    pub(crate) webhook_url: Option<url::Url>,
}

/// Runs every check (independent ones at once) and collects them in a fixed order.
pub(crate) async fn run(settings: &Settings, intent: &Intent) -> Report {
    let (telegram, database, redis, replicate, clocks) = tokio::join!(
        telegram::checks(settings, intent),
        storage::checks(settings),
        redis::checks(settings),
        replicate::checks(settings),
        clock::checks(settings),
    );
    let mut checks = Vec::new();
    checks.extend(telegram);
    checks.extend(database.checks);
    checks.extend(redis);
    checks.extend(replicate);
    checks.extend(clocks);
    if let Some(check) = database.clock {
        checks.push(check);
    }
    checks.push(stars(settings));
    checks.extend(test_hooks());
    Report { checks }
}

/// Test hooks (`GENBOT_TEST_HOOKS=1`) armed in this environment: a WARN, or a FAIL for a value
/// `serve` would refuse; no line when none is set.
fn test_hooks() -> Option<Check> {
    const NAME: &str = "process.test_hooks";
    const FIX: &str = "unset GENBOT_TEST_HOOKS and the GENBOT_TEST_* variables: only the suite's own tests arm them";
    match genbot_assembly::TestHooks::from_env() {
        Ok(hooks) => hooks
            .warning()
            .map(|warning| Check::warn(NAME, warning, FIX)),
        Err(e) => Some(Check::fail(NAME, e.to_string(), FIX)),
    }
}

/// `STARS_PACKAGES`: what `/buy` sells.
fn stars(settings: &Settings) -> Check {
    if settings.stars_packages.is_empty() {
        return Check::warn(
            "payments.stars",
            "STARS_PACKAGES is empty: /buy sells nothing",
            "set STARS_PACKAGES=CREDITS:STARS,… if users should be able to buy credits",
        );
    }
    let offers: Vec<String> = settings
        .stars_packages
        .iter()
        .map(|p| format!("{} credits for {} ⭐", p.credits, p.stars))
        .collect();
    Check::ok(
        "payments.stars",
        format!("{} packages on sale: {}", offers.len(), offers.join(", ")),
    )
}

/// `text` with every occurrence of `secret` hidden (client errors may quote a request URL
/// that carries the bot token in its path).
pub(crate) fn hide(text: &str, secret: &str) -> String {
    let text = genbot_config::redact_urls_in(text);
    if secret.is_empty() {
        text
    } else {
        text.replace(secret, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_wins_and_each_check_is_one_line() {
        let report = Report {
            checks: vec![
                Check::ok("a.one", "fine"),
                Check::warn("b.two", "meh", "do this"),
                Check::fail("c.three", "broken", "do that"),
            ],
        };
        assert_eq!(report.worst(), Status::Fail);
        let text = report.text();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.lines()
                .nth(2)
                .unwrap_or("")
                .starts_with("FAIL  c.three"),
            "{text}"
        );
        assert!(text.contains("meh → do this"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap_or_default();
        assert_eq!(json["status"], "FAIL");
        assert_eq!(json["checks"][1]["status"], "WARN");
        assert!(json["checks"][0].get("fix").is_none());
    }

    #[test]
    fn secrets_are_hidden_in_messages() {
        assert_eq!(
            hide("error for url (http://h/bot123:abc/getMe)", "123:abc"),
            "error for url (http://h/bot***/getMe)"
        );
    }
}
