//! HTTP routes with Replicate's paths, headers and JSON shapes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::LostResponse;
use super::state::{Created, MockState, OutputAnswer};
use super::webhooks::deliver_when_done;
use crate::png::TINY_PNG;

type Shared = Arc<MockState>;

/// Longest `Prefer: wait` honoured, as on Replicate.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route(
            "/v1/predictions",
            post(create_with_version).get(list_predictions),
        )
        .route(
            "/v1/models/{owner}/{name}/predictions",
            post(create_for_model),
        )
        .route("/v1/predictions/{id}", get(get_prediction))
        .route("/v1/predictions/{id}/cancel", post(cancel_prediction))
        .route("/v1/webhooks/default/secret", get(webhook_secret))
        .route("/files/{file}", get(file))
        .route("/mock/stats", get(stats))
        .with_state(state)
}

#[derive(Debug, Clone, Deserialize)]
struct CreateBody {
    version: Option<String>,
    #[serde(default)]
    input: Value,
    webhook: Option<String>,
    webhook_events_filter: Option<Vec<String>>,
}

impl CreateBody {
    /// Where to post the prediction's end: only `completed` events are modelled.
    fn completed_webhook(&self) -> Option<String> {
        let wanted = self
            .webhook_events_filter
            .as_ref()
            .is_none_or(|events| events.iter().any(|e| e == "completed"));
        self.webhook.clone().filter(|_| wanted)
    }
}

/// Records the create request's body as it came, then reads it.
fn parse_create(state: &MockState, body: Option<Json<Value>>) -> Option<CreateBody> {
    let Json(raw) = body?;
    state.record_create_body(raw.clone());
    serde_json::from_value(raw).ok()
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({ "title": title, "detail": detail, "status": status.as_u16() })),
    )
        .into_response()
}

/// `None` when the request carries a bearer token; otherwise the 401 to answer.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.trim().is_empty());
    token.is_none().then(|| {
        problem(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "You did not pass a valid authentication token",
        )
    })
}

/// Seconds asked for by `Prefer: wait` or `Prefer: wait=N`.
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    let prefer = headers.get("prefer")?.to_str().ok()?.trim();
    let seconds = match prefer.strip_prefix("wait") {
        Some("") => MAX_WAIT.as_secs(),
        Some(rest) => rest.strip_prefix('=')?.trim().parse().ok()?,
        None => return None,
    };
    Some(Duration::from_secs(seconds).min(MAX_WAIT))
}

async fn create_with_version(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    if let Some(denied) = unauthorized(&headers) {
        return denied;
    }
    let Some(body) = parse_create(&state, body) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            "body must be JSON",
        );
    };
    let webhook = body.completed_webhook();
    let Some(version) = body.version.filter(|v| !v.is_empty()) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid version",
            "version is required",
        );
    };
    let model = format!("version/{}", &version[..version.len().min(12)]);
    created(
        &state,
        &headers,
        state.create(model, Some(version), body.input),
        webhook,
    )
    .await
}

async fn create_for_model(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    if let Some(denied) = unauthorized(&headers) {
        return denied;
    }
    let Some(body) = parse_create(&state, body) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            "body must be JSON",
        );
    };
    let webhook = body.completed_webhook();
    created(
        &state,
        &headers,
        state.create(format!("{owner}/{name}"), None, body.input),
        webhook,
    )
    .await
}

async fn created(
    state: &Shared,
    headers: &HeaderMap,
    outcome: Created,
    webhook: Option<String>,
) -> Response {
    match outcome {
        Created::Prediction { body, delay, lost } => {
            // The prediction exists: its webhook comes whatever happens to this answer.
            if let (Some(url), Some(id)) = (webhook, body["id"].as_str()) {
                tokio::spawn(deliver_when_done(state.clone(), id.to_owned(), url));
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match lost {
                Some(LostResponse::Status(code)) => {
                    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
                    return problem(status, "Bad gateway", "the answer was lost (scripted)");
                }
                Some(LostResponse::Hang) => {
                    // The client gives up first; the connection closes with it.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                None => {}
            }
            let body = match (prefer_wait(headers), body["id"].as_str()) {
                (Some(wait), Some(id)) => {
                    let id = id.to_owned();
                    if let Some(remaining) = state.remaining(&id) {
                        tokio::time::sleep(remaining.min(wait)).await;
                    }
                    state.get(&id).unwrap_or(body)
                }
                _ => body,
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Created::Throttled { retry_after_secs } => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "Request was throttled.",
                "Request was throttled. Expected available in 1 second.",
            );
            if let Some(seconds) = retry_after_secs {
                if let Ok(value) = seconds.to_string().parse() {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            response
        }
        Created::Fault(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            problem(status, "Simulated failure", "scripted by the test")
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    cursor: Option<String>,
}

/// `GET /v1/predictions`: newest first, cursor-paginated, shallow items.
async fn list_predictions(
    State(state): State<Shared>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = unauthorized(&headers) {
        return denied;
    }
    let before = match query.cursor.as_deref().map(str::parse::<usize>) {
        None => None,
        Some(Ok(index)) => Some(index),
        Some(Err(_)) => {
            return problem(StatusCode::BAD_REQUEST, "Invalid cursor", "unknown cursor")
        }
    };
    let (results, next) = state.list(before);
    let base = state.base_url();
    Json(json!({
        "previous": null,
        "next": next.map(|index| format!("{base}/v1/predictions?cursor={index}")),
        "results": results,
    }))
    .into_response()
}

async fn get_prediction(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    prediction_or_404(&headers, || state.get(&id))
}

async fn cancel_prediction(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    prediction_or_404(&headers, || state.cancel(&id))
}

/// Authorizes, then answers the prediction `find` returns, or 404 like Replicate.
fn prediction_or_404(headers: &HeaderMap, find: impl FnOnce() -> Option<Value>) -> Response {
    if let Some(denied) = unauthorized(headers) {
        return denied;
    }
    match find() {
        Some(body) => Json(body).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "The requested resource could not be found.",
        ),
    }
}

async fn file(
    State(state): State<Shared>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let with_token = headers.contains_key(header::AUTHORIZATION);
    match state.serve_output(&file, with_token) {
        OutputAnswer::Image {
            size: None,
            dimensions: None,
        } => ([(header::CONTENT_TYPE, "image/png")], TINY_PNG).into_response(),
        OutputAnswer::Image { size, dimensions } => {
            let mut bytes = match dimensions {
                Some((width, height)) => crate::png::blank(width, height),
                None => TINY_PNG.to_vec(),
            };
            // A valid PNG whose padding after its end chunk makes it `size` bytes.
            if let Some(size) = size {
                bytes.resize(size.max(bytes.len()), 0);
            }
            ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
        }
        OutputAnswer::Gone => problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "The requested file has expired.",
        ),
        OutputAnswer::Failed => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
            "the file could not be served (scripted)",
        ),
    }
}

async fn webhook_secret(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(denied) = unauthorized(&headers) {
        return denied;
    }
    Json(json!({ "key": state.webhooks().secret() })).into_response()
}

async fn stats(State(state): State<Shared>) -> Response {
    Json(state.stats_since(Duration::ZERO)).into_response()
}
