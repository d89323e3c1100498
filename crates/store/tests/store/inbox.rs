use std::time::Duration;

use chrono::Utc;
use genbot_store::{InboxUpdate, NewJob, Store, Submission, SubmitOutcome, Unhandled, UserId};

use crate::helpers::{on_both_backends, register};

on_both_backends!(
    an_update_is_replayed_until_handled_and_only_by_its_replica_until_stale,
    a_replayed_prompt_finds_its_job_and_is_not_charged_again,
);

async fn an_update_is_replayed_until_handled_and_only_by_its_replica_until_stale(store: &Store) {
    let base = 7_000_000_000; // Telegram's update ids are large; each test has its own schema
    let update = |id: i64| InboxUpdate {
        id,
        payload: format!("{{\"update_id\":{id}}}"),
        attempts: 0,
    };
    assert_eq!(
        store.record_updates("a", vec![update(base)]).await.unwrap(),
        [base]
    );
    assert_eq!(
        store
            .record_updates("a", vec![update(base), update(base + 1)])
            .await
            .unwrap(),
        [base + 1],
        "an update recorded twice"
    );
    let long = Duration::from_secs(3600);
    let ours = |updates: Vec<InboxUpdate>| -> Vec<i64> {
        updates
            .into_iter()
            .map(|u| u.id)
            .filter(|id| (base..base + 1000).contains(id))
            .collect()
    };
    assert!(
        ours(
            store
                .claim_unhandled_updates("b", Unhandled::MineAndStale, long, 100)
                .await
                .unwrap()
        )
        .is_empty(),
        "another replica took fresh updates"
    );
    assert_eq!(
        ours(
            store
                .claim_unhandled_updates("a", Unhandled::MineAndStale, long, 100)
                .await
                .unwrap()
        ),
        [base, base + 1]
    );
    store.mark_updates_handled(&[base]).await.unwrap();
    assert_eq!(
        ours(
            store
                .claim_unhandled_updates("a", Unhandled::MineAndStale, long, 100)
                .await
                .unwrap()
        ),
        [base + 1]
    );
    // A replica gone for longer than the staleness bound leaves its updates to the others.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        ours(
            store
                .claim_unhandled_updates(
                    "b",
                    Unhandled::MineAndStale,
                    Duration::from_millis(10),
                    100
                )
                .await
                .unwrap()
        ),
        [base + 1]
    );
    // Taken over, it counts as received now: not taken again while B handles it, and a running
    // replica's sweep never takes its own updates, however old.
    assert!(
        ours(
            store
                .claim_unhandled_updates("c", Unhandled::StaleOnly, Duration::from_secs(5), 100)
                .await
                .unwrap()
        )
        .is_empty(),
        "an update taken over was taken again at once"
    );
    assert!(
        ours(
            store
                .claim_unhandled_updates("b", Unhandled::StaleOnly, Duration::ZERO, 100)
                .await
                .unwrap()
        )
        .is_empty(),
        "a sweep took its own replica's update"
    );
    // B's heartbeat keeps its update from C, however long the handling takes; once B stops
    // renewing, C takes it. The bound is long next to one database call, so the renewal and the
    // claim right after it are never a bound apart, however slow the machine; the waits are
    // past the bound, so staleness is certain.
    let stale = Duration::from_secs(1);
    let past_the_bound = stale + Duration::from_millis(100);
    tokio::time::sleep(past_the_bound).await; // without the renewal, C would take it now
    store.renew_unhandled_updates("b").await.unwrap();
    assert!(
        ours(
            store
                .claim_unhandled_updates("c", Unhandled::StaleOnly, stale, 100)
                .await
                .unwrap()
        )
        .is_empty(),
        "a renewed update was taken over"
    );
    tokio::time::sleep(past_the_bound).await;
    assert_eq!(
        ours(
            store
                .claim_unhandled_updates("c", Unhandled::StaleOnly, stale, 100)
                .await
                .unwrap()
        ),
        [base + 1]
    );
    store.mark_updates_handled(&[base + 1]).await.unwrap();
}

async fn a_replayed_prompt_finds_its_job_and_is_not_charged_again(store: &Store) {
    register(store, 1, 10).await;
    let update = 8_000_000_000;
    let submission = Submission {
        job: NewJob {
            user_id: UserId(1),
            model: "flux-schnell".into(),
            prompt: "a replayed prompt".into(),
            params: serde_json::json!({}),
        },
        cost: 3,
        quota_day: Utc::now().date_naive(),
        daily_limit: 100,
        queue_max: 100,
        source_update: Some(update),
        reply: None,
    };
    let SubmitOutcome::Queued { job, .. } = store.submit_job(submission.clone()).await.unwrap()
    else {
        panic!("refused")
    };
    let again = store.submit_job(submission).await.unwrap();
    assert!(
        matches!(&again, SubmitOutcome::AlreadySubmitted { job: same } if same.id == job.id),
        "{again:?}"
    );
    let user = store.get_user(UserId(1)).await.unwrap().unwrap();
    assert_eq!((user.credits, user.daily_count), (7, 1), "charged once");
    store.delete_users_in_range(1..2).await.unwrap();
}
