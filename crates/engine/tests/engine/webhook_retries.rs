//! A Replicate webhook delivered twice (Replicate retries a delivery it got no answer to) while
//! the first copy's outcome is still being recorded for the replica running the job: the retry
//! is not "replayed" until that record committed, so a failed first record leaves the retry to
//! record it, instead of leaving the outcome to the owner's reconcile poll.

use std::time::{Duration, Instant};

use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_engine::catalogue::Catalogue;
use genbot_engine::replicate::webhook::{WebhookError, WebhookHeaders, WebhookSecret};
use genbot_engine::replicate::{WebhookReceipt, WebhookSettings};
use genbot_engine::{Engine, EngineConfig};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_store::{SqliteStore, Store};

use crate::helpers::client;

const SECRET: &str = "whsec_c2VjcmV0LWtleQ==";
const DONE: &str = r#"{"id":"p-retried","status":"succeeded","output":["http://x/1.png"]}"#;

/// The same delivery (same `webhook-id`, body and signature), as Replicate sends it again.
async fn deliver(engine: &Engine) -> Result<WebhookReceipt, WebhookError> {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let now = chrono::Utc::now().timestamp();
    let signature = secret.sign("msg_retried", now, DONE.as_bytes());
    let timestamp = now.to_string();
    let headers = WebhookHeaders {
        id: Some("msg_retried"),
        timestamp: Some(&timestamp),
        signature: Some(&signature),
    };
    engine
        .receive_replicate_webhook(&headers, DONE.as_bytes())
        .await
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "waited 20 s for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_during_a_failing_first_record_records_the_outcome_itself() {
    let mock = ReplicateMock::start(ReplicateMockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let store = Store::Sqlite(SqliteStore::open(&path, 2).unwrap());
    let users = Users::new(
        store.clone(),
        UserCache::Memory(MemoryCache::new(Duration::from_secs(60), 100)),
    );
    let webhooks = WebhookSettings {
        url: "http://127.0.0.1:1/replicate/webhook".parse().unwrap(),
        secret: WebhookSecret::parse(SECRET).unwrap(),
        reconcile: Duration::from_secs(3600),
    };
    let engine = Engine::start(
        users,
        Catalogue::load(None, "flux-schnell").unwrap(),
        client(&mock, 600_000).with_webhooks(webhooks),
        EngineConfig {
            max_concurrent: 1,
            per_user: 1,
            daily_limit: 10,
            queue_max: 10,
            timeout: Duration::from_secs(30),
            max_prompt_chars: 100,
            replica: genbot_engine::ReplicaConfig::single_process(),
        },
        None,
    )
    .await
    .unwrap();

    // The database takes no write (a lock held from outside, past the store's 5 s busy
    // timeout) until the test lets go.
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let lock = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let _ = locked_tx.send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.await.unwrap();

    // Nobody here waits for the prediction (another replica runs its job): the first copy is
    // kept and its record waits for the database.
    let first = {
        let engine = engine.clone();
        tokio::spawn(async move { deliver(&engine).await })
    };
    wait_until("the first copy is being recorded", || {
        engine.replicate_webhook_stats().kept >= 1
    })
    .await;
    // Replicate got no answer yet and sends the delivery again.
    let retry = {
        let engine = engine.clone();
        tokio::spawn(async move { deliver(&engine).await })
    };
    let first = first.await.unwrap();
    assert!(
        matches!(first, Err(WebhookError::NotRecorded(_))),
        "the first record should fail (the database is locked): {first:?}"
    );
    release_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || lock.join().unwrap())
        .await
        .unwrap();
    let retry = retry.await.unwrap();
    assert_eq!(
        retry,
        Ok(WebhookReceipt::Kept),
        "the retry was answered before the first copy's record committed"
    );
    let recorded = store
        .take_prediction_outcomes(&["p-retried".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        recorded.len(),
        1,
        "the outcome is not where the owner looks"
    );
    // A third copy after the record is a replay.
    assert_eq!(deliver(&engine).await, Ok(WebhookReceipt::Replayed));
    engine.shutdown().await;
}
