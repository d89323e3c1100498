//! Wiring the bot's parts from the settings: store → cache → engine → front end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use genbot_cache::{UserCache, Users};
use genbot_config::Settings;
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::{LocalRateLimiter, RateLimiter, SharedRateLimiter};
use genbot_engine::replicate::webhook::WebhookSecret;
use genbot_engine::replicate::{ReplicateClient, WebhookSettings};
use genbot_engine::{Engine, EngineConfig, JobEvent};
use genbot_store::{Store, StoreError};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::UsageError;

/// The engine and the stream of its job events, for the front end.
pub(crate) struct Core {
    pub(crate) engine: Engine,
    pub(crate) events: mpsc::UnboundedReceiver<JobEvent>,
}

/// Connects the store and the cache, loads the catalogue and starts the engine.
///
/// # Errors
/// A catalogue error is a [`UsageError`]; an unreachable database is not.
pub(crate) async fn start_core(settings: &Settings) -> anyhow::Result<Core> {
    let store = Store::connect(&settings.database_url, settings.db_pool_size)
        .await
        .context("Failed to open the database")?;
    start_core_on(settings, store).await
}

/// As [`start_core`], but a PostgreSQL server that cannot be reached yet is waited for with
/// backoff (saying so in the log) until `stop` fires (then `None`).
///
/// # Errors
/// As [`start_core`]; a bad SQLite path or a failed migration is not waited for.
pub(crate) async fn start_core_waiting(
    settings: &Settings,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Core>> {
    let mut pause = Duration::from_millis(500);
    let store = loop {
        match Store::connect(&settings.database_url, settings.db_pool_size).await {
            Ok(store) => break store,
            Err(e @ StoreError::Connect { .. }) if store_is_remote(settings) => {
                tracing::warn!(
                    database = %settings.database_url,
                    error = %e,
                    retry_in = ?pause,
                    "waiting for the database"
                );
            }
            Err(e) => return Err(e).context("Failed to open the database"),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    };
    start_core_on(settings, store).await.map(Some)
}

fn store_is_remote(settings: &Settings) -> bool {
    matches!(
        settings.database_url,
        genbot_config::DatabaseUrl::Postgres(_)
    )
}

async fn start_core_on(settings: &Settings, store: Store) -> anyhow::Result<Core> {
    let catalogue = Catalogue::load(settings.models_file.as_deref(), &settings.default_model)
        .map_err(|e| UsageError(e.to_string()))?;
    let cache =
        UserCache::from_settings(settings).map_err(|e| UsageError(format!("REDIS_URL: {e}")))?;
    tracing::info!(
        replica = %settings.replica_id,
        database = store.backend(),
        cache = cache.kind(),
        models = catalogue.models().len(),
        "storage ready"
    );
    let users = Users::new(store, cache);
    let client = ReplicateClient::new(
        settings.replicate_api_url.clone(),
        settings.replicate_api_token.as_ref(),
    )
    .map_err(|e| UsageError(e.to_string()))?
    .with_limiter(rate_limiter(settings)?);
    let client = match &settings.replicate_webhook_url {
        Some(url) => {
            let secret = webhook_secret(settings, &client).await?;
            tracing::info!(url = %genbot_config::RedactedUrl::new(url.clone()), reconcile = ?settings.replicate_reconcile, "predictions report their end by webhook");
            client.with_webhooks(WebhookSettings {
                url: url.clone(),
                secret,
                reconcile: settings.replicate_reconcile,
            })
        }
        None => client,
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let engine = Engine::start(
        users,
        catalogue,
        client,
        EngineConfig::from_settings(settings),
        Some(events_tx),
    )
    .await
    .context("Failed to start the generation engine")?;
    Ok(Core { engine, events })
}

/// `REPLICATE_WEBHOOK_SECRET`, or the account's default secret asked of Replicate.
async fn webhook_secret(
    settings: &Settings,
    client: &ReplicateClient,
) -> anyhow::Result<WebhookSecret> {
    match &settings.replicate_webhook_secret {
        Some(text) => WebhookSecret::parse(text.expose_secret())
            .map_err(|reason| UsageError(format!("REPLICATE_WEBHOOK_SECRET: {reason}")).into()),
        None => client.default_webhook_secret().await.map_err(|e| {
            UsageError(format!(
                "REPLICATE_WEBHOOK_URL is set but REPLICATE_WEBHOOK_SECRET is not, and asking Replicate for the default secret failed: {e}"
            ))
            .into()
        }),
    }
}

/// The limiter on prediction creations: shared through Redis when `REDIS_URL` is set (so
/// replicas together keep to the account's rate), else this process's own.
fn rate_limiter(settings: &Settings) -> anyhow::Result<Arc<dyn RateLimiter>> {
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
                    .map_err(|e| UsageError(format!("REDIS_URL: {e}")))?,
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
