//! The stage a fault test plays on: both mocks, the bot's database and Redis behind fault
//! proxies, and the replicas of the bot under test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use genbot_config::{DatabaseUrl, RedactedUrl};
use genbot_mocks::fault_proxy::FaultProxy;
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::repeats::Kill;
use genbot_mocks::telegram::{TelegramMock, TelegramMockConfig};
use genbot_store::scratch::ScratchDatabase;
use genbot_store::Store;
use parking_lot::Mutex;

use super::process::BotProcess;
use super::FaultError;
use crate::context::Context;

/// What a fault test needs of its stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageSpec {
    /// A fault proxy in front of the database (PostgreSQL only).
    pub(crate) database_proxy: bool,
    /// Use Redis (when the run has one), behind a fault proxy.
    pub(crate) redis: bool,
    pub(crate) replicate: ReplicateMockConfig,
    /// Settings for the replicas beyond the stage's defaults (these win).
    pub(crate) env: Vec<(&'static str, String)>,
}

enum Database {
    Sqlite,
    Postgres(Box<ScratchDatabase>),
}

/// Redis as the replicas see it.
pub(crate) struct StageRedis {
    /// The real server (for the audit's own reads).
    pub(crate) url: RedactedUrl,
    /// Every key of this stage starts with it.
    pub(crate) prefix: String,
    pub(crate) proxy: FaultProxy,
}

pub(crate) struct Stage {
    pub(crate) telegram: TelegramMock,
    pub(crate) replicate: ReplicateMock,
    /// The suite's own connection to the stage's database, not through the proxy.
    pub(crate) store: Store,
    pub(crate) database_proxy: Option<FaultProxy>,
    pub(crate) redis: Option<StageRedis>,
    /// `embedded SQLite` or `PostgreSQL (scratch database …)`, for the report.
    pub(crate) database_label: String,
    database: Database,
    env: Vec<(String, String)>,
    program: PathBuf,
    dir: tempfile::TempDir,
    /// Every SIGKILL of a replica, in order.
    kills: Arc<Mutex<Vec<Kill>>>,
}

/// The loopback address of a URL's host and port, for a proxy in front of it.
fn socket_of(url: &str, default_port: u16) -> Option<SocketAddr> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?;
    let port = url.port().unwrap_or(default_port);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()?
        .next()
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, proxy: SocketAddr) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_host(Some(&proxy.ip().to_string()));
            let _ = parsed.set_port(Some(proxy.port()));
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

impl Stage {
    /// Whether the run has a PostgreSQL server (`--database-url postgres://…`).
    pub(crate) fn has_postgres(ctx: &Context) -> bool {
        matches!(ctx.database_url, Some(DatabaseUrl::Postgres(_)))
    }

    /// Sets the stage up; `program` is the `genbot` executable.
    pub(crate) async fn open(
        ctx: &Context,
        program: PathBuf,
        spec: StageSpec,
    ) -> Result<Stage, FaultError> {
        let telegram = TelegramMock::start(TelegramMockConfig {
            // What users see is measured under Telegram's send budget (429 + retry_after
            // past 30/s per bot, ~1/s per chat, 20/min per group): a bot's 429 handling is
            // measured, not its absence rewarded.
            enforce_limits: true,
            ..TelegramMockConfig::default()
        })
        .await
        .map_err(FaultError::Mock)?;
        let replicate = ReplicateMock::start(spec.replicate.clone())
            .await
            .map_err(FaultError::Mock)?;
        let dir = tempfile::tempdir().map_err(FaultError::TempDir)?;
        let (database, direct_url, label) = match &ctx.database_url {
            Some(DatabaseUrl::Postgres(server)) => {
                let scratch = ScratchDatabase::create(server).await?;
                let url = scratch.url();
                let label = format!(
                    "PostgreSQL {} (scratch database {}, dropped after)",
                    server.host_port(),
                    scratch.name()
                );
                (Database::Postgres(Box::new(scratch)), url, label)
            }
            _ => (
                Database::Sqlite,
                DatabaseUrl::Sqlite {
                    path: dir.path().join("bot.db"),
                },
                "embedded SQLite (temporary file)".to_owned(),
            ),
        };
        // The suite connects first: the schema exists before any replica starts.
        let store = Store::connect(&direct_url, 4).await?;
        let mut bot_database_url = match &direct_url {
            DatabaseUrl::Postgres(url) => url.expose().to_owned(),
            DatabaseUrl::Sqlite { path } => format!("sqlite://{}", path.display()),
        };
        let database_proxy = match (&direct_url, spec.database_proxy) {
            (DatabaseUrl::Postgres(url), true) => {
                let upstream = socket_of(url.expose(), 5432).ok_or_else(|| {
                    FaultError::Mock(std::io::Error::other("database host not resolvable"))
                })?;
                let proxy = FaultProxy::start(upstream)
                    .await
                    .map_err(FaultError::Mock)?;
                bot_database_url = through(&bot_database_url, proxy.address());
                Some(proxy)
            }
            _ => None,
        };
        let redis = match (&ctx.settings.redis_url, spec.redis) {
            (Some(url), true) => {
                let upstream = socket_of(url.expose(), 6379).ok_or_else(|| {
                    FaultError::Redis(url.to_string(), "host not resolvable".into())
                })?;
                let proxy = FaultProxy::start(upstream)
                    .await
                    .map_err(FaultError::Mock)?;
                Some(StageRedis {
                    url: url.clone(),
                    // Under the deployment's own prefix, so that runs beside each other with
                    // their own prefixes can each find (and clean) only their keys.
                    prefix: format!(
                        "{}bench:{:012x}:",
                        ctx.settings.redis_key_prefix,
                        rand::random::<u64>() >> 16
                    ),
                    proxy,
                })
            }
            _ => None,
        };
        let mut env: Vec<(String, String)> = [
            ("TELEGRAM_BOT_TOKEN", "0:bench-faults".to_owned()),
            ("TELEGRAM_API_URL", telegram.url().to_owned()),
            ("REPLICATE_API_URL", replicate.url().to_owned()),
            ("REPLICATE_API_TOKEN", "r8_bench-faults".to_owned()),
            ("DATABASE_URL", bot_database_url),
            (
                "MAX_CONCURRENT_GENERATIONS",
                ctx.settings.max_concurrent_generations.to_string(),
            ),
            (
                "REPLICATE_RATE_LIMIT",
                ctx.settings.replicate_rate_limit_per_min.to_string(),
            ),
            // Limits a user could hit are lifted: every refusal would blur the count of
            // what a fault lost.
            ("MAX_CONCURRENT_GENERATIONS_PER_USER", "20".to_owned()),
            ("DAILY_GENERATION_LIMIT", "1000".to_owned()),
            ("QUEUE_MAX_LENGTH", "100000".to_owned()),
            // Short leases so a take-over fits in the run (stated in the report).
            ("JOB_LEASE_SECONDS", LEASE_SECONDS.to_string()),
            ("JOB_HEARTBEAT_SECONDS", "1".to_owned()),
            ("SHUTDOWN_GRACE_SECONDS", "2".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(redis) = &redis {
            env.push((
                "REDIS_URL".into(),
                through(redis.url.expose(), redis.proxy.address()),
            ));
            env.push(("REDIS_KEY_PREFIX".into(), redis.prefix.clone()));
        }
        for (key, value) in spec.env {
            env.retain(|(k, _)| k != key);
            env.push((key.to_owned(), value));
        }
        Ok(Stage {
            telegram,
            replicate,
            store,
            database_proxy,
            redis,
            database_label: label,
            database,
            env,
            program,
            dir,
            kills: Arc::default(),
        })
    }

    /// A replica named `name` (its `REPLICA_ID`), not started yet.
    pub(crate) fn replica(&self, name: &str) -> Result<BotProcess, FaultError> {
        let mut env = self.env.clone();
        env.push(("REPLICA_ID".into(), name.to_owned()));
        BotProcess::new(
            name,
            &self.program,
            env,
            self.dir.path(),
            self.kills.clone(),
        )
    }

    /// The SIGKILLs of the stage's replicas so far, in order.
    pub(crate) fn kills(&self) -> Vec<Kill> {
        self.kills.lock().clone()
    }

    /// Removes what the stage created: the scratch database, the Redis keys under its prefix.
    /// Replicas must be killed first.
    pub(crate) async fn close(self) {
        if let Store::Postgres(pg) = &self.store {
            pg.close().await;
        }
        if let Database::Postgres(scratch) = self.database {
            if let Err(e) = scratch.drop_now().await {
                tracing::warn!(error = %e, "dropping the fault tests' scratch database failed");
            }
        }
        if let Some(redis) = &self.redis {
            if let Err(e) = delete_keys(&redis.url, &redis.prefix).await {
                tracing::warn!(error = %e, prefix = %redis.prefix, "removing the fault tests' Redis keys failed");
            }
        }
    }
}

/// The job lease the replicas run with.
pub(crate) const LEASE_SECONDS: u64 = 3;

async fn delete_keys(url: &RedactedUrl, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url.expose())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: u64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}
