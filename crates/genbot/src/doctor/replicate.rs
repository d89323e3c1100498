//! Replicate, through the client the bot uses: the token's account, every enabled catalogue
//! model, and with webhooks on, that the secret matches the account's and the webhook URL
//! reaches a receiver that refuses unsigned deliveries (genbot's does, with 401).

use std::time::Duration;

use genbot_config::{ExposeSecret, Settings};
use genbot_engine::catalogue::{Catalogue, ModelRef};
use genbot_engine::replicate::preflight::ModelCheck;
use genbot_engine::replicate::webhook::WebhookSecret;
use genbot_engine::replicate::{ReplicateClient, ReplicateError, RetryPolicy};

use super::Check;

pub(super) async fn checks(settings: &Settings) -> Vec<Check> {
    let client = match ReplicateClient::new(
        settings.replicate_api_url.clone(),
        settings.replicate_api_token.as_ref(),
    ) {
        // A preflight reports a failure at once rather than retrying it for a minute.
        Ok(client) => client
            .with_retry(RetryPolicy {
                max_attempts: 2,
                ..RetryPolicy::default()
            })
            .with_request_timeout(Duration::from_secs(10)),
        Err(e) => {
            return vec![Check::fail(
                "replicate.token",
                e.to_string(),
                "set REPLICATE_API_TOKEN to a token from replicate.com/account/api-tokens",
            )]
        }
    };
    let api = genbot_config::RedactedUrl::new(settings.replicate_api_url.clone());
    let mut checks = Vec::new();
    if settings.replicate_api_token.is_none() {
        return vec![Check::fail(
            "replicate.token",
            format!("REPLICATE_API_TOKEN is not set ({api})"),
            "set it to a token from replicate.com/account/api-tokens",
        )];
    }
    match client.account().await {
        Ok(account) => checks.push(Check::ok(
            "replicate.token",
            format!("token of {} {} at {api}", account.kind, account.username),
        )),
        Err(
            e @ ReplicateError::Rejected {
                status: 401 | 403, ..
            },
        ) => {
            return vec![Check::fail(
                "replicate.token",
                format!("{api} rejected REPLICATE_API_TOKEN: {e}"),
                "create a new token at replicate.com/account/api-tokens",
            )]
        }
        Err(e) => {
            return vec![Check::fail(
                "replicate.token",
                format!("GET /v1/account at {api} failed: {e}"),
                "check REPLICATE_API_URL and that this host reaches it",
            )]
        }
    }
    checks.push(models(settings, &client).await);
    if let Some(url) = &settings.replicate_webhook_url {
        checks.push(webhook_secret(settings, &client).await);
        checks.push(webhook_reachable(url).await);
    }
    checks
}

async fn models(settings: &Settings, client: &ReplicateClient) -> Check {
    const NAME: &str = "replicate.models";
    let catalogue = match Catalogue::load(settings.models_file.as_deref(), &settings.default_model)
    {
        Ok(catalogue) => catalogue,
        Err(e) => return Check::fail(NAME, e.to_string(), "fix MODELS_FILE (or DEFAULT_MODEL)"),
    };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut unverifiable = Vec::new();
    for model in catalogue.enabled() {
        match client.check_model(&model.replicate).await {
            Ok(ModelCheck::Found) => found.push(model.id.clone()),
            Ok(ModelCheck::NotFound) => missing.push(format!("{} ({})", model.id, model.replicate)),
            Ok(ModelCheck::Unverifiable) => unverifiable.push(model.id.clone()),
            Err(e) => {
                return Check::fail(
                    NAME,
                    format!("looking up {} failed: {e}", model.replicate),
                    "check Replicate's reachability and try again",
                )
            }
        }
    }
    let counted = format!(
        "{} enabled models: {} found",
        found.len() + missing.len() + unverifiable.len(),
        found.len()
    );
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("{counted}; not on Replicate: {}", missing.join(", ")),
            "correct `replicate` in MODELS_FILE, or set `enabled = false`: users who pick it get only failures",
        );
    }
    if !unverifiable.is_empty() {
        let versions: Vec<String> = catalogue
            .enabled()
            .filter(|m| matches!(m.replicate, ModelRef::Version(_)))
            .map(|m| format!("{} ({})", m.id, m.replicate))
            .collect();
        return Check::warn(
            NAME,
            format!("{counted}; pinned by version only, not checkable: {}", versions.join(", ")),
            "Replicate looks a version up only under its model; try one generation with it after a change",
        );
    }
    Check::ok(NAME, counted)
}

async fn webhook_secret(settings: &Settings, client: &ReplicateClient) -> Check {
    const NAME: &str = "replicate.webhook_secret";
    let account = match client.default_webhook_secret().await {
        Ok(secret) => secret,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("GET /v1/webhooks/default/secret failed: {e}"),
                "set REPLICATE_WEBHOOK_SECRET, or let the token read the account's secret",
            )
        }
    };
    let Some(configured) = &settings.replicate_webhook_secret else {
        return Check::ok(
            NAME,
            "REPLICATE_WEBHOOK_SECRET unset: the account's secret is read at start",
        );
    };
    let configured = match WebhookSecret::parse(configured.expose_secret()) {
        Ok(secret) => secret,
        Err(reason) => {
            return Check::fail(
                NAME,
                format!("REPLICATE_WEBHOOK_SECRET: {reason}"),
                "copy the whsec_… secret again",
            )
        }
    };
    // Compared by what they sign: the secrets themselves are never shown or compared as text.
    let probe = |s: &WebhookSecret| s.sign("doctor", 0, b"genbot doctor");
    if probe(&configured) == probe(&account) {
        Check::ok(
            NAME,
            "REPLICATE_WEBHOOK_SECRET matches the account's signing secret",
        )
    } else {
        Check::fail(
            NAME,
            "REPLICATE_WEBHOOK_SECRET differs from the account's signing secret: every webhook would be refused (401) and results wait for the reconciler",
            "unset REPLICATE_WEBHOOK_SECRET (it is then read at start) or copy the current one",
        )
    }
}

async fn webhook_reachable(url: &url::Url) -> Check {
    const NAME: &str = "replicate.webhook_url";
    let shown = genbot_config::RedactedUrl::new(url.clone());
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    else {
        return Check::warn(NAME, "no HTTP client", "try again");
    };
    match http.post(url.clone()).body("{}").send().await {
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => Check::ok(
            NAME,
            format!("{shown} answers and refuses an unsigned delivery (401)"),
        ),
        Ok(r) if r.status().is_success() => Check::fail(
            NAME,
            format!("{shown} accepted an unsigned delivery ({})", r.status()),
            "this URL must reach `genbot serve --listen` at REPLICATE_WEBHOOK_URL's path (genbot refuses unsigned ones)",
        ),
        Ok(r) => Check::warn(
            NAME,
            format!("{shown} answered {} to an unsigned delivery (genbot's receiver answers 401)", r.status()),
            "check the proxy's route to `genbot serve --listen` for this path",
        ),
        Err(e) => Check::warn(
            NAME,
            format!("{shown} does not answer from here: {}", genbot_config::redact_urls_in(&e.to_string())),
            "expected before `genbot serve` runs; once it does, Replicate must reach this URL",
        ),
    }
}
