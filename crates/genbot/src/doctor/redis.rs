//! Redis, when `REDIS_URL` is set: it answers, and its eviction policy cannot drop the shared
//! rate limiter's key (`REDIS_KEY_PREFIX` + `ratelimit:replicate-creations`). An evicted key
//! resets the limiter: every replica may then create at full rate at once, and Replicate
//! answers 429s. The key carries a TTL of about a second, so `volatile-*` policies (which evict
//! keys with a TTL, shortest first under `volatile-ttl`) may take it as well as `allkeys-*`.

use std::collections::HashMap;
use std::time::Duration;

use genbot_config::Settings;

use super::Check;

const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn checks(settings: &Settings) -> Vec<Check> {
    let Some(url) = &settings.redis_url else {
        return vec![Check::ok(
            "redis",
            "REDIS_URL unset: in-process cache, and a rate limiter per process (one replica only)",
        )];
    };
    let unreachable = |reason: String| {
        vec![Check::fail(
            "redis.reachable",
            format!("{url}: {reason}"),
            "check that Redis runs and REDIS_URL (host, port, password, TLS); the bot still works without it but each replica then limits Replicate creations on its own",
        )]
    };
    let client = match redis::Client::open(url.expose()) {
        Ok(client) => client,
        Err(e) => return unreachable(genbot_config::redact_urls_in(&e.to_string())),
    };
    let mut conn =
        match tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return unreachable(genbot_config::redact_urls_in(&e.to_string())),
            Err(_) => return unreachable(format!("no answer within {TIMEOUT:?}")),
        };
    match tokio::time::timeout(TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return unreachable(genbot_config::redact_urls_in(&e.to_string())),
        Err(_) => return unreachable(format!("PING not answered within {TIMEOUT:?}")),
    }
    let mut checks = vec![Check::ok("redis.reachable", format!("{url} answers PING"))];
    let config = tokio::time::timeout(
        TIMEOUT,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory*")
            .query_async::<HashMap<String, String>>(&mut conn),
    )
    .await;
    checks.push(match config {
        Ok(Ok(config)) => eviction(
            config.get("maxmemory-policy").map(String::as_str),
            config.get("maxmemory").and_then(|m| m.parse().ok()),
        ),
        Ok(Err(e)) => Check::warn(
            "redis.eviction",
            format!("CONFIG GET refused ({e}): the eviction policy is unknown"),
            "make sure maxmemory-policy is noeviction (managed Redis: in its parameter group)",
        ),
        Err(_) => Check::warn(
            "redis.eviction",
            "CONFIG GET not answered: the eviction policy is unknown",
            "make sure maxmemory-policy is noeviction",
        ),
    });
    checks
}

/// Judges `maxmemory-policy` with `maxmemory` (0 = no limit: nothing is evicted yet).
fn eviction(policy: Option<&str>, maxmemory: Option<u64>) -> Check {
    const NAME: &str = "redis.eviction";
    let Some(policy) = policy else {
        return Check::warn(
            NAME,
            "maxmemory-policy not reported",
            "make sure it is noeviction",
        );
    };
    let limit = match maxmemory {
        Some(0) | None => "no maxmemory".to_owned(),
        Some(bytes) => format!("maxmemory {:.0} MB", bytes as f64 / 1_000_000.0),
    };
    let found = format!("maxmemory-policy {policy}, {limit}");
    let limited = maxmemory.is_some_and(|m| m > 0);
    let fix = "CONFIG SET maxmemory-policy noeviction (and in redis.conf): when full, cache writes fail and the bot reads the database instead, but the limiter's key stays";
    if policy == "noeviction" {
        Check::ok(
            NAME,
            format!("{found}: the rate limiter's key is never evicted"),
        )
    } else if policy.starts_with("allkeys-") && limited {
        Check::fail(NAME, format!("{found}: when full, Redis evicts any key, the rate limiter's too, and replicas then exceed REPLICATE_RATE_LIMIT together"), fix)
    } else if policy.starts_with("allkeys-") || policy.starts_with("volatile-") {
        let why = if limited {
            "the limiter's key has a TTL, so this policy may evict it when memory is full"
        } else {
            "nothing is evicted while maxmemory is 0, but setting one later would evict the limiter's key"
        };
        Check::warn(NAME, format!("{found}: {why}"), fix)
    } else {
        Check::warn(NAME, format!("{found}: unknown policy"), fix)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn policies_that_may_evict_the_limiter_are_refused() {
        assert_eq!(eviction(Some("noeviction"), Some(0)).status, Status::Ok);
        assert_eq!(
            eviction(Some("allkeys-lru"), Some(100 << 20)).status,
            Status::Fail
        );
        assert_eq!(eviction(Some("allkeys-lru"), Some(0)).status, Status::Warn);
        assert_eq!(
            eviction(Some("volatile-ttl"), Some(100 << 20)).status,
            Status::Warn
        );
        assert_eq!(eviction(None, None).status, Status::Warn);
    }
}
