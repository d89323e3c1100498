use std::time::Duration;

use genbot_bench::measure::{cache_read_through, db_read, db_write};
use genbot_bench::target::{Target, TargetError, TEST_IDS};
use genbot_config::DatabaseUrl;
use genbot_store::{JobStatus, NewJob, NewUser, Store, UserId};

async fn deployment_with_real_users(path: &std::path::Path) -> Store {
    let url = DatabaseUrl::Sqlite {
        path: path.to_owned(),
    };
    let store = Store::connect(&url, 2).await.unwrap();
    for id in [1, 42, 999_999] {
        store
            .upsert_user(NewUser {
                id: UserId(id),
                username: Some(format!("real{id}")),
                language: Some("ru".into()),
                initial_credits: 7,
            })
            .await
            .unwrap();
        store
            .create_job(NewJob {
                user_id: UserId(id),
                model: "flux-schnell".into(),
                prompt: "a real user's prompt".into(),
                params: serde_json::json!({}),
            })
            .await
            .unwrap();
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_below_the_test_range_are_untouched_and_no_test_user_remains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.db");
    let store = deployment_with_real_users(&path).await;
    let mut before = Vec::new();
    for id in [1, 42, 999_999] {
        before.push(store.get_user(UserId(id)).await.unwrap().unwrap());
    }
    let jobs_before = store
        .jobs_with_status(JobStatus::Queued, 100)
        .await
        .unwrap();

    let url = DatabaseUrl::Sqlite { path: path.clone() };
    let target = Target::deployment(&url, None, Duration::from_secs(60), 10_000, 2)
        .await
        .unwrap();
    let ids = target.seed_users(200).await.unwrap();
    assert!(ids.start >= TEST_IDS.start && ids.end <= TEST_IDS.end);
    db_read(&target.store, ids.clone(), 4, Duration::from_millis(200)).await;
    db_write(&target.store, ids.clone(), 4, Duration::from_millis(200)).await;
    cache_read_through(&target.users, ids, 1.1, 4, Duration::from_millis(200)).await;
    // Nothing the test wrote can be started by an engine, even before the cleanup.
    let test_jobs_runnable = store
        .jobs_with_status(JobStatus::Queued, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|j| j.user_id.0 >= TEST_IDS.start)
        .count();
    assert_eq!(test_jobs_runnable, 0, "the DB write test left queued jobs");
    target.cleanup().await.unwrap();

    for user in before {
        assert_eq!(
            store.get_user(user.id).await.unwrap().unwrap(),
            user,
            "user {} changed",
            user.id
        );
    }
    assert_eq!(
        store
            .jobs_with_status(JobStatus::Queued, 100)
            .await
            .unwrap(),
        jobs_before
    );
    assert_eq!(
        store
            .count_users_in_range(TEST_IDS.start..i64::MAX)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.count_users().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_with_users_in_the_test_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.db");
    let store = deployment_with_real_users(&path).await;
    store
        .upsert_user(NewUser {
            id: UserId(1_234_567),
            username: None,
            language: None,
            initial_credits: 0,
        })
        .await
        .unwrap();
    let url = DatabaseUrl::Sqlite { path };
    match Target::deployment(&url, None, Duration::from_secs(60), 10_000, 2).await {
        Err(TargetError::RangeInUse(1)) => {}
        other => panic!("expected RangeInUse, got {other:?}"),
    }
    assert!(store.get_user(UserId(1_234_567)).await.unwrap().is_some());
}
