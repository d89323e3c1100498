//! `GET /v1/account` and `GET /v1/models/{owner}/{name}`: what a preflight asks to learn whether the
//! token is valid and each catalogue model exists. Every model exists unless a test said
//! otherwise ([`super::ReplicateMock::forget_model`]), so the mock stays usable with any
//! catalogue.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;

/// Models (`owner/name`) the mock answers 404 for.
#[derive(Debug, Default)]
pub(super) struct Unknown {
    names: Mutex<HashSet<String>>,
}

impl Unknown {
    pub(super) fn forget(&self, reference: &str) {
        self.names.lock().insert(reference.to_owned());
    }

    fn knows(&self, reference: &str) -> bool {
        !self.names.lock().contains(reference)
    }
}

pub(super) fn router(unknown: Arc<Unknown>) -> Router {
    Router::new()
        .route("/v1/account", get(account))
        .route("/v1/models/{owner}/{name}", get(model))
        .with_state(unknown)
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !t.trim().is_empty())
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        Json(json!({ "title": detail, "detail": detail, "status": status.as_u16() })),
    )
        .into_response()
}

fn unauthenticated() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "You did not pass a valid authentication token",
    )
}

async fn account(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return unauthenticated();
    }
    Json(json!({ "type": "organization", "username": "genbot-mock", "name": "genbot mock" }))
        .into_response()
}

async fn model(
    State(unknown): State<Arc<Unknown>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return unauthenticated();
    }
    if !unknown.knows(&format!("{owner}/{name}")) {
        return problem(StatusCode::NOT_FOUND, "Not found.");
    }
    Json(json!({
        "owner": owner, "name": name, "visibility": "public",
        "latest_version": { "id": "0000000000000000000000000000000000000000000000000000000000000001" }
    }))
    .into_response()
}
