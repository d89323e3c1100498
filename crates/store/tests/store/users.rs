use chrono::NaiveDate;
use genbot_store::{DailyQuota, NewJob, NewUser, Store, StoreError, UserId};

use crate::helpers::on_both_backends;

on_both_backends!(
    user_crud,
    credits_never_go_below_zero,
    daily_limit_at_the_boundary_and_across_a_date_change,
    concurrent_consumers_never_exceed_the_daily_limit,
    range_delete_leaves_other_ids_untouched,
    settings_are_kept_per_model,
    concurrent_settings_each_keep_theirs,
);

/// Presses from several chats at once, each on its own input: every one is kept (a press that
/// read the map and wrote it back whole lost the others'), and one set to `None` is removed.
async fn concurrent_settings_each_keep_theirs(store: &Store) {
    store.upsert_user(new_user(9)).await.unwrap();
    let names: Vec<String> = (0..12).map(|n| format!("input_{n}")).collect();
    let mut presses = tokio::task::JoinSet::new();
    for (n, name) in names.iter().enumerate() {
        let (store, name) = (store.clone(), name.clone());
        presses.spawn(async move {
            store
                .set_model_setting(
                    UserId(9),
                    "flux \"dev\".1".into(),
                    name,
                    Some(serde_json::json!(n)),
                )
                .await
        });
    }
    while let Some(pressed) = presses.join_next().await {
        pressed.unwrap().unwrap();
    }
    let user = store
        .set_model_setting(UserId(9), "flux \"dev\".1".into(), "input_3".into(), None)
        .await
        .unwrap();
    let settings = user.settings_for("flux \"dev\".1");
    assert_eq!(settings.len(), 11, "{settings:?}");
    for (n, name) in names.iter().enumerate().filter(|(n, _)| *n != 3) {
        assert_eq!(settings.get(name), Some(&serde_json::json!(n)), "{name}");
    }
    // Another model's inputs are untouched, and a missing user is said to be.
    assert!(user.settings_for("flux-dev").is_empty());
    assert!(matches!(
        store
            .set_model_setting(UserId(10), "m".into(), "x".into(), Some(1.into()))
            .await,
        Err(StoreError::UserNotFound(_))
    ));
}

async fn settings_are_kept_per_model(store: &Store) {
    store.upsert_user(new_user(7)).await.unwrap();
    let fresh = store.get_user(UserId(7)).await.unwrap().unwrap();
    assert!(fresh.settings_for("flux-dev").is_empty());
    let mut wide = serde_json::Map::new();
    wide.insert("aspect_ratio".into(), "16:9".into());
    store
        .set_model_settings(UserId(7), "flux-dev".into(), wide.clone())
        .await
        .unwrap();
    let mut fast = serde_json::Map::new();
    fast.insert("num_inference_steps".into(), 2.into());
    let user = store
        .set_model_settings(UserId(7), "flux-schnell".into(), fast.clone())
        .await
        .unwrap();
    assert_eq!(user.settings_for("flux-dev"), wide);
    assert_eq!(user.settings_for("flux-schnell"), fast);
    let user = store
        .set_model_settings(UserId(7), "flux-dev".into(), serde_json::Map::new())
        .await
        .unwrap();
    assert!(user.settings_for("flux-dev").is_empty());
    assert_eq!(
        store
            .get_user(UserId(7))
            .await
            .unwrap()
            .unwrap()
            .settings_for("flux-schnell"),
        fast
    );
    assert!(matches!(
        store
            .set_model_settings(UserId(8), "flux-dev".into(), fast)
            .await,
        Err(StoreError::UserNotFound(_))
    ));
}

fn new_user(id: i64) -> NewUser {
    NewUser {
        id: UserId(id),
        username: Some(format!("user{id}")),
        language: Some("en".into()),
        initial_credits: 10,
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

async fn user_crud(store: &Store) {
    assert_eq!(store.get_user(UserId(42)).await.unwrap(), None);

    let created = store.upsert_user(new_user(42)).await.unwrap();
    assert_eq!(created.id, UserId(42));
    assert_eq!(created.credits, 10);
    assert_eq!(created.username.as_deref(), Some("user42"));
    assert_eq!(
        store.get_user(UserId(42)).await.unwrap(),
        Some(created.clone())
    );

    store.add_credits(UserId(42), 5).await.unwrap();
    let refreshed = store
        .upsert_user(NewUser {
            username: Some("renamed".into()),
            language: Some("ru".into()),
            initial_credits: 999,
            ..new_user(42)
        })
        .await
        .unwrap();
    assert_eq!(refreshed.username.as_deref(), Some("renamed"));
    assert_eq!(refreshed.language.as_deref(), Some("ru"));
    assert_eq!(refreshed.credits, 15, "an upsert must not reset credits");
    assert_eq!(refreshed.created_at, created.created_at);

    let chosen = store
        .set_selected_model(UserId(42), Some("flux-dev".into()))
        .await
        .unwrap();
    assert_eq!(chosen.selected_model.as_deref(), Some("flux-dev"));
    let stored = store.get_user(UserId(42)).await.unwrap().unwrap();
    assert_eq!(stored.selected_model.as_deref(), Some("flux-dev"));

    assert!(matches!(
        store.set_selected_model(UserId(7), None).await,
        Err(StoreError::UserNotFound(UserId(7)))
    ));
    store.upsert_user(new_user(43)).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 2);
}

async fn credits_never_go_below_zero(store: &Store) {
    store.upsert_user(new_user(1)).await.unwrap();
    assert_eq!(store.add_credits(UserId(1), -4).await.unwrap(), 6);
    match store.add_credits(UserId(1), -7).await {
        Err(StoreError::InsufficientCredits {
            balance: 6,
            needed: 7,
            ..
        }) => {}
        other => panic!("expected InsufficientCredits, got {other:?}"),
    }
    assert_eq!(store.get_user(UserId(1)).await.unwrap().unwrap().credits, 6);
    assert_eq!(store.add_credits(UserId(1), -6).await.unwrap(), 0);
    assert!(matches!(
        store.add_credits(UserId(2), 1).await,
        Err(StoreError::UserNotFound(UserId(2)))
    ));
}

async fn daily_limit_at_the_boundary_and_across_a_date_change(store: &Store) {
    let id = UserId(5);
    store.upsert_user(new_user(5)).await.unwrap();
    for used in 1..=3 {
        assert_eq!(
            store
                .consume_daily_generation(id, day(24), 3)
                .await
                .unwrap(),
            DailyQuota::Granted {
                used,
                remaining: 3 - used
            }
        );
    }
    assert_eq!(
        store
            .consume_daily_generation(id, day(24), 3)
            .await
            .unwrap(),
        DailyQuota::Exhausted { limit: 3 }
    );
    let user = store.get_user(id).await.unwrap().unwrap();
    assert_eq!((user.daily_count, user.daily_reset_date), (3, day(24)));

    // A new day starts from zero, whatever was used before.
    assert_eq!(
        store
            .consume_daily_generation(id, day(25), 3)
            .await
            .unwrap(),
        DailyQuota::Granted {
            used: 1,
            remaining: 2
        }
    );
    // A refund for another day changes nothing; one for today gives the generation back.
    store.release_daily_generation(id, day(24)).await.unwrap();
    assert_eq!(store.get_user(id).await.unwrap().unwrap().daily_count, 1);
    store.release_daily_generation(id, day(25)).await.unwrap();
    store.release_daily_generation(id, day(25)).await.unwrap();
    assert_eq!(store.get_user(id).await.unwrap().unwrap().daily_count, 0);

    assert!(matches!(
        store.consume_daily_generation(UserId(6), day(25), 3).await,
        Err(StoreError::UserNotFound(UserId(6)))
    ));
}

async fn concurrent_consumers_never_exceed_the_daily_limit(store: &Store) {
    let id = UserId(9);
    store.upsert_user(new_user(9)).await.unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.consume_daily_generation(id, day(24), 10).await })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        if let DailyQuota::Granted { .. } = task.await.unwrap().unwrap() {
            granted += 1;
        }
    }
    assert_eq!(granted, 10);
    assert_eq!(store.get_user(id).await.unwrap().unwrap().daily_count, 10);
}

async fn range_delete_leaves_other_ids_untouched(store: &Store) {
    let ids = [999_999, 1_000_000, 1_000_500, 1_999_999, 2_000_000];
    for id in ids {
        store.upsert_user(new_user(id)).await.unwrap();
        store
            .create_job(NewJob {
                user_id: UserId(id),
                model: "flux-schnell".into(),
                prompt: format!("prompt of {id}"),
                params: serde_json::json!({}),
            })
            .await
            .unwrap();
    }
    let before_low = store.get_user(UserId(999_999)).await.unwrap();
    let deleted = store
        .delete_users_in_range(1_000_000..2_000_000)
        .await
        .unwrap();
    assert_eq!((deleted.users, deleted.jobs), (3, 3));
    assert_eq!(store.get_user(UserId(999_999)).await.unwrap(), before_low);
    assert!(store.get_user(UserId(2_000_000)).await.unwrap().is_some());
    for id in [1_000_000, 1_000_500, 1_999_999] {
        assert_eq!(store.get_user(UserId(id)).await.unwrap(), None);
    }
    assert_eq!(store.count_users().await.unwrap(), 2);
    assert_eq!(
        store
            .count_users_in_range(1_000_000..2_000_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.count_users_in_range(0..i64::MAX).await.unwrap(), 2);
    assert_eq!(store.count_jobs_by_status().await.unwrap().queued, 2);
}
