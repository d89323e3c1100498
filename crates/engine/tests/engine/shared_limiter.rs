//! The Redis-shared rate limiter: two "replicas" on one key share one rate; without Redis
//! each process keeps its own rate.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_config::RedactedUrl;
use genbot_engine::limiter::{RateLimiter, SharedRateLimiter};

/// `REDIS_URL`, or `None` said aloud (a failure under CI).
fn redis_url(test: &str) -> Option<RedactedUrl> {
    let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but REDIS_URL is not"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: set REDIS_URL=redis://127.0.0.1:6379 to run it"
        );
        return None;
    };
    Some(RedactedUrl::new(url.parse().unwrap()))
}

/// Admits `each` creations on every limiter at once; returns how long all took.
async fn admit_on_all(limiters: &[Arc<SharedRateLimiter>], each: usize) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = limiters
        .iter()
        .map(|limiter| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    limiter.acquire().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_rate() {
    let Some(url) = redis_url("two_replicas_share_one_rate") else {
        return;
    };
    let key = format!("genbot:test:{:016x}:limiter", rand::random::<u64>());
    // 1200/min = one every 50 ms. Two replicas × 10 admissions = 20, spanning 19 intervals
    // when shared (≈ 950 ms); two separate limiters would take ≈ 450 ms.
    let replicas: Vec<_> = (0..2)
        .map(|_| Arc::new(SharedRateLimiter::new(&url, &key, 1200, 1).unwrap()))
        .collect();
    let elapsed = admit_on_all(&replicas, 10).await;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1_500),
        "20 shared admissions at 1200/min took {elapsed:?}"
    );
    for replica in &replicas {
        let stats = replica.stats();
        assert_eq!((stats.admitted, stats.fallbacks), (10, 0), "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_process_limits_itself() {
    let url = RedactedUrl::new("redis://127.0.0.1:1/".parse().unwrap());
    let limiter = Arc::new(SharedRateLimiter::new(&url, "genbot:test:down", 1200, 1).unwrap());
    let elapsed = admit_on_all(std::slice::from_ref(&limiter), 6).await;
    // Locally at 1200/min: 5 intervals ≈ 250 ms, plus the first refused connection.
    assert!(
        elapsed >= Duration::from_millis(240) && elapsed < Duration::from_millis(1_000),
        "{elapsed:?}"
    );
    let stats = limiter.stats();
    assert_eq!((stats.admitted, stats.fallbacks), (6, 6), "{stats:?}");
}
