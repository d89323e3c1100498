//! A mock's clock as its answers show it: every response carries a `Date` header, and a test
//! may skew it (a server whose clock is off), so a client's clock check can be provoked.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;

/// Seconds added to the mock's `Date` header; shared by the mock's handle and its router.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClockSkew(Arc<AtomicI64>);

impl ClockSkew {
    pub(crate) fn set(&self, seconds: i64) {
        self.0.store(seconds, Ordering::Relaxed);
    }

    /// `app` with every answer dated now plus the skew (hyper adds an unskewed `Date` only
    /// when the answer has none, so the skew must write it explicitly).
    pub(crate) fn apply(&self, app: Router) -> Router {
        let skew = self.0.clone();
        app.layer(axum::middleware::map_response(
            move |mut response: Response| {
                let skew = skew.load(Ordering::Relaxed);
                async move {
                    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(skew);
                    let text = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                    if let Ok(value) = HeaderValue::from_str(&text) {
                        response.headers_mut().insert(header::DATE, value);
                    }
                    response
                }
            },
        ))
    }
}
