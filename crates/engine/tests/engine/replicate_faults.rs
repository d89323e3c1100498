use std::time::{Duration, Instant};

use genbot_engine::{FailureReason, JobEvent};
use genbot_mocks::replicate::{ReplicateMockConfig, ScriptedFault};
use genbot_store::{JobStatus, UserId};

use crate::helpers::{spawn_engine, TestSettings};

fn fast() -> ReplicateMockConfig {
    ReplicateMockConfig {
        median_latency: Duration::from_millis(30),
        ..ReplicateMockConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_for_its_retry_after_then_succeeds() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    app.mock.script([ScriptedFault::Throttle {
        retry_after_secs: Some(1),
    }]);
    app.register(1, 10).await;
    let started = Instant::now();
    app.submit(1, "after a throttle").await;
    let events = app.finished(1).await;
    assert!(
        matches!(events.last(), Some(JobEvent::Succeeded { .. })),
        "{events:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let mock = app.mock.stats();
    assert_eq!((mock.throttled, mock.created), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_and_5xx_answers_are_retried() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    app.mock.script([
        ScriptedFault::Throttle {
            retry_after_secs: None,
        },
        ScriptedFault::Status(503),
        ScriptedFault::Status(500),
    ]);
    app.register(1, 10).await;
    app.submit(1, "after faults").await;
    let events = app.finished(1).await;
    assert!(
        matches!(events.last(), Some(JobEvent::Succeeded { .. })),
        "{events:?}"
    );
    let mock = app.mock.stats();
    assert_eq!((mock.throttled, mock.faults, mock.created), (1, 2, 1));
    assert_eq!(app.credits(1).await, 9, "charged once, on success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prediction_fails_the_job_with_its_reason_and_costs_nothing() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    app.mock.script([ScriptedFault::FailPrediction(
        "NSFW content detected".into(),
    )]);
    app.register(1, 10).await;
    let job = app.submit(1, "refused").await.job;
    let events = app.finished(1).await;
    match events.last() {
        Some(JobEvent::Failed {
            reason: FailureReason::Model(reason),
            ..
        }) => assert!(reason.contains("NSFW"), "{reason}"),
        other => panic!("expected a model failure, got {other:?}"),
    }
    let stored = app.store.get_job(job).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Failed);
    assert!(stored.error.unwrap().contains("NSFW"));
    assert_eq!(app.credits(1).await, 10, "credits untouched");
    let user = app.store.get_user(UserId(1)).await.unwrap().unwrap();
    assert_eq!(user.daily_count, 0, "daily generation given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_is_not_retried() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    app.mock.script([ScriptedFault::Status(422)]);
    app.register(1, 10).await;
    app.submit(1, "bad input").await;
    let events = app.finished(1).await;
    match events.last() {
        Some(JobEvent::Failed {
            reason: FailureReason::Replicate(reason),
            ..
        }) => assert!(reason.contains("422"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    let mock = app.mock.stats();
    assert_eq!((mock.faults, mock.created), (1, 0));
    assert_eq!(app.credits(1).await, 10);
}
