//! Cache settings: the TTL mechanism measured (an entry expires on time) and the capacity bound
//! observed (entries beyond `CACHE_MAX_ENTRIES` are evicted), with advice on the values.

use std::time::{Duration, Instant};

use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_store::UserId;

use crate::checks::CheckError;
use crate::context::Context;
use crate::grade::Grade;
use crate::outcome::{TestId, TestOutcome};

pub async fn run(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::CacheSettings, ctx.lang);
    if let Err(e) = measure(ctx, &mut out).await {
        out.fact(format!("could not run: {e}"));
        out.grade = Grade::NeedsOptimization;
    }
    out
}

async fn measure(ctx: &Context, out: &mut TestOutcome) -> Result<(), CheckError> {
    let ttl = ctx.settings.cache_ttl;
    let capacity = ctx.settings.cache_max_entries;
    out.metric("ttl_seconds", ttl.as_secs_f64())
        .metric("max_entries", capacity as f64);

    // Expiry: the configured TTL may be minutes long; the mechanism is measured on a scaled
    // TTL through the same cache type the bot uses.
    let probe_ttl = Duration::from_millis(400);
    let store = ctx.target.store.clone();
    let user = UserId(ctx.seeded.start);
    let probe = Users::new(
        store.clone(),
        UserCache::Memory(MemoryCache::new(probe_ttl, 1_000)),
    );
    probe.get(user).await?;
    let filled = Instant::now();
    let mut expired_after = None;
    while filled.elapsed() < probe_ttl * 3 {
        let before = probe.stats().misses;
        probe.get(user).await?;
        if probe.stats().misses > before {
            expired_after = Some(filled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let expired_ms = expired_after.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    out.metric("probe_ttl_ms", probe_ttl.as_secs_f64() * 1000.0)
        .metric("measured_expiry_ms", expired_ms);
    let on_time = expired_after
        .is_some_and(|d| d >= probe_ttl && d <= probe_ttl + Duration::from_millis(150));

    // Capacity: fill a cache of the configured size (scaled down past 10,000 entries so the test
    // stays short) with twice as many users.
    // Twice as many users as the bound are read, so the bound must evict: with fewer seeded
    // users than that (quick mode), the bound tested shrinks to half of them, or a cache that
    // never evicts would hold "within its bound" by construction.
    let seeded = (ctx.seeded.end - ctx.seeded.start).max(0) as u64;
    let bound = capacity.clamp(1, 10_000).min((seeded / 2).max(1));
    let memory = MemoryCache::new(Duration::from_secs(600), bound);
    let bounded = Users::new(store, UserCache::Memory(memory.clone()));
    let reads = (bound * 2).min(seeded);
    for id in ctx.seeded.start..ctx.seeded.start + reads as i64 {
        bounded.get(UserId(id)).await?;
    }
    let held = memory.entry_count();
    let evicted = memory.evictions();
    out.metric("capacity_tested", bound as f64)
        .metric("entries_held", held as f64)
        .metric("evictions", evicted as f64);
    // Held within the bound, and the bound was reached (entries evicted to keep it).
    let bounded_ok = held <= bound && (reads <= bound || evicted > 0);

    out.fact(ctx.text(
        format!("TTL mechanism: an entry with a {probe_ttl:?} TTL expired after {expired_ms:.0} ms; capacity {bound}: {reads} users read, {held} held, {evicted} evicted"),
        format!("TTL: запись с TTL {probe_ttl:?} истекла через {expired_ms:.0} мс; ёмкость {bound}: прочитано {reads}, хранится {held}, вытеснено {evicted}"),
    ));
    if ctx.settings.redis_url.is_some() {
        out.fact(ctx.text(
            "REDIS_URL is set: the bot caches in Redis (TTL via PSETEX); capacity is Redis's maxmemory policy, not CACHE_MAX_ENTRIES.",
            "REDIS_URL задан: кэш в Redis (TTL через PSETEX); ёмкость задаёт maxmemory Redis, а не CACHE_MAX_ENTRIES.",
        ));
    }
    let sensible_ttl = (30..=3_600).contains(&ttl.as_secs());
    out.grade = match (on_time && bounded_ok, sensible_ttl) {
        (false, _) => Grade::NeedsOptimization,
        (true, true) => Grade::Excellent,
        (true, false) => Grade::Good,
    };
    if ttl.as_secs() < 30 {
        out.recommend(ctx.text(
            format!("CACHE_TTL_SECONDS={} is short: users are re-read from the database every few seconds; 300 is a good start.", ttl.as_secs()),
            format!("CACHE_TTL_SECONDS={} — слишком мало: пользователи перечитываются из БД каждые несколько секунд; начните с 300.", ttl.as_secs()),
        ));
    } else if ttl.as_secs() > 3_600 {
        out.recommend(ctx.text(
            format!("CACHE_TTL_SECONDS={} is long: a copy changed outside the bot stays stale that long; 300–900 is usual.", ttl.as_secs()),
            format!("CACHE_TTL_SECONDS={} — слишком долго: изменённые вне бота данные так долго будут устаревшими; обычно 300–900.", ttl.as_secs()),
        ));
    }
    if !on_time {
        out.recommend(ctx.text("Cache entries did not expire on time: check the cache backend's clock and TTL handling.", "Записи кэша не истекают вовремя: проверьте TTL в бэкенде кэша."));
    }
    Ok(())
}
