//! One prediction per job and exact credits, whatever answers are lost and whichever replica
//! runs the job.

use std::time::Duration;

use genbot_engine::{JobEvent, ReplicaConfig};
use genbot_mocks::replicate::{LostResponse, ReplicateMockConfig, ScriptedFault};
use genbot_store::JobStatus;

use crate::helpers::{replica, spawn_engine, TestSettings};

fn fast() -> ReplicateMockConfig {
    ReplicateMockConfig {
        median_latency: Duration::from_millis(30),
        ..ReplicateMockConfig::default()
    }
}

async fn assert_ledger_balances(app: &crate::helpers::TestApp) {
    for audit in app.store.credit_audit(0..1_000).await.unwrap() {
        assert_eq!(
            audit.credits, audit.expected,
            "user {}: credits != initial + added − charged + refunded",
            audit.user
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_is_lost_is_found_at_replicate_not_created_again() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    // A create that hangs past the client's timeout, then one answered by a gateway's 502:
    // both predictions exist at the mock.
    app.mock.script([
        ScriptedFault::LoseResponse(LostResponse::Hang),
        ScriptedFault::LoseResponse(LostResponse::Status(502)),
    ]);
    app.register(1, 10).await;
    app.register(2, 10).await;
    app.submit(1, "a fox whose answer hangs").await;
    let first = app.finished(1).await;
    app.submit(2, "a heron answered by a 502").await;
    let second = app.finished(1).await;
    for events in [&first, &second] {
        assert!(
            matches!(events.last(), Some(JobEvent::Succeeded { .. })),
            "{events:?}"
        );
    }
    let stats = app.engine.stats();
    assert_eq!(app.mock.stats().created, 2, "one prediction per job");
    assert_eq!(stats.found_by_lookup, 2, "{stats:?}");
    assert_eq!(stats.predictions_created, 0, "no answered create");
    assert_eq!((app.credits(1).await, app.credits(2).await), (9, 9));
    assert_ledger_balances(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_that_never_reached_replicate_is_created_once_more() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    // 503 before anything was created: the lookup finds nothing, so a new create is safe.
    app.mock.script([ScriptedFault::Status(503)]);
    app.register(1, 10).await;
    app.submit(1, "a lighthouse").await;
    let events = app.finished(1).await;
    assert!(matches!(events.last(), Some(JobEvent::Succeeded { .. })));
    let stats = app.engine.stats();
    assert_eq!((stats.lookups, stats.found_by_lookup), (1, 0));
    assert_eq!(app.mock.stats().created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_refunds_exactly_its_stored_charge_once() {
    let mut app = spawn_engine(TestSettings::default(), fast()).await;
    app.mock
        .script([ScriptedFault::FailPrediction("NSFW".into())]);
    app.register(1, 10).await;
    let job = app.submit(1, "refused").await.job;
    app.finished(1).await;
    let stored = app.store.get_job(job).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Failed);
    assert_eq!(stored.charged_credits, 1);
    assert_eq!(stored.refunded_credits, 1);
    // A late duplicate outcome changes nothing.
    let again = app
        .store
        .finish_job(
            job,
            app.engine.replica_id(),
            genbot_store::JobOutcome::Failed {
                error: "late".into(),
            },
        )
        .await;
    assert!(again.is_err(), "{again:?}");
    assert_eq!(app.credits(1).await, 10);
    assert_ledger_balances(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_replicas_jobs_are_left_alone_and_a_stopped_ones_are_taken_over() {
    let leases = |id: &str| TestSettings {
        config: genbot_engine::EngineConfig {
            replica: ReplicaConfig {
                id: id.into(),
                lease: Duration::from_secs(1),
                heartbeat: Duration::from_millis(200),
            },
            ..TestSettings::default().config
        },
        ..TestSettings::default()
    };
    let mut a = spawn_engine(
        leases("a"),
        ReplicateMockConfig {
            // Long enough that the job is still running after the renewals waited for below
            // on a slow machine; B finishes it by polling once A stops.
            median_latency: Duration::from_secs(10),
            ..ReplicateMockConfig::default()
        },
    )
    .await;
    a.register(1, 10).await;
    let job = a.submit(1, "a slow mountain").await.job;
    a.started(1).await;
    let mut b = replica(&a, leases("b")).await;
    // A renews its lease while alive. Wait (not a fixed sleep) until A's renewals have carried
    // the lease two lease lengths past the first one seen: the job's first lease expired long
    // ago, B swept for expired leases every 200 ms meanwhile, and it must not have touched it.
    let lease_until = |job_row: Option<genbot_store::Job>| {
        let job_row = job_row.expect("the job exists");
        assert_eq!(
            job_row.status,
            genbot_store::JobStatus::Running,
            "{job_row:?}"
        );
        job_row.lease_until.expect("a running job has a lease")
    };
    let first = lease_until(a.store.get_job(job).await.unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut renewals = 0;
    let mut latest = first;
    while latest < first + chrono::Duration::seconds(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "A renewed its lease {renewals} times in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = lease_until(a.store.get_job(job).await.unwrap());
        if seen > latest {
            renewals += 1;
            latest = seen;
        }
    }
    let stored = a.store.get_job(job).await.unwrap().unwrap();
    assert_eq!(stored.owner.as_deref(), Some("a"));
    assert_eq!(b.engine.stats().taken_over, 0);
    assert!(
        renewals >= 2,
        "{renewals} renewals carried the lease 2 s on"
    );
    // A stops (its leases end with it): B takes the job over and finishes it by polling the
    // prediction A created.
    a.engine.shutdown().await;
    let events = b.finished(1).await;
    assert!(
        matches!(events.last(), Some(JobEvent::Succeeded { .. })),
        "{events:?}"
    );
    let stored = b.store.get_job(job).await.unwrap().unwrap();
    assert_eq!(stored.owner.as_deref(), Some("b"));
    assert_eq!(b.mock.stats().created, 1, "one prediction for the job");
    assert_eq!(b.credits(1).await, 9);
    assert_ledger_balances(&b).await;
}
