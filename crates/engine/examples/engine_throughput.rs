//! Runs many generations through the engine against the in-process Replicate mock and compares
//! the throughput with its theoretical bound, min(concurrency ÷ latency, rate limit).
//!
//! `cargo run --release -p genbot-engine --example engine_throughput -- [JOBS] [CONCURRENCY] [LATENCY_MS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::LocalRateLimiter;
use genbot_engine::replicate::{PollPolicy, ReplicateClient};
use genbot_engine::{Engine, EngineConfig, GenerationRequest, JobEvent};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_store::{NewUser, SqliteStore, Store, UserId};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("arguments are numbers"))
        .collect::<Result<_, _>>()?;
    let jobs = args.first().copied().unwrap_or(4000) as usize;
    let concurrency = args.get(1).copied().unwrap_or(200) as u32;
    let latency = Duration::from_millis(args.get(2).copied().unwrap_or(500));
    let rate_per_min = 600_000;
    let users = 1000i64;

    let mock = ReplicateMock::start(ReplicateMockConfig {
        median_latency: latency,
        ..ReplicateMockConfig::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("e.db"), 8)?);
    let users_api = Users::new(
        store.clone(),
        UserCache::Memory(MemoryCache::new(Duration::from_secs(300), 100_000)),
    );
    for id in 1..=users {
        users_api
            .upsert(NewUser {
                id: UserId(id),
                username: None,
                language: None,
                initial_credits: 1_000,
            })
            .await?;
    }
    let client = ReplicateClient::new(mock.url().parse()?, Some(&SecretString::from("t")))?
        .with_poll(PollPolicy {
            initial: Duration::from_millis(50),
            factor: 1.5,
            max: Duration::from_millis(100),
        })
        .with_limiter(Arc::new(LocalRateLimiter::new(rate_per_min, 1)));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let engine = Engine::start(
        users_api,
        Catalogue::load(None, "flux-schnell")?,
        client,
        EngineConfig {
            max_concurrent: concurrency,
            per_user: 10,
            daily_limit: 10_000,
            queue_max: 1_000_000,
            timeout: Duration::from_secs(60),
            max_prompt_chars: 1000,
            replica: genbot_engine::ReplicaConfig::single_process(),
        },
        Some(tx),
    )
    .await?;
    let started = Instant::now();
    for n in 0..jobs {
        engine
            .submit(GenerationRequest {
                user: UserId(n as i64 % users + 1),
                prompt: format!("image {n}"),
                model: None,
                params: Default::default(),
                source_update: None,
                reply: None,
            })
            .await?;
    }
    let submitted_in = started.elapsed();
    let (mut done, mut failed) = (0, 0);
    while done < jobs {
        match events.recv().await.context("engine stopped")? {
            JobEvent::Started { .. } => {}
            JobEvent::Failed { .. } => {
                done += 1;
                failed += 1;
            }
            JobEvent::Succeeded { .. } => done += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = jobs as f64 / elapsed;
    let bound =
        (f64::from(concurrency) / latency.as_secs_f64()).min(f64::from(rate_per_min) / 60.0);
    let stats = mock.stats();
    println!("{jobs} jobs, concurrency {concurrency}, latency {latency:?}: submitted in {submitted_in:.2?}, done in {elapsed:.2} s");
    println!(
        "throughput {throughput:.1}/s vs bound {bound:.1}/s → ratio {:.3}; failed {failed}",
        throughput / bound
    );
    println!(
        "mock: created {}, max running {}, polls {}",
        stats.created, stats.max_running, stats.polls
    );
    engine.shutdown().await;
    Ok(())
}
