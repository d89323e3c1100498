//! This host's clock against the services': each answer's `Date` header read against the
//! local time halfway through the request. A skew matters because Replicate's webhook
//! signatures carry a timestamp refused beyond 5 minutes, the create lookup allows 2 minutes,
//! and on PostgreSQL the leases of replicas are compared with the server's clock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use genbot_config::Settings;

use super::Check;

/// Beyond this (after the measurement's uncertainty) something time-based breaks: the create
/// lookup's 2-minute allowance (`LOOKUP_SKEW_SECS` in the engine).
const FAIL_SECS: f64 = 120.0;
/// Beyond this a clock is not synchronized (NTP keeps them within milliseconds).
const WARN_SECS: f64 = 5.0;

/// A measured offset of a remote clock from ours (positive: theirs is ahead).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Offset {
    pub(super) seconds: f64,
    /// Half the interval the true offset lies in.
    pub(super) uncertainty: f64,
}

pub(super) fn judge_offset(name: &'static str, whose: &str, offset: Offset) -> Check {
    let Offset {
        seconds,
        uncertainty,
    } = offset;
    let found = format!("{whose} is {seconds:+.1} s from this host's clock (±{uncertainty:.1} s)");
    let beyond = seconds.abs() - uncertainty;
    if beyond > FAIL_SECS {
        Check::fail(
            name,
            found,
            "synchronize this host's clock (timedatectl set-ntp true; chronyc tracking): beyond 2 minutes predictions cannot be matched after a lost create, beyond 5 Replicate's webhooks are refused",
        )
    } else if beyond > WARN_SECS {
        Check::warn(
            name,
            found,
            "synchronize this host's clock (timedatectl set-ntp true)",
        )
    } else {
        Check::ok(name, found)
    }
}

pub(super) async fn checks(settings: &Settings) -> Vec<Check> {
    // No redirects: the first answer's Date is the server's; no token: the base URL is enough.
    let Ok(http) = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return Vec::new();
    };
    let (telegram, replicate) = tokio::join!(
        measure(&http, &settings.telegram_api_url),
        measure(&http, &settings.replicate_api_url),
    );
    vec![
        judged(
            "clock.telegram",
            "the Bot API's clock",
            &settings.telegram_api_url,
            telegram,
        ),
        judged(
            "clock.replicate",
            "Replicate's clock",
            &settings.replicate_api_url,
            replicate,
        ),
    ]
}

fn judged(
    name: &'static str,
    whose: &str,
    url: &url::Url,
    measured: Result<Offset, String>,
) -> Check {
    match measured {
        Ok(offset) => judge_offset(name, whose, offset),
        Err(reason) => Check::warn(
            name,
            format!(
                "no Date from {}: {reason}",
                genbot_config::RedactedUrl::new(url.clone())
            ),
            "the clock could not be compared; check that this host synchronizes it (timedatectl)",
        ),
    }
}

async fn measure(http: &reqwest::Client, url: &url::Url) -> Result<Offset, String> {
    let sent_at = Utc::now();
    let started = Instant::now();
    let response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| genbot_config::redact_urls_in(&e.to_string()))?;
    let round_trip = started.elapsed();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .ok_or("the answer has no Date header")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let server = DateTime::parse_from_rfc2822(date)
        .map_err(|e| format!("unreadable Date {date:?}: {e}"))?
        .with_timezone(&Utc);
    Ok(offset_from(server, sent_at, round_trip))
}

/// The offset of a server whose `Date` (whole seconds, truncated) was `server`, for a request
/// sent at `sent_at` that took `round_trip`: its true time lay in [server, server + 1 s) at
/// some moment of the round trip.
fn offset_from(server: DateTime<Utc>, sent_at: DateTime<Utc>, round_trip: Duration) -> Offset {
    let half_trip = round_trip.as_secs_f64() / 2.0;
    let midpoint = sent_at + chrono::TimeDelta::milliseconds((half_trip * 1000.0) as i64);
    let seconds = (server - midpoint).num_milliseconds() as f64 / 1000.0 + 0.5;
    Offset {
        seconds,
        uncertainty: 0.5 + half_trip,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn the_offset_allows_for_whole_seconds_and_the_round_trip() {
        let sent = DateTime::parse_from_rfc3339("2025-01-01T00:00:00.200Z")
            .unwrap()
            .with_timezone(&Utc);
        let server = DateTime::parse_from_rfc2822("Wed, 01 Jan 2025 00:10:00 GMT")
            .unwrap()
            .with_timezone(&Utc);
        let offset = offset_from(server, sent, Duration::from_millis(200));
        assert!((offset.seconds - 600.2).abs() < 0.01, "{offset:?}");
        assert!((offset.uncertainty - 0.6).abs() < 0.01, "{offset:?}");
    }

    #[test]
    fn thresholds() {
        let at = |seconds| Offset {
            seconds,
            uncertainty: 0.5,
        };
        assert_eq!(judge_offset("c", "x", at(0.7)).status, Status::Ok);
        assert_eq!(judge_offset("c", "x", at(-30.0)).status, Status::Warn);
        assert_eq!(judge_offset("c", "x", at(-600.0)).status, Status::Fail);
        assert_eq!(judge_offset("c", "x", at(120.4)).status, Status::Warn);
    }
}
