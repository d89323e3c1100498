use std::collections::HashSet;

use genbot_store::{JobStatus, JobUpdate, NewJob, Store, StoreError, UserId};

use crate::helpers::{on_both_backends, register};

on_both_backends!(
    job_lifecycle,
    finished_jobs_never_change,
    jobs_need_a_registered_user,
    concurrent_claimers_never_get_the_same_job,
    a_job_is_claimed_by_id_once,
);

async fn a_job_is_claimed_by_id_once(store: &Store) {
    register(store, 3, 0).await;
    let job = store.create_job(new_job(3, "z")).await.unwrap();
    let claims: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_job(job.id).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        if let Some(claimed) = claim.await.unwrap() {
            assert_eq!((claimed.id, claimed.status), (job.id, JobStatus::Running));
            won += 1;
        }
    }
    assert_eq!(won, 1);
    let canceled = store.create_job(new_job(3, "w")).await.unwrap();
    store
        .update_job(canceled.id, JobUpdate::Canceled)
        .await
        .unwrap();
    assert_eq!(store.claim_job(canceled.id).await.unwrap(), None);
}

fn new_job(user: i64, prompt: &str) -> NewJob {
    NewJob {
        user_id: UserId(user),
        model: "flux-schnell".into(),
        prompt: prompt.into(),
        params: serde_json::json!({"aspect_ratio": "1:1", "num_inference_steps": 4}),
    }
}

async fn job_lifecycle(store: &Store) {
    register(store, 1, 0).await;
    let first = store.create_job(new_job(1, "a red fox")).await.unwrap();
    let second = store.create_job(new_job(1, "a blue bird")).await.unwrap();
    assert_eq!(first.status, JobStatus::Queued);
    assert_eq!(first.params["num_inference_steps"], 4);
    assert!(second.id > first.id);

    let claimed = store.claim_next_job().await.unwrap().unwrap();
    assert_eq!(claimed.id, first.id, "claims go oldest first");
    assert_eq!((claimed.status, claimed.attempts), (JobStatus::Running, 1));
    assert!(claimed.started_at.is_some());

    let running = store
        .update_job(
            first.id,
            JobUpdate::PredictionCreated {
                prediction_id: "p-123".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(running.prediction_id.as_deref(), Some("p-123"));
    assert_eq!(
        store
            .jobs_with_status(JobStatus::Running, 10)
            .await
            .unwrap()[0]
            .id,
        first.id
    );

    let done = store
        .update_job(
            first.id,
            JobUpdate::Succeeded {
                result_url: "http://127.0.0.1/out.png".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.result_url.as_deref(), Some("http://127.0.0.1/out.png"));
    assert_eq!(done.prediction_id.as_deref(), Some("p-123"));
    assert!(done.finished_at.is_some());

    let canceled = store
        .update_job(second.id, JobUpdate::Canceled)
        .await
        .unwrap();
    assert_eq!(canceled.status, JobStatus::Canceled);
    assert_eq!(store.claim_next_job().await.unwrap(), None);

    // A running job put back in the queue forgets its prediction and can be claimed again.
    let third = store.create_job(new_job(1, "a green tree")).await.unwrap();
    store.claim_next_job().await.unwrap().unwrap();
    store
        .update_job(
            third.id,
            JobUpdate::PredictionCreated {
                prediction_id: "p-9".into(),
            },
        )
        .await
        .unwrap();
    let requeued = store
        .update_job(third.id, JobUpdate::Requeued)
        .await
        .unwrap();
    assert_eq!(
        (requeued.status, requeued.prediction_id),
        (JobStatus::Queued, None)
    );
    let again = store.claim_next_job().await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (third.id, 2));
    let failed = store
        .update_job(
            third.id,
            JobUpdate::Failed {
                error: "NSFW content detected".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.error.as_deref(), Some("NSFW content detected"));

    let counts = store.count_jobs_by_status().await.unwrap();
    assert_eq!(
        (
            counts.succeeded,
            counts.canceled,
            counts.failed,
            counts.total()
        ),
        (1, 1, 1, 3)
    );
    assert_eq!(store.get_job(third.id).await.unwrap().unwrap(), failed);
}

async fn finished_jobs_never_change(store: &Store) {
    register(store, 2, 0).await;
    let job = store.create_job(new_job(2, "x")).await.unwrap();
    store.update_job(job.id, JobUpdate::Canceled).await.unwrap();
    match store
        .update_job(
            job.id,
            JobUpdate::Succeeded {
                result_url: "http://late".into(),
            },
        )
        .await
    {
        Err(StoreError::InvalidTransition {
            status: JobStatus::Canceled,
            ..
        }) => {}
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    // A queued job cannot succeed without having run.
    let queued = store.create_job(new_job(2, "y")).await.unwrap();
    assert!(matches!(
        store
            .update_job(
                queued.id,
                JobUpdate::Succeeded {
                    result_url: "http://x".into()
                }
            )
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        store
            .update_job(genbot_store::JobId(987_654), JobUpdate::Canceled)
            .await,
        Err(StoreError::JobNotFound(_))
    ));
}

async fn jobs_need_a_registered_user(store: &Store) {
    assert!(matches!(
        store.create_job(new_job(404, "orphan")).await,
        Err(StoreError::UserNotFound(UserId(404)))
    ));
}

async fn concurrent_claimers_never_get_the_same_job(store: &Store) {
    const USERS: i64 = 10;
    const JOBS_PER_USER: usize = 30;
    for user in 1..=USERS {
        register(store, user, 0).await;
    }
    let mut created = HashSet::new();
    for n in 0..JOBS_PER_USER {
        for user in 1..=USERS {
            let job = store
                .create_job(new_job(user, &format!("job {n}")))
                .await
                .unwrap();
            created.insert(job.id);
        }
    }
    let claimers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store.claim_next_job().await.unwrap() {
                    mine.push(job.id);
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let unique: HashSet<_> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "a job was claimed twice");
    assert_eq!(unique, created, "every job claimed exactly once");
    let counts = store.count_jobs_by_status().await.unwrap();
    assert_eq!((counts.running, counts.queued), (created.len() as u64, 0));
}
