//! Measures user-by-id reads/s and durable upserts/s on a fresh SQLite file (or on
//! `--postgres URL`), with many concurrent tasks on a multi-threaded runtime.
//!
//! `cargo run --release -p genbot-store --example store_throughput -- [SECONDS] [TASKS]`
//! The readiness suite (`genbot bench`) measures the same with latency percentiles; this is
//! the quick check used while tuning the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use genbot_config::DatabaseUrl;
use genbot_store::{NewUser, Store, UserId};

const USERS: i64 = 10_000;
const FIRST_ID: i64 = 1_000_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args
        .first()
        .map_or(Ok(3), |s| s.parse())
        .context("SECONDS")?;
    let tasks: usize = args.get(1).map_or(Ok(64), |s| s.parse()).context("TASKS")?;
    let dir = tempfile::tempdir()?;
    let url = match std::env::var("STORE_URL") {
        Ok(url) => DatabaseUrl::parse(&url).map_err(anyhow::Error::msg)?,
        Err(_) => DatabaseUrl::Sqlite {
            path: dir.path().join("bench.db"),
        },
    };
    let store = Store::connect(&url, 8).await?;
    store
        .delete_users_in_range(FIRST_ID..FIRST_ID + USERS)
        .await?;
    for id in FIRST_ID..FIRST_ID + USERS {
        store.upsert_user(user(id)).await?;
    }
    println!(
        "{} · {tasks} tasks · {seconds} s each · {} cores",
        store.backend(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let reads = run(&store, tasks, seconds, |store, n| async move {
        let id = FIRST_ID + (n.wrapping_mul(2_654_435_761) % USERS as u64) as i64;
        store
            .get_user(UserId(id))
            .await
            .map(|u| assert!(u.is_some()))
    })
    .await?;
    println!("user-by-id reads : {reads:>10.0} /s");
    let writes = run(&store, tasks, seconds, |store, n| async move {
        let id = FIRST_ID + (n % USERS as u64) as i64;
        store.upsert_user(user(id)).await.map(|_| ())
    })
    .await?;
    println!(
        "durable upserts  : {writes:>10.0} /s   ({})",
        store.durability()
    );
    store
        .delete_users_in_range(FIRST_ID..FIRST_ID + USERS)
        .await?;
    Ok(())
}

fn user(id: i64) -> NewUser {
    NewUser {
        id: UserId(id),
        username: Some(format!("bench{id}")),
        language: Some("en".into()),
        initial_credits: 10,
    }
}

async fn run<F, Fut>(store: &Store, tasks: usize, seconds: u64, op: F) -> anyhow::Result<f64>
where
    F: Fn(Store, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<(), genbot_store::StoreError>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks as u64)
        .map(|t| {
            let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = t * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    op(store.clone(), n).await?;
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, genbot_store::StoreError>(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
