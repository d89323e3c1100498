//! The system-limits check's load, alone and fixed in size, for profiling: the whole bot as
//! the check builds it (the assembly from default settings, a temporary SQLite file, the
//! in-process cache, both mocks, no send budget), `COUNT` updates (`TEXT`, default `/balance`) at `RATE` a
//! second round-robin over `USERS` users, then a wait until every one is answered.
//!
//! ```text
//! cargo run --release -p genbot-bench --example intake_profile -- 20000 3200 16000
//! valgrind --tool=callgrind target/release/examples/intake_profile 2000 200 1000
//! ```
//!
//! Prints the wall time, the answers and the process CPU per update. Under callgrind, two runs
//! of different `COUNT` give instructions per update by their difference (start-up cancels).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use genbot_assembly::BotAssembly;
use genbot_config::{DatabaseUrl, Settings, Sources};
use genbot_engine::EngineConfig;
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{TelegramMock, TelegramMockConfig};
use genbot_telegram::FrontConfig;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

fn arg(position: usize, default: u64) -> anyhow::Result<u64> {
    std::env::args().nth(position).map_or(Ok(default), |text| {
        text.parse()
            .with_context(|| format!("argument {position} ({text:?}) is not a whole number"))
    })
}

/// The allocator `genbot` runs with, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = arg(1, 10_000)?;
    let rate = arg(2, 1_000)?.max(1) as f64;
    let users = arg(3, 5_000)?.max(1) as i64;
    let text = std::env::args().nth(4).unwrap_or_else(|| "/balance".into());

    let telegram = TelegramMock::start(TelegramMockConfig::default()).await?;
    let replicate = ReplicateMock::start(ReplicateMockConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::from_sources(&Sources::from_env(Default::default()))?;
    settings.database_url = DatabaseUrl::Sqlite {
        path: dir.path().join("bot.db"),
    };
    settings.redis_url = None;
    settings.telegram_api_url = telegram.url().parse()?;
    settings.telegram_bot_token = Some(SecretString::from("0:bench"));
    settings.replicate_api_url = replicate.url().parse()?;
    settings.replicate_api_token = Some(SecretString::from("bench"));
    let bot = BotAssembly::from_settings(&settings)
        .with_engine(EngineConfig {
            daily_limit: 1_000_000,
            queue_max: 10_000_000,
            ..EngineConfig::from_settings(&settings)
        })
        .with_front(FrontConfig {
            initial_credits: 100,
            ..FrontConfig::from_settings(&settings)
        })
        .without_send_budget()
        .build()
        .await?;
    let stop = CancellationToken::new();
    let serving = tokio::spawn(bot.serve(
        genbot_telegram::run::Mode::Polling {
            http: None,
            drop_webhook: false,
        },
        stop.clone(),
    ));

    let pool: Vec<_> = (0..users)
        .map(|i| telegram.user(1_000_000 + i, "Load", Some("en")))
        .collect();
    // Every user known to the bot first, as in the check's warm-up, so the count measures
    // steady-state updates rather than first contacts.
    let before = telegram.answers().count();
    for user in &pool {
        user.send_text("/balance");
    }
    wait_for(&telegram, before + pool.len(), Duration::from_secs(600)).await?;

    let cpu_before = process_cpu();
    let started = Instant::now();
    let first = telegram.answers().count();
    let sender = {
        let pool = pool.clone();
        let text = text.clone();
        std::thread::spawn(move || {
            for i in 0..count {
                let intended = started + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                pool[i as usize % pool.len()].send_text(&text);
            }
        })
    };
    wait_for(
        &telegram,
        first + count as usize,
        Duration::from_secs(3_600),
    )
    .await?;
    let wall = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))?;
    let mut latencies = telegram.answers().latencies_since(first);
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    println!(
        "{count} updates at {rate}/s over {users} users: {:.2} s, CPU {:.1} µs per update ({:.0} % of a core), answer p50 {:?} p99 {:?}",
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / count as f64,
        cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
        p(0.5),
        p(0.99),
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), serving).await;
    Ok(())
}

async fn wait_for(telegram: &TelegramMock, answers: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while telegram.answers().count() < answers {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {answers} answers within {within:?}",
            telegram.answers().count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// User plus system CPU of the whole process so far.
fn process_cpu() -> Duration {
    genbot_bench::cpu::process_cpu().unwrap_or_default()
}
