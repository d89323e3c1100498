use std::time::Duration;

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig, ServerRateLimit};
use serde_json::{json, Value};

async fn post(url: String, body: Value, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Polls `get_url` every 20 ms until its status is no longer `status` (10 s at most); returns
/// the prediction and the polls made.
async fn poll_until_not(client: &reqwest::Client, get_url: &str, status: &str) -> (Value, u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut polls = 0;
    loop {
        let polled: Value = client
            .get(get_url)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        polls += 1;
        if polled["status"] != status {
            return (polled, polls);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn predictions_live_through_replicates_statuses() {
    let mock = ReplicateMock::start(ReplicateMockConfig {
        // `processing` lasts 0.9 s: polls 20 ms apart see it unless the test stalls for most
        // of a second (the state is waited for, not assumed after a fixed sleep).
        median_latency: Duration::from_millis(1_000),
        start_delay: Duration::from_millis(100),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let url = format!(
        "{}/v1/models/black-forest-labs/flux-schnell/predictions",
        mock.url()
    );
    let created = post(url.clone(), json!({"input": {"prompt": "fox"}}), Some("t")).await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["status"], "starting");
    assert_eq!(body["model"], "black-forest-labs/flux-schnell");
    assert_eq!(body["input"]["prompt"], "fox");
    let get_url = body["urls"]["get"].as_str().unwrap().to_owned();

    let client = reqwest::Client::new();
    let mut polls = 0;
    let (polled, n) = poll_until_not(&client, &get_url, "starting").await;
    polls += n;
    assert_eq!(polled["status"], "processing");
    let (done, n) = poll_until_not(&client, &get_url, "processing").await;
    polls += n;
    assert_eq!(done["status"], "succeeded");
    let image = done["output"][0].as_str().unwrap();
    let png = client
        .get(image)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");

    assert_eq!(post(url, json!({"input": {}}), None).await.status(), 401);
    let stats = mock.stats();
    assert_eq!(
        (stats.created, stats.max_running, stats.polls),
        (1, 1, polls)
    );
}

#[tokio::test]
async fn versions_cancel_and_prefer_wait() {
    let mock = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(300),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/predictions", mock.url());
    let missing = post(url.clone(), json!({"input": {}}), Some("t")).await;
    assert_eq!(missing.status(), 422);

    let body: Value = post(
        url.clone(),
        json!({"version": "abc123", "input": {}}),
        Some("t"),
    )
    .await
    .json()
    .await
    .unwrap();
    let cancel = body["urls"]["cancel"].as_str().unwrap().to_owned();
    let canceled: Value = post(cancel, json!({}), Some("t"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(canceled["status"], "canceled");

    let waited: Value = reqwest::Client::new()
        .post(&url)
        .bearer_auth("t")
        .header("Prefer", "wait=5")
        .json(&json!({"version": "abc123", "input": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(waited["status"], "succeeded");
    assert_eq!(mock.stats().by_status.get("canceled"), Some(&1));
}

#[tokio::test]
async fn the_server_side_rate_limit_answers_429_like_replicate() {
    let mock = ReplicateMock::start(ReplicateMockConfig {
        rate_limit: Some(ServerRateLimit {
            per_second: 3,
            retry_after_header: true,
        }),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/models/o/m/predictions", mock.url());
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..5 {
        let response = post(url.clone(), json!({"input": {}}), Some("t")).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            throttled = Some((retry_after, body));
        }
    }
    // A second boundary may fall inside the loop; at least the 4th or 5th is refused.
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 1,
        "{statuses:?}"
    );
    let (retry_after, body) = throttled.unwrap();
    assert_eq!(retry_after.unwrap(), "1");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .starts_with("Request was throttled."));
}
