//! What a preflight (`genbot doctor`) asks Replicate before any traffic: whose token this is,
//! and whether each catalogue model exists. Read-only calls; nothing is created or billed.

use reqwest::Method;
use serde::Deserialize;

use super::{ReplicateClient, ReplicateError};
use crate::catalogue::ModelRef;

/// The account a token belongs to (`GET /v1/account`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    /// `user` or `organization`.
    #[serde(rename = "type")]
    pub kind: String,
    pub username: String,
}

/// Whether a catalogue entry can be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCheck {
    /// Replicate knows it.
    Found,
    /// Replicate answered 404.
    NotFound,
    /// A bare version hash: Replicate looks versions up only under their model
    /// (`/v1/models/{owner}/{name}/versions/{id}`), so it cannot be checked without running it.
    Unverifiable,
}

impl ReplicateClient {
    /// The token's account.
    ///
    /// # Errors
    /// [`ReplicateError::Rejected`] with 401 for a bad token; network and server errors.
    pub async fn account(&self) -> Result<Account, ReplicateError> {
        let url = self.endpoint("/v1/account")?;
        self.call_url(Method::GET, url, None, false).await
    }

    /// Whether `model` exists for this token.
    ///
    /// # Errors
    /// A refusal other than 404 (401: bad token), network and server errors.
    pub async fn check_model(&self, model: &ModelRef) -> Result<ModelCheck, ReplicateError> {
        let ModelRef::Official { owner, name } = model else {
            return Ok(ModelCheck::Unverifiable);
        };
        let url = self.endpoint(&format!("/v1/models/{owner}/{name}"))?;
        match self
            .call_url::<serde_json::Value>(Method::GET, url, None, false)
            .await
        {
            Ok(_) => Ok(ModelCheck::Found),
            Err(ReplicateError::Rejected { status: 404, .. }) => Ok(ModelCheck::NotFound),
            Err(e) => Err(e),
        }
    }
}
