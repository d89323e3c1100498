//! Wiring the bot's parts from the settings: store → cache → engine → front end.

use std::sync::Arc;

use anyhow::Context;
use genbot_cache::{UserCache, Users};
use genbot_config::Settings;
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::{LocalRateLimiter, RateLimiter, SharedRateLimiter};
use genbot_engine::replicate::ReplicateClient;
use genbot_engine::{Engine, EngineConfig, JobEvent};
use genbot_store::Store;
use tokio::sync::mpsc;

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
    let catalogue = Catalogue::load(settings.models_file.as_deref(), &settings.default_model)
        .map_err(|e| UsageError(e.to_string()))?;
    let store = Store::connect(&settings.database_url, settings.db_pool_size)
        .await
        .context("Failed to open the database")?;
    let cache =
        UserCache::from_settings(settings).map_err(|e| UsageError(format!("REDIS_URL: {e}")))?;
    tracing::info!(
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

/// The limiter on prediction creations: shared through Redis when `REDIS_URL` is set (so
/// replicas together keep to the account's rate), else this process's own.
fn rate_limiter(settings: &Settings) -> anyhow::Result<Arc<dyn RateLimiter>> {
    let per_minute = settings.replicate_rate_limit_per_min;
    Ok(match &settings.redis_url {
        Some(url) => {
            tracing::info!(
                per_minute,
                key = SharedRateLimiter::DEFAULT_KEY,
                "rate limiter shared through Redis"
            );
            Arc::new(
                SharedRateLimiter::new(url, SharedRateLimiter::DEFAULT_KEY, per_minute, 1)
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
