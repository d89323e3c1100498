use std::collections::HashSet;
use std::time::Duration;

use genbot_engine::{CancelError, EngineConfig, JobEvent, SubmitError};
use genbot_mocks::replicate::ReplicateMockConfig;
use genbot_store::{JobStatus, UserId};

use crate::helpers::{job_of, request, restart, spawn_engine, TestSettings};

fn one_at_a_time() -> TestSettings {
    TestSettings {
        config: EngineConfig {
            max_concurrent: 1,
            per_user: 1,
            ..TestSettings::default().config
        },
        ..TestSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_backlog_does_not_starve_the_next_user() {
    let mut app = spawn_engine(
        one_at_a_time(),
        ReplicateMockConfig {
            median_latency: Duration::from_millis(40),
            ..ReplicateMockConfig::default()
        },
    )
    .await;
    app.register(1, 100).await;
    app.register(2, 100).await;
    let mut a_jobs = Vec::new();
    for n in 0..20 {
        a_jobs.push(app.submit(1, &format!("a{n}")).await.job);
    }
    let b_job = app.submit(2, "b").await;
    assert!(b_job.position <= 2, "B is next in turn: {}", b_job.position);
    let events = app.finished(21).await;
    let starts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, JobEvent::Started { .. }))
        .map(job_of)
        .collect();
    let b_at = starts.iter().position(|j| *j == b_job.job).unwrap();
    let a_last_15: HashSet<_> = a_jobs[5..].iter().copied().collect();
    assert!(
        starts[..b_at].iter().all(|j| !a_last_15.contains(j)),
        "B started at {b_at}, after some of A's last 15"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_ends_exactly_once_across_a_restart() {
    let settings = TestSettings {
        config: EngineConfig {
            max_concurrent: 3,
            per_user: 3,
            ..TestSettings::default().config
        },
        ..TestSettings::default()
    };
    let mut app = spawn_engine(
        settings,
        ReplicateMockConfig {
            median_latency: Duration::from_millis(600),
            ..ReplicateMockConfig::default()
        },
    )
    .await;
    for user in 1..=5 {
        app.register(user, 100).await;
    }
    let mut jobs = Vec::new();
    for n in 0..10 {
        jobs.push(app.submit(n % 5 + 1, &format!("job {n}")).await.job);
    }
    app.started(3).await;
    app.engine.shutdown().await;
    let counts = app.store.count_jobs_by_status().await.unwrap();
    assert_eq!(
        counts.running + counts.queued,
        10,
        "nothing finished: {counts:?}"
    );
    assert_eq!(
        app.mock.stats().created,
        3,
        "three predictions were running"
    );

    let mut second = restart(&app).await;
    let events = second.finished(10).await;
    let finals: Vec<_> = events
        .iter()
        .filter(|e| !matches!(e, JobEvent::Started { .. }))
        .map(job_of)
        .collect();
    let unique: HashSet<_> = finals.iter().copied().collect();
    assert_eq!(finals.len(), unique.len(), "a job finished twice");
    assert_eq!(unique, jobs.iter().copied().collect(), "every job finished");
    for job in &jobs {
        let stored = second.store.get_job(*job).await.unwrap().unwrap();
        assert_eq!(stored.status, JobStatus::Succeeded);
    }
    assert_eq!(
        second.mock.stats().created,
        10,
        "no prediction created twice"
    );
    assert_eq!(second.engine.stats().resumed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_specific_and_charge_nothing() {
    let settings = TestSettings {
        config: EngineConfig {
            max_concurrent: 1,
            per_user: 1,
            daily_limit: 3,
            queue_max: 4,
            max_prompt_chars: 20,
            ..TestSettings::default().config
        },
        ..TestSettings::default()
    };
    let app = spawn_engine(
        settings,
        ReplicateMockConfig {
            median_latency: Duration::from_secs(20),
            ..ReplicateMockConfig::default()
        },
    )
    .await;
    let e = &app.engine;
    assert!(matches!(
        e.submit(request(9, "x")).await,
        Err(SubmitError::NotRegistered)
    ));
    app.register(1, 2).await;
    assert!(matches!(
        e.submit(request(1, "  ")).await,
        Err(SubmitError::EmptyPrompt)
    ));
    assert!(matches!(
        e.submit(request(1, &"x".repeat(21))).await,
        Err(SubmitError::PromptTooLong { chars: 21, max: 20 })
    ));
    let mut unknown = request(1, "x");
    unknown.model = Some("dall-e".into());
    assert!(matches!(
        e.submit(unknown).await,
        Err(SubmitError::UnknownModel(_))
    ));
    // A chosen model the catalogue no longer holds (removed from models.toml since): the job
    // runs on the default model and the choice is undone; a replay of the update finds its job.
    app.register(3, 5).await;
    app.engine
        .users()
        .set_selected_model(UserId(3), Some("removed-model".into()))
        .await
        .unwrap();
    let mut chosen_gone = request(3, "x");
    chosen_gone.source_update = Some(77);
    let accepted = e.submit(chosen_gone).await.unwrap();
    assert_eq!(
        accepted.instead_of_removed.as_deref(),
        Some("removed-model")
    );
    let job = app.store.get_job(accepted.job).await.unwrap().unwrap();
    assert_eq!(job.model, e.catalogue().default_model().id);
    let undone = app.store.get_user(UserId(3)).await.unwrap().unwrap();
    assert_eq!((undone.selected_model, undone.credits), (None, 4));
    let mut replayed = request(3, "x");
    replayed.source_update = Some(77);
    assert!(matches!(
        e.submit(replayed).await,
        Err(SubmitError::AlreadySubmitted(j)) if j == accepted.job
    ));
    assert_eq!(app.credits(3).await, 4, "a replay charged again");
    let mut bad_params = request(1, "x");
    bad_params
        .params
        .insert("num_inference_steps".into(), 99.into());
    assert!(matches!(
        e.submit(bad_params).await,
        Err(SubmitError::InvalidParams(_))
    ));

    // flux-schnell costs 1: two credits buy two jobs.
    e.submit(request(1, "one")).await.unwrap();
    e.submit(request(1, "two")).await.unwrap();
    match e.submit(request(1, "three")).await {
        Err(SubmitError::NoCredits {
            balance: 0,
            cost: 1,
        }) => {}
        other => panic!("expected NoCredits, got {other:?}"),
    }
    let user = app.store.get_user(UserId(1)).await.unwrap().unwrap();
    assert_eq!(
        user.daily_count, 2,
        "a refused submit gives its daily generation back"
    );

    // The daily limit (3) comes before credits.
    app.engine.users().add_credits(UserId(1), 10).await.unwrap();
    e.submit(request(1, "three")).await.unwrap();
    match e.submit(request(1, "four")).await {
        Err(SubmitError::DailyLimit {
            limit: 3,
            resets_at,
        }) => {
            assert!(resets_at > chrono::Utc::now());
        }
        other => panic!("expected DailyLimit, got {other:?}"),
    }

    // Cancel gives back the credit and the daily generation.
    let before = app.credits(1).await;
    let canceled = e.cancel_latest(UserId(1)).await.unwrap();
    assert_eq!(
        app.store.get_job(canceled).await.unwrap().unwrap().status,
        JobStatus::Canceled
    );
    assert_eq!(app.credits(1).await, before + 1);
    assert!(matches!(
        e.cancel_latest(UserId(2)).await,
        Err(CancelError::NothingQueued)
    ));

    // The queue holds 4: one job runs, the rest fill it, the next is refused.
    app.register(2, 100).await;
    let mut taken = 0;
    let refused = loop {
        match e.submit(request(2, "fill")).await {
            Ok(_) => taken += 1,
            Err(err) => break err,
        }
        assert!(taken < 10, "the queue never filled");
    };
    assert!(
        matches!(refused, SubmitError::QueueFull { max: 4 }),
        "{refused:?}"
    );
    assert_eq!(app.engine.stats().queue_length, 4);
}

/// A prompt is kept without NUL (PostgreSQL's text refuses it: the job was never written) and
/// without bidirectional overrides and isolates (stored, they made `/history` show the prompt
/// as something else), each run of them between two words left as a space; the rest as
/// written, direction marks included. One that is nothing
/// else is refused as empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_kept_without_nul_or_direction_overrides() {
    let app = spawn_engine(TestSettings::default(), ReplicateMockConfig::default()).await;
    app.register(1, 10).await;
    let submitted = app
        .submit(
            1,
            "a \u{202e}fox\u{202c} at\0 night \u{2067}\u{200f}قط\u{2069}",
        )
        .await;
    let job = app.store.get_job(submitted.job).await.unwrap().unwrap();
    assert_eq!(job.prompt, "a fox at night \u{200f}قط");
    // Between two words, a hidden control leaves a space: the words stay apart.
    let submitted = app.submit(1, "a\0cat in\u{202e}a hat").await;
    let job = app.store.get_job(submitted.job).await.unwrap().unwrap();
    assert_eq!(job.prompt, "a cat in a hat");
    let refused = app
        .engine
        .submit(request(1, "\u{202e}\0\u{2066} \u{2069}"))
        .await;
    assert!(
        matches!(refused, Err(SubmitError::EmptyPrompt)),
        "{refused:?}"
    );
}

/// Jobs claimed but waiting for the Replicate rate limiter start before any queued job: a
/// position told (and refreshed) counts them. Seen: under load about 80 jobs waited in the
/// limiter's line while users were told "position 1".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_count_the_jobs_waiting_for_the_rate_limiter() {
    let app = spawn_engine(
        TestSettings {
            config: EngineConfig {
                max_concurrent: 5,
                per_user: 1,
                ..TestSettings::default().config
            },
            // One creation at once, the next 30 s later: the test is over long before.
            rate_per_min: 2,
        },
        ReplicateMockConfig {
            median_latency: Duration::from_secs(60),
            ..ReplicateMockConfig::default()
        },
    )
    .await;
    for user in 1..=8 {
        app.register(user, 100).await;
    }
    // Five claimed at once: one created, four in the limiter's line.
    for user in 1..=5 {
        app.submit(user, &format!("claimed {user}")).await;
    }
    let first_queued = app.submit(6, "first queued").await;
    app.submit(7, "second queued").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let waiting_in_line = 4;
    loop {
        // The created job counts as waiting until its prediction is recorded: a position read
        // before that (with the fifth claim not yet counted) matched by chance and was one
        // more a moment later.
        let recorded = app
            .store
            .jobs_with_status(JobStatus::Running, 10)
            .await
            .unwrap()
            .iter()
            .filter(|job| job.prediction_id.is_some())
            .count();
        let positions = app.engine.queue_positions().await.unwrap();
        let counts = app.store.count_jobs_by_status().await.unwrap();
        if counts.running == 5
            && app.mock.stats().created == 1
            && recorded == 1
            && positions.get(&first_queued.job) == Some(&(waiting_in_line + 1))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first queued job's position stayed {:?} with {} running and {} created",
            positions.get(&first_queued.job),
            counts.running,
            app.mock.stats().created
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Told on submission too: behind the four in line and the two queued.
    let third = app.submit(8, "third queued").await;
    assert_eq!(third.position, waiting_in_line + 3);
    assert_eq!(
        app.mock.stats().created,
        1,
        "the limiter let another through"
    );
}

/// A queued job whose model the operator withdrew (removed from the catalogue before the job
/// started: a restart with a new `models.toml`) fails as withdrawn, not as Replicate not
/// answering, and is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_withdrawn_model_fails_as_withdrawn_and_is_refunded() {
    let app = spawn_engine(TestSettings::default(), ReplicateMockConfig::default()).await;
    app.register(1, 5).await;
    app.engine.shutdown().await;
    let queued = app
        .store
        .submit_job(genbot_store::Submission {
            job: genbot_store::NewJob {
                user_id: UserId(1),
                model: "withdrawn-model".into(),
                prompt: "a fox".into(),
                params: serde_json::json!({"prompt": "a fox"}),
            },
            cost: 2,
            quota_day: chrono::Utc::now().date_naive(),
            daily_limit: 100,
            queue_max: 100,
            source_update: None,
            reply: None,
        })
        .await
        .unwrap();
    assert!(matches!(queued, genbot_store::SubmitOutcome::Queued { .. }));
    assert_eq!(app.credits(1).await, 3);
    let mut restarted = restart(&app).await;
    let events = restarted.finished(1).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, JobEvent::Failed { reason, .. }
            if *reason == genbot_engine::FailureReason::Withdrawn("withdrawn-model".into()))),
        "{events:?}"
    );
    assert_eq!(restarted.credits(1).await, 5, "not refunded");
    assert_eq!(app.mock.stats().created, 0, "a prediction was created");
}
