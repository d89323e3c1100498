//! The lookup after a create whose outcome is unknown (README, "At most one prediction per
//! job"): it follows `next` through the list, never adopts a prediction another job recorded,
//! and a job makes at most 3 creates.

use std::time::Duration;

use genbot_engine::catalogue::ModelRef;
use genbot_engine::JobEvent;
use genbot_mocks::replicate::{LostResponse, ReplicateMockConfig, ScriptedFault};
use genbot_store::JobStatus;
use serde_json::{json, Map};

use crate::helpers::{client, job_of, request, spawn_engine, TestSettings};

fn fast() -> ReplicateMockConfig {
    ReplicateMockConfig {
        median_latency: Duration::from_millis(30),
        ..ReplicateMockConfig::default()
    }
}

/// A create hangs past the client's timeout (the prediction exists); meanwhile three newer
/// predictions of the same model appear. With one prediction per page, the job's own is on
/// the fourth page: the lookup must follow `next` to find it rather than create again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_follows_next_pages_to_a_lost_create() {
    let mut app = spawn_engine(
        TestSettings::default(),
        ReplicateMockConfig {
            list_page_size: 1,
            ..fast()
        },
    )
    .await;
    app.mock
        .script([ScriptedFault::LoseResponse(LostResponse::Hang)]);
    app.register(1, 10).await;
    app.submit(1, "a fox on the fourth page").await;
    // The hung create exists at the mock; the client gives up on it after 1 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.mock.stats().created < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no create arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = client(&app.mock, 600_000);
    let model = ModelRef::Official {
        owner: "black-forest-labs".into(),
        name: "flux-schnell".into(),
    };
    for n in 0..3 {
        other
            .create_prediction(&model, &json!({ "prompt": format!("someone else's {n}") }))
            .await
            .unwrap();
    }
    let events = app.finished(1).await;
    assert!(
        matches!(events.last(), Some(JobEvent::Succeeded { .. })),
        "{events:?}"
    );
    let stats = app.engine.stats();
    assert_eq!(
        (
            stats.lookups,
            stats.found_by_lookup,
            stats.predictions_created
        ),
        (1, 1, 0),
        "found on a later page, not created again: {stats:?}"
    );
    assert_eq!(
        app.mock.stats().created,
        4,
        "the job's one and three others"
    );
    assert_eq!(app.credits(1).await, 9);
}

/// Two jobs with the very same input (same prompt, same seed). The first succeeds; the
/// second's create is answered 503 before anything is created, so its lookup sees only the
/// first job's prediction, which that job recorded: it must not be adopted, and a new create
/// is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_another_job_recorded_is_not_adopted() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    app.register(1, 10).await;
    app.register(2, 10).await;
    let same = || {
        let mut params = Map::new();
        params.insert("seed".into(), json!(42));
        params
    };
    let first = app
        .engine
        .submit(genbot_engine::GenerationRequest {
            params: same(),
            ..request(1, "twin lighthouses")
        })
        .await
        .unwrap();
    let events = app.finished(1).await;
    assert!(matches!(events.last(), Some(JobEvent::Succeeded { .. })));
    app.mock.script([ScriptedFault::Status(503)]);
    let second = app
        .engine
        .submit(genbot_engine::GenerationRequest {
            params: same(),
            ..request(2, "twin lighthouses")
        })
        .await
        .unwrap();
    let events = app.finished(1).await;
    assert!(
        matches!(events.last(), Some(JobEvent::Succeeded { .. })),
        "{events:?}"
    );
    assert_eq!(job_of(events.last().unwrap()), second.job);
    let prediction = |job| {
        let store = app.store.clone();
        async move {
            store
                .get_job(job)
                .await
                .unwrap()
                .unwrap()
                .prediction_id
                .unwrap()
        }
    };
    let (a, b) = (prediction(first.job).await, prediction(second.job).await);
    assert_ne!(a, b, "the second job adopted the first job's prediction");
    let stats = app.engine.stats();
    assert_eq!((stats.lookups, stats.found_by_lookup), (1, 0), "{stats:?}");
    assert_eq!(app.mock.stats().created, 2);
    assert_eq!((app.credits(1).await, app.credits(2).await), (9, 9));
}

/// Every create is answered 503 (nothing created, the outcome unknown to the engine): after
/// the third create and its lookup the job fails, is refunded, and no fourth create is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_three_creates_then_the_job_fails_refunded() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    app.mock.script((0..5).map(|_| ScriptedFault::Status(503)));
    app.register(1, 10).await;
    let submitted = app.submit(1, "a harbour that never starts").await;
    let events = app.finished(1).await;
    assert!(
        matches!(events.last(), Some(JobEvent::Failed { .. })),
        "{events:?}"
    );
    let mock = app.mock.stats();
    assert_eq!(mock.faults, 3, "creates sent: {mock:?}");
    assert_eq!(mock.created, 0);
    assert_eq!(app.engine.stats().lookups, 3);
    let job = app.store.get_job(submitted.job).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        app.credits(1).await,
        10,
        "the failed job's charge came back"
    );
}
