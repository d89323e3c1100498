//! The parts under the front end, from the settings: store → cache → catalogue → Replicate
//! client → engine.

use std::sync::Arc;
use std::time::Duration;

use genbot_cache::{UserCache, Users};
use genbot_config::{DatabaseUrl, RedactedUrl, Settings};
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::{LocalRateLimiter, RateLimiter, SharedRateLimiter};
use genbot_engine::replicate::webhook::WebhookSecret;
use genbot_engine::replicate::{PollPolicy, ReplicateClient, WebhookSettings};
use genbot_engine::{Engine, EngineConfig, JobEvent};
use genbot_store::{PgOptions, ReplicaIdHold, Store, StoreError};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AssemblyError;

/// Opens `DATABASE_URL` with `DB_POOL_SIZE` connections, a PostgreSQL pool waiting
/// `DB_CONNECT_TIMEOUT_SECONDS` for one.
pub(crate) async fn connect(settings: &Settings) -> Result<Store, StoreError> {
    let pg = PgOptions {
        acquire_timeout: settings.db_connect_timeout,
    };
    Store::connect_with(&settings.database_url, settings.db_pool_size, pg).await
}

/// Longest pause between two tries of an unreachable database.
const CONNECT_PAUSE_MAX: Duration = Duration::from_secs(30);

/// As [`connect`], but an unreachable PostgreSQL server is waited for with backoff until `stop`
/// fires (then `None`): replicas started before their database come up by themselves.
pub(crate) async fn connect_waiting(
    settings: &Settings,
    stop: &CancellationToken,
) -> Result<Option<Store>, StoreError> {
    let mut pause = Duration::from_millis(500);
    loop {
        match connect(settings).await {
            Ok(store) => return Ok(Some(store)),
            Err(e @ StoreError::Connect { .. })
                if matches!(settings.database_url, DatabaseUrl::Postgres(_)) =>
            {
                tracing::warn!(
                    database = %settings.database_url,
                    error = %e,
                    retry_in = ?pause,
                    "waiting for the database"
                );
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(CONNECT_PAUSE_MAX);
    }
}

/// How often a start waiting for `REPLICA_ID` tries again: quickly at first (a holder that
/// stops or dies on its host lets go at once, and a restart should not linger), then every 2 s
/// (a holder whose host vanished lets go only after ~25 s of keepalives anyway); and how often
/// it says so.
const REPLICA_ID_RETRY_QUICK: Duration = Duration::from_millis(250);
const REPLICA_ID_QUICK_FOR: Duration = Duration::from_secs(5);
const REPLICA_ID_RETRY: Duration = Duration::from_secs(2);
const REPLICA_ID_REMINDER: Duration = Duration::from_secs(30);

/// How often a held `REPLICA_ID` is checked while the bot runs (see [`ReplicaIdHold::keep`]):
/// one cheap query on its own connection.
pub(crate) const REPLICA_ID_CHECK: Duration = Duration::from_secs(10);

/// Holds `REPLICA_ID` on `store` (see [`Store::hold_replica_id`]). With `stop`, an id another
/// live process holds is waited for, with a warning at once and every 30 s, until it comes free
/// (the holder stopped, or died: at once on this host, within about 30 s when its host vanished)
/// or `stop` fires (then `None`); without, one try (`None` when held). Waiting is safe where
/// exiting is not: a restart refused for good would leave the replica down, and a twin that
/// waits takes nothing. The tries share one connection (a new one only after it broke). A
/// database that fails the first attempt is warned of and not waited for: the check guards
/// against a mistake and must not keep a replica down; once the id was seen held, a failed try
/// is warned of and the wait goes on (a twin must not start beside its holder on a blip).
pub(crate) async fn hold_replica_id(
    settings: &Settings,
    store: &Store,
    stop: Option<&CancellationToken>,
) -> Option<ReplicaIdHold> {
    let id = &settings.replica_id;
    let mut claim = store.replica_id_claim(id);
    let started = tokio::time::Instant::now();
    let mut next_warning = started;
    let mut seen_held = false;
    loop {
        match claim.try_take().await {
            Ok(Some(hold)) => return Some(hold),
            Ok(None) => seen_held = true,
            Err(e) if seen_held => {
                tracing::warn!(error = %e, "could not try REPLICA_ID again; still waiting for it");
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not check that REPLICA_ID is this process's alone; starting without the check");
                return Some(ReplicaIdHold::none());
            }
        }
        let Some(stop) = stop else {
            claim.close().await;
            return None;
        };
        if tokio::time::Instant::now() >= next_warning {
            tracing::warn!(
                holder = %ReplicaIdHold::application_name(id),
                "{}; waiting for it to end before starting",
                replica_id_held_text(id)
            );
            next_warning += REPLICA_ID_REMINDER;
        }
        let pause = if started.elapsed() < REPLICA_ID_QUICK_FOR {
            REPLICA_ID_RETRY_QUICK
        } else {
            REPLICA_ID_RETRY
        };
        tokio::select! {
            () = stop.cancelled() => {
                claim.close().await;
                return None;
            }
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// The refusal of a start whose `REPLICA_ID` another live process holds.
pub(crate) fn replica_id_held(settings: &Settings) -> AssemblyError {
    AssemblyError::Config(replica_id_held_text(&settings.replica_id))
}

fn replica_id_held_text(id: &str) -> String {
    format!(
        "REPLICA_ID={id:?} is held by another live genbot process on this database: every live replica needs its own REPLICA_ID (two with one id would each take the other's jobs and updates; its connection shows as application_name {:?} in pg_stat_activity)",
        ReplicaIdHold::application_name(id)
    )
}

/// Loads the catalogue, opens the cache, builds the Replicate client and starts the engine on
/// `store`; the engine's job events come out of the receiver.
pub(crate) async fn start_engine(
    settings: &Settings,
    store: Store,
    config: EngineConfig,
    poll: Option<PollPolicy>,
) -> Result<(Engine, mpsc::UnboundedReceiver<JobEvent>), AssemblyError> {
    let catalogue = Catalogue::load(settings.models_file.as_deref(), &settings.default_model)
        .map_err(|e| AssemblyError::Config(e.to_string()))?;
    let cache = UserCache::from_settings(settings)
        .map_err(|e| AssemblyError::Config(format!("REDIS_URL: {e}")))?;
    tracing::info!(
        replica = %settings.replica_id,
        database = store.backend(),
        cache = cache.kind(),
        models = catalogue.models().len(),
        "storage ready"
    );
    let users = Users::new(store, cache);
    let client = replicate_client(settings, poll).await?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let engine = Engine::start(users, catalogue, client, config, Some(events_tx))
        .await
        .map_err(AssemblyError::Engine)?;
    Ok((engine, events))
}

/// The Replicate client: `REPLICATE_API_URL` and token, the creation limiter, and webhooks
/// when `REPLICATE_WEBHOOK_URL` is set.
async fn replicate_client(
    settings: &Settings,
    poll: Option<PollPolicy>,
) -> Result<ReplicateClient, AssemblyError> {
    let mut client = ReplicateClient::new(
        settings.replicate_api_url.clone(),
        settings.replicate_api_token.as_ref(),
    )
    .map_err(|e| AssemblyError::Config(e.to_string()))?
    .with_limiter(rate_limiter(settings)?);
    if let Some(poll) = poll {
        client = client.with_poll(poll);
    }
    Ok(match &settings.replicate_webhook_url {
        Some(url) => {
            let secret = webhook_secret(settings, &client).await?;
            tracing::info!(url = %RedactedUrl::new(url.clone()), reconcile = ?settings.replicate_reconcile, "predictions report their end by webhook");
            client.with_webhooks(WebhookSettings {
                url: url.clone(),
                secret,
                reconcile: settings.replicate_reconcile,
            })
        }
        None => client,
    })
}

/// `REPLICATE_WEBHOOK_SECRET`, or the account's default secret asked of Replicate.
async fn webhook_secret(
    settings: &Settings,
    client: &ReplicateClient,
) -> Result<WebhookSecret, AssemblyError> {
    match &settings.replicate_webhook_secret {
        Some(text) => WebhookSecret::parse(text.expose_secret())
            .map_err(|reason| AssemblyError::Config(format!("REPLICATE_WEBHOOK_SECRET: {reason}"))),
        None => client.default_webhook_secret().await.map_err(|e| {
            AssemblyError::Config(format!(
                "REPLICATE_WEBHOOK_URL is set but REPLICATE_WEBHOOK_SECRET is not, and asking Replicate for the default secret failed: {e}"
            ))
        }),
    }
}

/// The limiter on prediction creations: shared through Redis when `REDIS_URL` is set (so
/// replicas together keep to the account's rate), else this process's own.
fn rate_limiter(settings: &Settings) -> Result<Arc<dyn RateLimiter>, AssemblyError> {
    let per_minute = settings.replicate_rate_limit_per_min;
    Ok(match &settings.redis_url {
        Some(url) => {
            let key = format!(
                "{}{}",
                settings.redis_key_prefix,
                SharedRateLimiter::KEY_SUFFIX
            );
            tracing::info!(per_minute, key, "rate limiter shared through Redis");
            Arc::new(
                SharedRateLimiter::new(url, &key, per_minute, 1)
                    .map_err(|e| AssemblyError::Config(format!("REDIS_URL: {e}")))?,
            )
        }
        None => {
            tracing::info!(
                per_minute,
                "rate limiter local to this process (no REDIS_URL)"
            );
            Arc::new(LocalRateLimiter::new(per_minute, 1))
        }
    })
}
