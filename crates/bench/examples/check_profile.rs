//! One in-process check of `genbot bench performance`, alone, for profiling and for A/B runs
//! that would otherwise wait for the whole suite: `concurrent` (the concurrent-users crowd) or
//! `limits` (the system-limits ramp), on the embedded default (a temporary SQLite file, the
//! in-process cache, default settings), full-length unless `--quick` follows.
//!
//! ```text
//! cargo run --release -p genbot-bench --example check_profile -- concurrent
//! perf record -F 499 -g target/release/examples/check_profile limits --quick
//! ```
//!
//! Prints the check's figures (its metrics, one per line). The user-facing half of the
//! concurrent-users test (`genbot serve` as a child) runs only when `GENBOT_BIN` names the
//! `genbot` binary to start (`GENBOT_BIN=target/release/genbot`).

use std::time::Duration;

use anyhow::Context as _;
use genbot_bench::context::Context;
use genbot_bench::grade::{Lang, Thresholds};
use genbot_bench::outcome::TestOutcome;
use genbot_bench::target::Target;
use genbot_config::{Settings, Sources};

/// The allocator `genbot` runs with, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let check = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "concurrent".into());
    let quick = std::env::args().any(|arg| arg == "--quick");
    let settings = Settings::from_sources(&Sources::from_env(Default::default()))?;
    let target = Target::embedded(
        None,
        settings.cache_ttl,
        settings.cache_max_entries,
        settings.db_pool_size,
    )
    .await?;
    let seeded = target
        .seed_users(if quick { 10_000 } else { 50_000 })
        .await?;
    let ctx = Context {
        settings,
        thresholds: Thresholds::default(),
        lang: Lang::En,
        quick,
        users: if quick { 1_000 } else { 10_000 },
        duration: Duration::from_secs(if quick { 2 } else { 10 }),
        target,
        seeded,
        live_replicate: false,
        replicate_webhooks: false,
        database_url: None,
        bot_program: std::env::var_os("GENBOT_BIN").map(std::path::PathBuf::from),
        blackbox: None,
        seed: 1,
    };
    let cpu_before = genbot_bench::cpu::process_cpu();
    let started = std::time::Instant::now();
    let outcome: TestOutcome = match check.as_str() {
        "concurrent" => genbot_bench::checks::concurrent_users::run(&ctx).await,
        "limits" => genbot_bench::checks::system_limits::run(&ctx).await,
        other => anyhow::bail!("unknown check {other:?}: concurrent or limits"),
    };
    // The check's own CPU (seeding excluded; this process only: bot, mocks and users, not a
    // `genbot serve` child): steadier than its latencies on a shared machine.
    if let (Some(before), Some(after)) = (cpu_before, genbot_bench::cpu::process_cpu()) {
        let cpu = after.saturating_sub(before).as_secs_f64();
        println!(
            "process_cpu_s {cpu:.2} over {:.1} s of wall time",
            started.elapsed().as_secs_f64()
        );
    }
    let json = serde_json::to_value(&outcome).context("the outcome as JSON")?;
    if let Some(metrics) = json.get("metrics").and_then(|m| m.as_object()) {
        for (name, value) in metrics {
            println!("{name} {value}");
        }
    }
    // The latency curves, one line per percentile: where in the run the time went.
    for series in json
        .get("series")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        let id = series
            .get("id")
            .and_then(|i| i.as_str())
            .unwrap_or_default();
        if !id.contains("latency") && !id.contains("answers") {
            continue;
        }
        for line in series
            .get("lines")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            let points: Vec<String> = line
                .get("points")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
                .filter_map(|point| point.get(1).and_then(serde_json::Value::as_f64))
                .map(|ms| format!("{ms:.0}"))
                .collect();
            let name = line
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default();
            println!("{id} {name}: {}", points.join(" "));
        }
    }
    Ok(())
}
