//! Replicate's prediction object, as much of it as genbot reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A prediction's status. `aborted` means its deadline passed before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    Aborted,
    /// A status this client does not know yet; treated as still running.
    #[serde(other)]
    Unknown,
}

impl PredictionStatus {
    /// Whether the prediction will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PredictionStatus::Succeeded
                | PredictionStatus::Failed
                | PredictionStatus::Canceled
                | PredictionStatus::Aborted
        )
    }
}

/// A prediction as returned by create, get and cancel (serialized to relay a webhook's outcome
/// among replicas).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Prediction {
    pub id: String,
    pub status: PredictionStatus,
    /// A URL, a list of URLs, or model-specific JSON; `None` until it succeeded.
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
    /// The input it was created with (full objects only; list items leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// One entry of `GET /v1/predictions`: shallow (no input, no output).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PredictionSummary {
    pub id: String,
    /// `owner/name` of the model.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A page of `GET /v1/predictions`, newest first; `next` is the URL of the older page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PredictionPage {
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub results: Vec<PredictionSummary>,
}

impl Prediction {
    /// The first output URL (image models return one URL or a list of them).
    pub fn output_url(&self) -> Option<&str> {
        match self.output.as_ref()? {
            Value::String(url) => Some(url),
            Value::Array(items) => items.iter().find_map(Value::as_str),
            _ => None,
        }
    }

    /// The error Replicate reported, as text.
    pub fn error_text(&self) -> Option<String> {
        match self.error.as_ref()? {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_replicate_shapes() {
        let p: Prediction = serde_json::from_value(json!({
            "id": "abc", "status": "succeeded", "output": ["https://x/out-0.webp"], "error": null,
            "urls": {"get": "…"}, "metrics": {"predict_time": 1.2}
        }))
        .unwrap();
        assert_eq!(p.output_url(), Some("https://x/out-0.webp"));
        assert_eq!(p.error_text(), None);
        let p: Prediction =
            serde_json::from_value(json!({"id": "a", "status": "aborted", "output": "https://y"}))
                .unwrap();
        assert!(p.status.is_final());
        assert_eq!(p.output_url(), Some("https://y"));
        let p: Prediction = serde_json::from_value(json!({"id": "a", "status": "paused"})).unwrap();
        assert!(!p.status.is_final());
    }
}
