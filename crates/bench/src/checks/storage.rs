//! DB read, DB write, cache and memory: the store and cache the bot uses, measured closed-loop.

use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_store::UserId;

use crate::context::Context;
use crate::grade::Grade;
use crate::measure::{cache_read_through, db_read as measure_read, db_write as measure_write};
use crate::outcome::{TestId, TestOutcome};
use crate::rss::{megabytes, rss_bytes};

/// Zipf skew of the cache test's key pattern (a few users do most of the talking).
const ZIPF_SKEW: f64 = 1.1;

pub async fn db_read(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::DbRead, ctx.lang);
    let t = measure_read(
        &ctx.target.store,
        ctx.seeded.clone(),
        ctx.workers(),
        ctx.duration,
    )
    .await;
    let pool = ctx.target.store.pool_stats();
    out.metric("rps", t.rps)
        .metric("p50_ms", t.latency.p50_ms)
        .metric("p95_ms", t.latency.p95_ms)
        .metric("p99_ms", t.latency.p99_ms)
        .metric("max_ms", t.latency.max_ms)
        .metric("errors", t.errors as f64)
        .metric("reads", t.ops as f64);
    out.fact(ctx.text(
        format!(
            "{} user-by-id reads from {} workers over {:?} on {} ({} users, pool of {})",
            t.ops,
            ctx.workers(),
            ctx.duration,
            ctx.target.store.backend(),
            ctx.seeded.end - ctx.seeded.start,
            pool.size
        ),
        format!(
            "{} чтений пользователя по id из {} потоков за {:?}, {} ({} пользователей, пул {})",
            t.ops,
            ctx.workers(),
            ctx.duration,
            ctx.target.store.backend(),
            ctx.seeded.end - ctx.seeded.start,
            pool.size
        ),
    ));
    out.grade = if t.errors > 0 {
        Grade::NeedsOptimization
    } else {
        ctx.thresholds.db_read(t.rps)
    };
    if out.grade != Grade::Excellent {
        out.recommend(ctx.text(
            format!("DB reads: {:.0} RPS, p99 {:.1} ms with DB_POOL_SIZE={}: add indexes, optimise queries, raise the pool (connection pooling).", t.rps, t.latency.p99_ms, ctx.settings.db_pool_size),
            format!("Чтение из БД: {:.0} RPS, p99 {:.1} мс при DB_POOL_SIZE={}: добавьте индексы, оптимизируйте запросы, увеличьте пул соединений.", t.rps, t.latency.p99_ms, ctx.settings.db_pool_size),
        ));
    }
    out
}

pub async fn db_write(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::DbWrite, ctx.lang);
    let w = measure_write(
        &ctx.target.store,
        ctx.seeded.clone(),
        ctx.workers(),
        ctx.duration,
    )
    .await;
    out.metric("rps", w.upserts.rps)
        .metric("p50_ms", w.upserts.latency.p50_ms)
        .metric("p99_ms", w.upserts.latency.p99_ms)
        .metric("job_insert_rps", w.job_inserts.rps)
        .metric("job_insert_p99_ms", w.job_inserts.latency.p99_ms)
        .metric("errors", (w.upserts.errors + w.job_inserts.errors) as f64);
    out.fact(ctx.text(
        format!(
            "durable user upserts and job inserts from {} workers, {:?} each; durability: {}",
            ctx.workers(),
            ctx.duration,
            ctx.target.store.durability()
        ),
        format!(
            "надёжные upsert пользователей и вставки задач из {} потоков, по {:?}; надёжность: {}",
            ctx.workers(),
            ctx.duration,
            ctx.target.store.durability()
        ),
    ));
    let errors = w.upserts.errors + w.job_inserts.errors;
    out.grade = if errors > 0 {
        Grade::NeedsOptimization
    } else {
        ctx.thresholds
            .db_write(w.upserts.rps.min(w.job_inserts.rps))
    };
    if out.grade != Grade::Excellent {
        out.recommend(ctx.text(
            format!("DB writes: {:.0} upserts/s, {:.0} job inserts/s: batch writes, check indexes on generation_jobs, use connection pooling.", w.upserts.rps, w.job_inserts.rps),
            format!("Запись в БД: {:.0} upsert/с, {:.0} вставок задач/с: группируйте записи, проверьте индексы generation_jobs, используйте пул соединений.", w.upserts.rps, w.job_inserts.rps),
        ));
    }
    out
}

pub async fn cache(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::Cache, ctx.lang);
    let m = cache_read_through(
        &ctx.target.users,
        ctx.seeded.clone(),
        ZIPF_SKEW,
        ctx.workers(),
        ctx.duration,
    )
    .await;
    let kind = ctx.target.users.cache().kind();
    out.metric("reads", m.reads.ops as f64)
        .metric("hit_rate", m.hit_rate().unwrap_or(0.0))
        .metric("hit_ms", m.stats.mean_hit.as_secs_f64() * 1000.0)
        .metric("miss_ms", m.stats.mean_miss.as_secs_f64() * 1000.0)
        .metric("speed_up", m.speed_up().unwrap_or(0.0))
        .metric("errors", m.stats.errors as f64)
        .metric("rps", m.reads.rps);
    out.fact(ctx.text(
        format!("{} read-through reads, Zipf(s={ZIPF_SKEW}) over {} users, starting cold; cache: {kind}", m.reads.ops, ctx.seeded.end - ctx.seeded.start),
        format!("{} чтений через кэш, Zipf(s={ZIPF_SKEW}) по {} пользователям, холодный старт; кэш: {kind}", m.reads.ops, ctx.seeded.end - ctx.seeded.start),
    ));
    out.grade = ctx.thresholds.cache(m.hit_rate());
    if m.hit_rate().is_none() {
        out.recommend(ctx.text(
            format!("Redis is unavailable ({} errors; reads fell through to the database): set up a Redis server and REDIS_URL — it improves performance considerably.", m.stats.errors),
            format!("Redis недоступен ({} ошибок; чтения шли в БД): настройте сервер Redis и REDIS_URL — это заметно ускорит работу.", m.stats.errors),
        ));
    } else if out.grade != Grade::Excellent {
        out.recommend(ctx.text(
            format!("Cache hit rate {:.1} %: raise CACHE_TTL_SECONDS ({}) or CACHE_MAX_ENTRIES ({}).", m.stats.hit_rate() * 100.0, ctx.settings.cache_ttl.as_secs(), ctx.settings.cache_max_entries),
            format!("Попадания в кэш {:.1} %: увеличьте CACHE_TTL_SECONDS ({}) или CACHE_MAX_ENTRIES ({}).", m.stats.hit_rate() * 100.0, ctx.settings.cache_ttl.as_secs(), ctx.settings.cache_max_entries),
        ));
    }
    out
}

/// RSS before and after loading every test user into a fresh cache of the bot's kind (the
/// earlier tests' cache is warm already and would hide the growth).
pub async fn memory(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::Memory, ctx.lang);
    let Some(before) = rss_bytes() else {
        out.fact("RSS is not readable on this platform (needs /proc)");
        return out;
    };
    let cache = match ctx.target.users.cache() {
        UserCache::Memory(_) => UserCache::Memory(MemoryCache::new(
            ctx.settings.cache_ttl,
            ctx.settings.cache_max_entries,
        )),
        redis @ UserCache::Redis(_) => redis.clone(),
    };
    let fresh = Users::new(ctx.target.store.clone(), cache);
    let users = ctx.seeded.end - ctx.seeded.start;
    let mut errors = 0u64;
    for id in ctx.seeded.clone() {
        if fresh.get(UserId(id)).await.is_err() {
            errors += 1;
        }
    }
    let after = rss_bytes().unwrap_or(before);
    let process_growth = after.saturating_sub(before);
    // A Redis cache grows Redis, not this process: its entries are weighed there, all of
    // them (some may be warm from earlier tests), so the grade is the cache's whole footprint.
    let in_redis = match ctx.target.users.cache() {
        UserCache::Memory(_) => None,
        UserCache::Redis(redis) => {
            let ids: Vec<UserId> = ctx.seeded.clone().map(UserId).collect();
            match redis.stored_bytes(&ids).await {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    out.fact(format!("could not read Redis's MEMORY USAGE: {e}"));
                    return out;
                }
            }
        }
    };
    let growth = process_growth + in_redis.unwrap_or(0);
    out.metric("rss_before_mb", megabytes(before))
        .metric("rss_after_mb", megabytes(after))
        .metric("growth_mb", megabytes(growth))
        .metric("bytes_per_user", growth as f64 / users.max(1) as f64)
        .metric("users", users as f64);
    match in_redis {
        None => out.fact(ctx.text(
            format!("RSS {:.1} MB → {:.1} MB after reading {users} users through a fresh in-process cache", megabytes(before), megabytes(after)),
            format!("RSS {:.1} МБ → {:.1} МБ после чтения {users} пользователей через новый кэш в процессе", megabytes(before), megabytes(after)),
        )),
        Some(bytes) => {
            out.metric("redis_mb", megabytes(bytes));
            out.fact(ctx.text(
                format!("the cache is in Redis: its entries for {users} users take {:.2} MB there (MEMORY USAGE); this process's RSS {:.1} MB → {:.1} MB; graded on both", megabytes(bytes), megabytes(before), megabytes(after)),
                format!("кэш в Redis: записи {users} пользователей занимают там {:.2} МБ (MEMORY USAGE); RSS процесса {:.1} МБ → {:.1} МБ; оценка по сумме", megabytes(bytes), megabytes(before), megabytes(after)),
            ))
        }
    };
    out.grade = if errors > 0 {
        Grade::NeedsOptimization
    } else {
        ctx.thresholds.memory_growth(megabytes(growth))
    };
    if out.grade != Grade::Excellent {
        out.recommend(ctx.text(
            format!("Memory grew {:.1} MB ({:.0} bytes per user): check for leaks, store less per cached user, lower CACHE_MAX_ENTRIES ({}).", megabytes(growth), growth as f64 / users.max(1) as f64, ctx.settings.cache_max_entries),
            format!("Память выросла на {:.1} МБ ({:.0} байт на пользователя): проверьте утечки, храните меньше, уменьшите CACHE_MAX_ENTRIES ({}).", megabytes(growth), growth as f64 / users.max(1) as f64, ctx.settings.cache_max_entries),
        ));
    }
    out
}
