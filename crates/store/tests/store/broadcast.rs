use std::time::Duration;

use genbot_store::{BroadcastSend, Store, UserId};

use crate::helpers::{on_both_backends, register};

on_both_backends!(a_broadcast_moves_its_cursor_and_resumes_under_its_lease);

async fn a_broadcast_moves_its_cursor_and_resumes_under_its_lease(store: &Store) {
    for id in [10, 20, 30] {
        register(store, id, 0).await;
    }
    store.mark_blocked(UserId(20)).await.unwrap();
    let lease = Duration::from_secs(60);
    let created = store
        .create_broadcast(UserId(10), "hello".into(), Some(9_000_000_001), "a", lease)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .create_broadcast(UserId(10), "hello".into(), Some(9_000_000_001), "a", lease)
            .await
            .unwrap()
            .is_none(),
        "a replayed /broadcast started a second broadcast"
    );
    assert_eq!((created.cursor, created.done), (0, false));
    assert!(
        store.claim_broadcast("b", lease).await.unwrap().is_none(),
        "another replica took a leased broadcast"
    );
    let claimed = store.claim_broadcast("a", lease).await.unwrap().unwrap();
    assert_eq!(claimed.id, created.id);
    let recipients = store.broadcast_recipients(0, 2).await.unwrap();
    assert_eq!(recipients, [(UserId(10), false), (UserId(20), true)]);
    let send = |user: i64, sent| {
        let store = store.clone();
        async move {
            store
                .record_broadcast_send(created.id, "a", UserId(user), sent, lease)
                .await
                .unwrap()
        }
    };
    assert!(send(10, BroadcastSend::Delivered).await);
    assert!(send(20, BroadcastSend::Blocked).await);
    assert!(
        !send(20, BroadcastSend::Blocked).await,
        "a user counted twice"
    );
    assert!(
        !store
            .record_broadcast_send(created.id, "b", UserId(30), BroadcastSend::Delivered, lease)
            .await
            .unwrap(),
        "a replica without the lease moved the cursor"
    );
    // The owner restarts: it resumes after the last recorded user.
    let resumed = store.claim_broadcast("a", lease).await.unwrap().unwrap();
    assert_eq!(
        (resumed.cursor, resumed.delivered, resumed.blocked),
        (20, 1, 1)
    );
    assert_eq!(
        store
            .broadcast_recipients(resumed.cursor, 100)
            .await
            .unwrap(),
        [(UserId(30), false)]
    );
    // Its lease expires: another replica takes it over.
    let short = Duration::ZERO;
    store.claim_broadcast("a", short).await.unwrap().unwrap();
    let taken = store.claim_broadcast("b", lease).await.unwrap().unwrap();
    assert_eq!(taken.id, created.id);
    let done = store
        .finish_broadcast(created.id, Some(77), true)
        .await
        .unwrap()
        .unwrap();
    assert!(done.done);
    assert_eq!(done.progress_message, Some(77));
    assert!(store.claim_broadcast("b", lease).await.unwrap().is_none());
}
