use std::time::Duration;

use chrono::Utc;
use genbot_store::{
    Claim, ClaimSpec, DeliveryOutcome, JobCounts, JobId, JobImage, JobOutcome, JobStatus, NewJob,
    Store, StoreError, Submission, SubmitOutcome, UserId,
};

use crate::helpers::{on_both_backends, register};

on_both_backends!(
    submit_charges_claim_fences_finish_refunds_and_counts_stay_exact,
    claims_keep_the_global_and_per_user_limits_and_take_turns,
    a_succeeded_jobs_image_is_kept_after_delivery_until_pruned,
    a_deferred_delivery_waits_without_counting_as_a_failure,
    a_banned_user_is_refused_in_the_submitting_transaction,
    concurrent_acceptances_never_pass_the_queue_cap,
    a_prompt_with_nul_is_kept_or_refused_for_good,
    an_undeliverable_result_is_refunded_once_and_its_notice_claimed,
);

/// A NUL in a prompt (the engine strips it; this is the store's own answer should one get
/// through): SQLite keeps it; PostgreSQL's text refuses it, and that refusal must not be
/// "transient" (the update would be tried again forever) nor charge anything.
async fn a_prompt_with_nul_is_kept_or_refused_for_good(store: &Store) {
    register(store, 1, 5).await;
    let mut one = submission(1, 1);
    one.job.prompt = "a fox\0 at night".into();
    match store.submit_job(one).await {
        Ok(SubmitOutcome::Queued { job, .. }) => {
            assert!(matches!(store, Store::Sqlite(_)), "PostgreSQL took a NUL");
            assert_eq!(job.prompt, "a fox\0 at night");
            assert_eq!(credits(store, 1).await, 4);
        }
        Ok(other) => panic!("{other:?}"),
        Err(e) => {
            assert!(matches!(store, Store::Postgres(_)), "{e}");
            assert!(!e.is_transient(), "a NUL is refused as transient: {e}");
            assert_eq!(credits(store, 1).await, 5, "charged for a refused job");
        }
    }
}

async fn credits(store: &Store, user: i64) -> i64 {
    store
        .get_user(UserId(user))
        .await
        .unwrap()
        .map(|u| u.credits)
        .unwrap_or_default()
}

/// `QUEUE_MAX_LENGTH` holds when many acceptances race (replicas, or one replica's handlers):
/// the count and the insert are one step under the acceptance lock, so no two read the same
/// count and both slip in under the cap.
async fn concurrent_acceptances_never_pass_the_queue_cap(store: &Store) {
    const CAP: u32 = 10;
    const SENDERS: i64 = 48;
    for user in 1..=SENDERS {
        register(store, user, 10).await;
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(SENDERS as usize));
    let mut racers = Vec::new();
    for user in 1..=SENDERS {
        let (store, start) = (store.clone(), start.clone());
        racers.push(tokio::spawn(async move {
            let mut one = submission(user, 1);
            one.queue_max = CAP;
            start.wait().await;
            store.submit_job(one).await.unwrap()
        }));
    }
    let (mut queued, mut full) = (0, 0);
    for racer in racers {
        match racer.await.unwrap() {
            SubmitOutcome::Queued { .. } => queued += 1,
            SubmitOutcome::QueueFull { max: CAP } => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let counts = store.count_jobs_by_status().await.unwrap();
    assert_eq!(
        (queued, full, counts.queued),
        (CAP, SENDERS as u32 - CAP, u64::from(CAP)),
        "accepted, refused, queued in the database"
    );
    assert_counts_exact(store).await;
    // Every refused sender kept their credits.
    let audit = store.credit_audit(1..SENDERS + 1).await.unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.credits == 10).count() as u32,
        full
    );
}

/// The ban is read where the charge is taken, not from a replica's cache.
async fn a_banned_user_is_refused_in_the_submitting_transaction(store: &Store) {
    register(store, 1, 10).await;
    store.set_banned(UserId(1), true).await.unwrap();
    assert!(matches!(
        store.submit_job(submission(1, 1)).await.unwrap(),
        SubmitOutcome::Banned
    ));
    assert_eq!(
        store.get_user(UserId(1)).await.unwrap().unwrap().credits,
        10
    );
    store.set_banned(UserId(1), false).await.unwrap();
    assert!(matches!(
        store.submit_job(submission(1, 1)).await.unwrap(),
        SubmitOutcome::Queued { .. }
    ));
}

async fn a_deferred_delivery_waits_without_counting_as_a_failure(store: &Store) {
    register(store, 1, 10).await;
    let SubmitOutcome::Queued { job, .. } = store.submit_job(submission(1, 1)).await.unwrap()
    else {
        panic!("refused")
    };
    store.claim_next(spec("a", 10, 10)).await.unwrap();
    let outcome = JobOutcome::Succeeded {
        result_url: "http://127.0.0.1:9/files/x.png".into(),
        image: None,
    };
    store.finish_job(job.id, "a", outcome).await.unwrap();
    let lease = Duration::from_secs(60);
    let claimed = store.claim_deliveries("a", lease, 10, false).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let deferred = DeliveryOutcome::Deferred {
        after: Duration::from_secs(3600),
    };
    assert!(store.finish_delivery(job.id, "a", deferred).await.unwrap());
    assert!(
        store
            .claim_deliveries("b", lease, 10, false)
            .await
            .unwrap()
            .is_empty(),
        "a deferred delivery was due at once"
    );
    let soon = DeliveryOutcome::Deferred {
        after: Duration::ZERO,
    };
    assert!(store.finish_delivery(job.id, "a", soon).await.unwrap());
    let again = store.claim_deliveries("b", lease, 10, false).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].attempts, 0,
        "a deferral counted as a failed attempt"
    );
}

/// A succeeded job whose image can never reach its user: refunded once (credits and the day's
/// quota), turned into a failed job whose notice its worker sends next, like any failure's.
async fn an_undeliverable_result_is_refunded_once_and_its_notice_claimed(store: &Store) {
    register(store, 1, 5).await;
    let SubmitOutcome::Queued { job, .. } = store.submit_job(submission(1, 2)).await.unwrap()
    else {
        panic!("refused")
    };
    let Claim::Claimed(_) = store.claim_next(spec("a", 10, 10)).await.unwrap() else {
        panic!("nothing claimed")
    };
    let image = JobImage {
        file_name: "image.png".into(),
        bytes: b"\x89PNG\r\n\x1a\n-bytes".to_vec(),
    };
    let outcome = JobOutcome::Succeeded {
        result_url: "http://127.0.0.1:9/files/0.png".into(),
        image: Some(image),
    };
    assert_eq!(
        store
            .finish_job(job.id, "a", outcome)
            .await
            .unwrap()
            .refunded,
        0
    );
    let user = store.get_user(UserId(1)).await.unwrap().unwrap();
    assert_eq!((user.credits, user.daily_count), (3, 1));
    let lease = Duration::from_secs(60);
    let claimed = store.claim_deliveries("a", lease, 10, false).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let undeliverable = DeliveryOutcome::Undeliverable {
        error: "undeliverable: Bad Request: wrong file identifier/HTTP URL specified".into(),
    };
    // Only the delivery's owner records it.
    assert!(!store
        .finish_delivery(job.id, "b", undeliverable.clone())
        .await
        .unwrap());
    assert!(store
        .finish_delivery(job.id, "a", undeliverable.clone())
        .await
        .unwrap());
    assert!(
        !store
            .finish_delivery(job.id, "a", undeliverable)
            .await
            .unwrap(),
        "recorded twice"
    );
    let user = store.get_user(UserId(1)).await.unwrap().unwrap();
    assert_eq!(
        (user.credits, user.daily_count),
        (5, 0),
        "refunded once, quota given back"
    );
    for audit in store.credit_audit(0..10).await.unwrap() {
        assert_eq!(audit.credits, audit.expected, "{audit:?}");
    }
    assert_counts_exact(store).await;
    let stored = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.refunded_credits),
        (JobStatus::Failed, 2)
    );
    assert_eq!(store.job_image(job.id).await.unwrap(), None, "bytes kept");
    // Still claimed (its worker sends the notice next): after a crash, its own restart takes
    // it at once as a failed job's notice, with the reason; others wait for the lease.
    assert!(store
        .claim_deliveries("b", lease, 10, false)
        .await
        .unwrap()
        .is_empty());
    let notice = store.claim_deliveries("a", lease, 10, true).await.unwrap();
    assert_eq!(notice.len(), 1);
    assert_eq!(
        (
            notice[0].status,
            notice[0].attempts,
            notice[0].error.as_deref()
        ),
        (
            JobStatus::Failed,
            0,
            Some("undeliverable: Bad Request: wrong file identifier/HTTP URL specified")
        )
    );
    // A notice that cannot be delivered either is given up without a second refund.
    let gave_up = DeliveryOutcome::GaveUp {
        error: "Forbidden: bot was blocked by the user".into(),
    };
    assert!(store.finish_delivery(job.id, "a", gave_up).await.unwrap());
    assert_eq!(credits(store, 1).await, 5);
    assert_eq!(store.outbox_backlog().await.unwrap().undelivered, 0);
}

fn submission(user: i64, cost: i64) -> Submission {
    Submission {
        job: NewJob {
            user_id: UserId(user),
            model: "flux-schnell".into(),
            prompt: format!("prompt of {user}"),
            params: serde_json::json!({}),
        },
        cost,
        quota_day: Utc::now().date_naive(),
        daily_limit: 100,
        queue_max: 5,
        source_update: None,
        reply: None,
    }
}

/// The trigger-kept counts against a count of the rows themselves.
async fn assert_counts_exact(store: &Store) {
    let mut actual = JobCounts::default();
    for status in JobStatus::ALL {
        let n = store.jobs_with_status(status, 100_000).await.unwrap().len() as u64;
        match status {
            JobStatus::Queued => actual.queued = n,
            JobStatus::Running => actual.running = n,
            JobStatus::Succeeded => actual.succeeded = n,
            JobStatus::Failed => actual.failed = n,
            JobStatus::Canceled => actual.canceled = n,
        }
    }
    assert_eq!(store.count_jobs_by_status().await.unwrap(), actual);
}

fn spec<'a>(owner: &'a str, max_running: u32, per_user: u32) -> ClaimSpec<'a> {
    ClaimSpec {
        owner,
        lease: Duration::from_secs(30),
        max_running,
        per_user,
    }
}

async fn submit_charges_claim_fences_finish_refunds_and_counts_stay_exact(store: &Store) {
    register(store, 1, 3).await;
    let SubmitOutcome::Queued { job, position } = store.submit_job(submission(1, 2)).await.unwrap()
    else {
        panic!("refused")
    };
    assert_eq!((position, job.charged_credits), (1, 2));
    assert_eq!(
        store.submit_job(submission(1, 2)).await.unwrap(),
        SubmitOutcome::NoCredits {
            balance: 1,
            cost: 2
        }
    );
    let Claim::Claimed(claimed) = store.claim_next(spec("a", 10, 10)).await.unwrap() else {
        panic!("nothing claimed")
    };
    assert_eq!(claimed.id, job.id);
    assert_eq!(claimed.owner.as_deref(), Some("a"));
    // Another owner's writes are fenced off.
    assert!(matches!(
        store
            .record_intent(job.id, "b", Duration::from_secs(30))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let failed = store
        .finish_job(job.id, "a", JobOutcome::Failed { error: "x".into() })
        .await
        .unwrap();
    assert_eq!(failed.refunded, 2);
    assert!(store
        .finish_job(
            job.id,
            "a",
            JobOutcome::Failed {
                error: "again".into()
            }
        )
        .await
        .is_err());
    let user = store.get_user(UserId(1)).await.unwrap().unwrap();
    assert_eq!((user.credits, user.daily_count), (3, 0));
    for audit in store.credit_audit(0..10).await.unwrap() {
        assert_eq!(audit.credits, audit.expected);
    }
    assert_counts_exact(store).await;
    // The failed job waits in the outbox until one worker records its delivery, once.
    assert_eq!(store.outbox_backlog().await.unwrap().undelivered, 1);
    let lease = Duration::from_secs(60);
    let claimed = store.claim_deliveries("a", lease, 10, false).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job, job.id);
    assert!(store
        .claim_deliveries("b", lease, 10, false)
        .await
        .unwrap()
        .is_empty());
    let delivered = DeliveryOutcome::Delivered {
        file_id: Some("f1".into()),
    };
    assert!(store
        .finish_delivery(job.id, "b", delivered.clone())
        .await
        .is_ok_and(|recorded| !recorded));
    assert!(store
        .finish_delivery(job.id, "a", delivered.clone())
        .await
        .unwrap());
    assert!(!store.finish_delivery(job.id, "a", delivered).await.unwrap());
    assert_eq!(store.outbox_backlog().await.unwrap().undelivered, 0);
    // Queue length is counted over everything queued.
    register(store, 2, 100).await;
    for _ in 0..5 {
        assert!(matches!(
            store.submit_job(submission(2, 1)).await.unwrap(),
            SubmitOutcome::Queued { .. }
        ));
    }
    assert_eq!(
        store.submit_job(submission(2, 1)).await.unwrap(),
        SubmitOutcome::QueueFull { max: 5 }
    );
    assert_counts_exact(store).await;
    store.delete_users_in_range(2..3).await.unwrap();
    assert_counts_exact(store).await;
    register(store, 3, 100).await;
    let SubmitOutcome::Queued { position, .. } = store.submit_job(submission(3, 1)).await.unwrap()
    else {
        panic!("refused after the queue emptied")
    };
    assert_eq!(position, 1, "the deleted user's jobs no longer count");
}

async fn claims_keep_the_global_and_per_user_limits_and_take_turns(store: &Store) {
    for user in 1..=3 {
        register(store, user, 100).await;
    }
    let mut batch = submission(1, 1);
    batch.queue_max = 100;
    for _ in 0..3 {
        store.submit_job(batch.clone()).await.unwrap();
    }
    for user in [2, 3] {
        let mut one = submission(user, 1);
        one.queue_max = 100;
        store.submit_job(one).await.unwrap();
    }
    let mut order = Vec::new();
    loop {
        match store.claim_next(spec("a", 4, 1)).await.unwrap() {
            Claim::Claimed(job) => order.push(job.user_id.0),
            Claim::AtCapacity => panic!("at capacity with 3 running of 4"),
            Claim::Idle => break,
        }
    }
    assert_eq!(
        order,
        vec![1, 2, 3],
        "round-robin, one per user at the limit of 1"
    );
    let Claim::Claimed(running) = store.claim_next(spec("a", 4, 2)).await.unwrap() else {
        panic!("user 1 has room under a limit of 2")
    };
    assert_eq!(running.user_id.0, 1);
    assert_eq!(
        store.claim_next(spec("a", 4, 3)).await.unwrap(),
        Claim::AtCapacity
    );
    assert_counts_exact(store).await;
}

async fn a_succeeded_jobs_image_is_kept_after_delivery_until_pruned(store: &Store) {
    register(store, 1, 10).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let SubmitOutcome::Queued { job, .. } = store.submit_job(submission(1, 1)).await.unwrap()
        else {
            panic!("refused")
        };
        ids.push(job.id);
    }
    let image = JobImage {
        file_name: "image.png".into(),
        bytes: b"\x89PNG\r\n\x1a\n-bytes".to_vec(),
    };
    for (n, id) in ids.iter().enumerate() {
        let Claim::Claimed(claimed) = store.claim_next(spec("a", 10, 10)).await.unwrap() else {
            panic!("nothing claimed")
        };
        assert_eq!(claimed.id, *id);
        let outcome = JobOutcome::Succeeded {
            result_url: format!("http://127.0.0.1:9/files/{n}.png"),
            // The second job's download failed: only its URL is known.
            image: (n == 0).then(|| image.clone()),
        };
        store.finish_job(*id, "a", outcome).await.unwrap();
    }
    let claimed = store
        .claim_deliveries("a", Duration::from_secs(60), 10, false)
        .await
        .unwrap();
    let kept: Vec<bool> = claimed.iter().map(|d| d.has_image).collect();
    assert_eq!(kept, [true, false]);
    assert_eq!(store.job_image(ids[0]).await.unwrap(), Some(image));
    assert_eq!(store.job_image(ids[1]).await.unwrap(), None);
    // A retry keeps the bytes; so does a delivery, until pruned ("as file" sends them).
    let retry = DeliveryOutcome::Retry {
        error: "502".into(),
        after: Duration::ZERO,
    };
    assert!(store.finish_delivery(ids[0], "a", retry).await.unwrap());
    assert!(store.job_image(ids[0]).await.unwrap().is_some());
    let again = store
        .claim_deliveries("a", Duration::from_secs(60), 10, false)
        .await
        .unwrap();
    assert!(again.iter().any(|d| d.job == ids[0] && d.has_image));
    assert!(again.iter().all(|d| !d.sent_as_document), "{again:?}");
    let delivered = DeliveryOutcome::Delivered {
        file_id: Some("f1".into()),
    };
    assert!(store.finish_delivery(ids[0], "a", delivered).await.unwrap());
    assert!(store.job_image(ids[0]).await.unwrap().is_some());
    let history = store.history(UserId(1), None, 10).await.unwrap();
    assert_eq!(history.len(), 1, "only delivered images with a file_id");
    assert_eq!(
        (history[0].job, history[0].file_id.as_str()),
        (ids[0], "f1")
    );
    assert!(store
        .history(UserId(1), Some(ids[0]), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .prune_job_images(Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "fresh images are kept"
    );
    // "As file" sent once: its document's file_id outlives the pruned bytes.
    assert_eq!(store.job_document(ids[0]).await.unwrap(), None);
    store.keep_job_document(ids[0], "doc1").await.unwrap();
    store.keep_job_document(ids[0], "doc2").await.unwrap();
    assert_eq!(store.prune_job_images(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(store.job_image(ids[0]).await.unwrap(), None);
    assert_eq!(
        store.job_document(ids[0]).await.unwrap().as_deref(),
        Some("doc2"),
        "the newest file_id is kept"
    );
    assert_eq!(store.job_document(ids[1]).await.unwrap(), None);
    // A document Telegram took before the process stopped (the second job, still undelivered)
    // shows at the next claim, so the outbox records the delivery instead of sending again.
    store.keep_job_document(ids[1], "doc3").await.unwrap();
    let own = store
        .claim_deliveries("a", Duration::from_secs(60), 10, true)
        .await
        .unwrap();
    assert!(
        own.iter().any(|d| d.job == ids[1] && d.sent_as_document),
        "{own:?}"
    );
    // Not in the history until its delivery is recorded; then as the document it went as.
    assert_eq!(store.history(UserId(1), None, 10).await.unwrap().len(), 1);
    let delivered = DeliveryOutcome::Delivered { file_id: None };
    assert!(store.finish_delivery(ids[1], "a", delivered).await.unwrap());
    let history = store.history(UserId(1), None, 10).await.unwrap();
    let listed: Vec<(JobId, &str, bool)> = history
        .iter()
        .map(|item| (item.job, item.file_id.as_str(), item.as_document))
        .collect();
    assert_eq!(
        listed,
        [(ids[1], "doc3", true), (ids[0], "f1", false)],
        "a photo's own id comes before its \"as file\" document's"
    );
}
