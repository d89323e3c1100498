//! Running the bot: long polling or a webhook, plus `/healthz` and `/metrics`, until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use teloxide::prelude::*;
use teloxide::types::BotCommand;
use tokio::net::TcpListener;

use crate::command::MENU;
use crate::dispatch::{Dispatch, Listening};
use crate::features::broadcast;
use crate::http_serve::HttpLimits;
use crate::inbox::InboxPolling;
use crate::router::schema;
use crate::Front;

/// Long-poll timeout asked of `getUpdates` (below teloxide's 17 s client timeout).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the bot could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Bot API answered 401/404 to `getMe`: the token is wrong or revoked.
    #[error("the Bot API rejected TELEGRAM_BOT_TOKEN ({0}); check the token from @BotFather")]
    InvalidToken(String),
    /// Another Bot API call failed at start.
    #[error("the Bot API call failed: {0}")]
    Telegram(#[from] teloxide::RequestError),
    #[error("cannot serve HTTP: {0}")]
    Http(#[from] std::io::Error),
    /// Polling was asked for while a webhook is set.
    #[error("a webhook is set for this bot ({0}): Telegram does not let a bot poll while it is; run `genbot webhook delete` or start with --drop-webhook (webhook replicas would stop getting updates)")]
    WebhookSet(String),
    /// A webhook was asked for while another replica of this bot polls Telegram.
    #[error("replica {owner} polls Telegram for this bot (its poller lease runs until {}, renewed while it runs): setting a webhook would end its getUpdates and leave the polling replicas without updates; stop every polling replica first (a stopping poller hands the lease to a standby one; a killed one's lease ends within JOB_LEASE_SECONDS), then start webhook replicas", .until.format("%Y-%m-%d %H:%M:%S UTC"))]
    Polled {
        owner: String,
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The database did not answer a question asked at start.
    #[error("the database did not answer: {0}")]
    Database(#[from] genbot_store::StoreError),
    /// Stopped (SIGTERM) before the Bot API could be reached.
    #[error("stopped before the Bot API answered")]
    Stopped,
    /// Stopped because another live process took this process's `REPLICA_ID` after its hold
    /// ended: a failure (not a configuration error), so that a supervisor restarts the process
    /// and the restart waits for the id.
    #[error("{0}")]
    ReplicaIdTaken(#[from] genbot_store::ReplicaIdTaken),
}

/// First and longest pause between tries while the Bot API cannot be reached at start.
const CONNECT_PAUSE: Duration = Duration::from_millis(500);
const CONNECT_PAUSE_MAX: Duration = Duration::from_secs(30);

/// `getMe`, waited for with backoff while the Bot API cannot be reached (network errors, 5xx,
/// 429): only a rejected token ends the wait with an error. Gives up when `stop` fires.
///
/// # Errors
/// [`RunError::InvalidToken`], or [`RunError::Stopped`].
pub async fn wait_for_bot_api(
    front: &Front,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<teloxide::types::Me, RunError> {
    use teloxide::{ApiError, RequestError};
    let mut pause = CONNECT_PAUSE;
    loop {
        let reason = match front.bot().get_me().await {
            Ok(me) => {
                // Handlers read the bot's username (is `/cmd@name` ours?): known from here,
                // none of them asks getMe again, waiting out teloxide's pause after a 5xx.
                front.remember_me(&me.user);
                return Ok(me);
            }
            Err(RequestError::Api(e @ ApiError::InvalidToken)) => {
                return Err(RunError::InvalidToken(e.to_string()))
            }
            Err(RequestError::Api(ApiError::Unknown(text))) if text.contains("Unauthorized") => {
                return Err(RunError::InvalidToken(text))
            }
            // The error may carry the request's URL, TELEGRAM_API_URL's credentials included.
            Err(e) => genbot_config::redact_urls_in(&e.to_string()),
        };
        tracing::warn!(
            api = %genbot_config::RedactedUrl::new(front.bot().api_url()),
            %reason,
            retry_in = ?pause,
            "waiting for the Telegram Bot API to answer getMe"
        );
        tokio::select! {
            () = stop.cancelled() => return Err(RunError::Stopped),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(CONNECT_PAUSE_MAX);
    }
}

/// `/healthz`, `/metrics`, and Replicate's webhook at its URL's path when webhooks are on.
pub fn http_router(front: Front) -> Router {
    let webhooks = replicate_webhook_router(front.engine());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(front)
        .merge(webhooks)
}

/// Replicate's webhook receiver for `engine`, at the path of `REPLICATE_WEBHOOK_URL` (empty
/// when webhooks are off). The readiness suite serves the same router for its rigs.
pub fn replicate_webhook_router(engine: &genbot_engine::Engine) -> Router {
    match engine.replicate_webhooks() {
        Some(settings) => Router::new()
            .route(settings.url.path(), post(replicate_webhook))
            .with_state(engine.clone()),
        None => Router::new(),
    }
}

/// Replicate's webhook: 200 once verified (whatever it changed), 401 when the signature or
/// timestamp is wrong, 400 when a genuine body is no prediction. Answers at once: the waiting
/// generation does the work.
///
/// The body is read up to [`MAX_BODY_BYTES`](genbot_engine::replicate::webhook::MAX_BODY_BYTES)
/// (413 beyond): anyone can post here, and a prediction is far smaller.
async fn replicate_webhook(
    State(engine): State<genbot_engine::Engine>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> impl IntoResponse {
    use genbot_engine::replicate::webhook::{WebhookError, WebhookHeaders, MAX_BODY_BYTES};
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a webhook body has at most {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    // Read at most the limit: a body without a length (chunked) is cut off there too.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return too_large();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let received = WebhookHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    match engine.receive_replicate_webhook(&received, &body).await {
        Ok(receipt) => {
            tracing::debug!(?receipt, "replicate webhook");
            (StatusCode::OK, "ok".to_owned())
        }
        Err(e @ WebhookError::NotRecorded(_)) => {
            tracing::warn!(error = %e, "replicate webhook not recorded; Replicate sends it again");
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e @ WebhookError::NotAPrediction(_)) => {
            tracing::warn!(error = %e, "replicate webhook refused");
            (StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "replicate webhook refused");
            (StatusCode::UNAUTHORIZED, e.to_string())
        }
    }
}

async fn healthz(State(front): State<Front>) -> impl IntoResponse {
    match front.engine().store().count_jobs_by_status().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

async fn metrics(State(front): State<Front>) -> impl IntoResponse {
    let snapshot = crate::metrics::snapshot::Snapshot::read(&front).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        front.metrics().render(snapshot),
    )
}

async fn announce_commands(front: &Front) {
    let commands: Vec<BotCommand> = MENU
        .iter()
        .map(|(name, description)| BotCommand::new(*name, *description))
        .collect();
    if let Err(e) = front.bot().set_my_commands(commands).await {
        tracing::warn!(error = %e, "setMyCommands failed; the command menu may be stale");
    }
}

/// The handlers' dispatch: the router's schema, with updates it does not take (edits, channel
/// posts, polls…) counted and marked handled, or the inbox would replay them.
fn dispatch(front: &Front) -> Dispatch {
    let ignored = front.clone();
    Dispatch::new(
        schema(),
        dptree::deps![front.clone()],
        Box::new(move |update| {
            let kind = crate::isolation::kind_of(update);
            tracing::debug!(
                update_id = update.id.0,
                kind,
                "update of a kind the bot ignores"
            );
            ignored.metrics().ignored(kind);
            ignored.leave_backlog(update);
            ignored.finished(i64::from(update.id.0));
        }),
    )
}

/// Runs the bot with long polling until `shutdown` completes; handlers running then finish.
/// `http`, when given, serves `/healthz` and `/metrics`.
///
/// # Errors
/// `getMe` fails (wrong token or unreachable API), or the HTTP listener fails.
pub async fn polling(
    front: Front,
    http: Option<TcpListener>,
    drop_webhook: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), RunError> {
    let me = wait_for_bot_api(&front, &shutdown).await?;
    let set = front.bot().get_webhook_info().await?.url;
    if let Some(url) = set {
        // The operator's URL may carry a secret (a query value, basic auth): shown redacted.
        let url = genbot_config::RedactedUrl::new(url);
        if !drop_webhook {
            return Err(RunError::WebhookSet(url.to_string()));
        }
        front.bot().delete_webhook().await?;
        tracing::warn!(%url, "the webhook was deleted (--drop-webhook): this bot now polls");
    }
    tracing::info!(bot = %me.username(), "bot started (long polling)");
    announce_commands(&front).await;
    let stop = tokio_util::sync::CancellationToken::new();
    if let Some(listener) = http {
        let stop = stop.clone();
        let app = http_router(front.clone());
        tokio::spawn(crate::http_serve::serve(
            listener,
            app,
            HttpLimits::default(),
            async move { stop.cancelled().await },
        ));
    }
    let listener = InboxPolling::new(front.clone(), POLL_TIMEOUT).await;
    let listening = Listening {
        failed: "update listener failed",
        stopping: "shutting down: no new updates; running handlers finish",
    };
    crate::dispatch::listen(dispatch(&front), listener, &listening, &shutdown).await;
    stop.cancel();
    // A standby replica polls as soon as it next asks, not a whole lease later.
    let owner = front.engine().replica_id();
    if let Err(e) = front
        .engine()
        .store()
        .release_lease(&crate::inbox::poller_lease(&front), owner)
        .await
    {
        tracing::warn!(error = %e, "the poller's lease was not released; another replica polls once it expires");
    }
    Ok(())
}

/// Refuses webhook mode while another replica of this bot polls (on this database): Telegram
/// would refuse its `getUpdates` from the moment the webhook is set, and the polling replicas,
/// still running, would get nothing. The poller lease says who polls and until when. A lease
/// this replica id holds is a previous run's (ids are unique among live replicas): given up.
///
/// # Errors
/// [`RunError::Polled`], or [`RunError::Database`].
async fn refuse_while_polled(
    front: &Front,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), RunError> {
    let name = crate::inbox::poller_lease(front);
    let store = front.engine().store();
    let Some(lease) = store.lease(&name).await? else {
        return Ok(());
    };
    let me = front.engine().replica_id();
    if lease.owner == me {
        store.release_lease(&name, me).await?;
        return Ok(());
    }
    // A poller that was killed (or whose release failed) holds its lease until it runs out:
    // that is no reason to refuse, and a refused replica is not restarted (exit 2). Wait for
    // the lease's end and look again: only a lease its holder renews means someone polls.
    let left = (lease.until - chrono::Utc::now())
        .to_std()
        .unwrap_or_default()
        .min(MAX_LEASE_WAIT);
    tracing::warn!(owner = %lease.owner, until = %lease.until, "another replica held the poller lease: waiting for it to end or be renewed before setting the webhook");
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = tokio::time::sleep(left + Duration::from_secs(1)) => {}
    }
    match store.lease(&name).await? {
        Some(renewed) if renewed.owner != me => Err(RunError::Polled {
            owner: renewed.owner,
            until: renewed.until,
        }),
        _ => Ok(()),
    }
}

/// Longest a starting webhook replica waits for a poller lease to run out.
const MAX_LEASE_WAIT: Duration = Duration::from_secs(600);

/// Where Telegram delivers updates in webhook mode.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The public URL registered with `setWebhook` (its path is served on `listener`).
    pub url: url::Url,
    /// Sent by Telegram in `X-Telegram-Bot-Api-Secret-Token`; requests without it get 401.
    pub secret: String,
}

/// Runs the bot behind a webhook served on `listener` (with `/healthz` and `/metrics` beside
/// it) until `shutdown` completes. The webhook is set at start, the same for every replica
/// (URL, secret, update kinds), and left set at stop: other replicas may still serve it.
///
/// # Errors
/// `setWebhook` fails, or the listener fails.
pub async fn webhook(
    front: Front,
    listener: TcpListener,
    settings: WebhookSettings,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), RunError> {
    refuse_while_polled(&front, &shutdown).await?;
    wait_for_bot_api(&front, &shutdown).await?;
    let address: SocketAddr = listener.local_addr()?;
    front
        .bot()
        .set_webhook(settings.url.clone())
        .secret_token(settings.secret.clone())
        .allowed_updates(crate::webhook::ALLOWED_UPDATES)
        .await?;
    let (intake, received, last_record) = crate::webhook::intake(front.clone(), settings.secret);
    let updates = crate::webhook::WebhookListener::new(front.clone(), received, last_record).await;
    tracing::info!(url = %genbot_config::RedactedUrl::new(settings.url.clone()), %address, "bot started (webhook)");
    announce_commands(&front).await;
    let app = Router::new()
        .route(settings.url.path(), post(crate::webhook::receive))
        .with_state(intake)
        .merge(http_router(front.clone()));
    let stop = tokio_util::sync::CancellationToken::new();
    let server_stop = stop.clone();
    // The server stops taking requests at the stop (Telegram then sends to another replica, or
    // retries), and when the dispatcher ended.
    let stop_requests = shutdown.clone();
    let server = tokio::spawn(crate::http_serve::serve(
        listener,
        app,
        HttpLimits::default(),
        async move {
            tokio::select! {
                () = server_stop.cancelled() => {}
                () = stop_requests.cancelled() => {}
            }
        },
    ));
    let listening = Listening {
        failed: "webhook listener failed",
        stopping: "shutting down: no new updates; running handlers finish (the webhook stays set)",
    };
    crate::dispatch::listen(dispatch(&front), updates, &listening, &shutdown).await;
    stop.cancel();
    if let Err(e) = server.await {
        tracing::error!(error = %e, "the webhook's HTTP server ended abnormally");
    }
    Ok(())
}

/// How the bot receives updates.
#[derive(Debug)]
pub enum Mode {
    /// Long polling; `/healthz` and `/metrics` on `http` when given. A webhook that is set is
    /// deleted with `drop_webhook`, else the start is refused (Telegram refuses `getUpdates`
    /// while a webhook is set, and deleting it would silence webhook replicas).
    Polling {
        http: Option<TcpListener>,
        drop_webhook: bool,
    },
    /// A webhook served on `listener` (with `/healthz` and `/metrics`).
    Webhook {
        listener: TcpListener,
        settings: WebhookSettings,
    },
}

/// The one way to run the bot: delivers `events`, takes updates in `mode` until `stop` fires,
/// then gives running handlers at most `grace` to finish, stops delivery and the engine (queued
/// and running jobs stay in the database; this replica's leases are released for the others).
/// `serve`, `demo`, the readiness suite's rigs and the tests all run the bot through here.
///
/// # Errors
/// As [`polling`] and [`webhook`]; the engine is stopped in every case.
pub async fn serve_bot(
    front: Front,
    events: tokio::sync::mpsc::UnboundedReceiver<genbot_engine::JobEvent>,
    mode: Mode,
    stop: tokio_util::sync::CancellationToken,
    grace: Duration,
) -> Result<(), RunError> {
    let engine = front.engine().clone();
    let front_stopping = front.stopping().clone();
    let stop_delivery = tokio_util::sync::CancellationToken::new();
    let delivery = tokio::spawn(crate::delivery::run(
        front.clone(),
        events,
        stop_delivery.clone(),
    ));
    let broadcaster = tokio::spawn(broadcast::run(front.clone(), stop_delivery.clone()));
    let stop_marking = tokio_util::sync::CancellationToken::new();
    let marking = tokio::spawn(crate::claims::keep_marking(
        front.clone(),
        stop_marking.clone(),
    ));
    let run = async {
        match mode {
            Mode::Polling { http, drop_webhook } => {
                polling(front, http, drop_webhook, stop.clone()).await
            }
            Mode::Webhook { listener, settings } => {
                webhook(front, listener, settings, stop.clone()).await
            }
        }
    };
    // From the stop on, retries are left to the inbox and writes that wait for the database
    // give up, so a stop during an outage takes no longer than the handlers need.
    let stopping = {
        let stop = stop.clone();
        let front_stopping = front_stopping.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            front_stopping.cancel();
        })
    };
    let grace_over = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let (ran, handlers_done) = tokio::select! {
        ran = run => (ran, true),
        () = grace_over => {
            tracing::warn!(?grace, "handlers still running after the grace period; stopping anyway (their jobs are in the database)");
            (Ok(()), false)
        }
    };
    // Retries still waiting stay unhandled in the inbox: the next start replays them.
    front_stopping.cancel();
    stopping.abort();
    stop_marking.cancel();
    let _ = marking.await;
    if handlers_done {
        // No handler of this replica runs any more: its chats go to the others at once (what
        // still waits in them, retries, is taken over as replays). Handlers cut off by the
        // grace period may still run: their chats are left to lapse instead.
        if let Err(e) = engine
            .store()
            .release_chat_claims(engine.replica_id())
            .await
        {
            tracing::warn!(error = %e, "this replica's chat claims were not released; other replicas take its chats once they lapse");
        }
    }
    stop_delivery.cancel();
    let _ = tokio::time::timeout(grace, broadcaster).await;
    if tokio::time::timeout(grace, delivery).await.is_err() {
        tracing::warn!("delivery did not stop within the grace period");
    }
    engine.shutdown().await;
    ran
}
