use std::time::Duration;

use genbot_store::Store;

use crate::helpers::on_both_backends;

on_both_backends!(a_lease_has_one_holder_until_it_expires_or_is_released);

async fn a_lease_has_one_holder_until_it_expires_or_is_released(store: &Store) {
    let long = Duration::from_secs(60);
    assert!(store.take_lease("poller", "a", long).await.unwrap());
    assert!(
        !store.take_lease("poller", "b", long).await.unwrap(),
        "two holders"
    );
    assert!(
        store.take_lease("poller", "a", long).await.unwrap(),
        "a renewal refused"
    );
    assert!(
        store.take_lease("other", "b", long).await.unwrap(),
        "names share a lease"
    );
    assert_eq!(
        store.lease_holder("poller").await.unwrap().as_deref(),
        Some("a")
    );
    // Who holds it and until when (what a refused webhook replica is told).
    let lease = store.lease("poller").await.unwrap().unwrap();
    let ends_in = lease.until - chrono::Utc::now();
    assert_eq!(lease.owner, "a");
    assert!(
        ends_in > chrono::Duration::seconds(50) && ends_in <= chrono::Duration::seconds(61),
        "{lease:?}"
    );
    // Released: taken at once.
    store.release_lease("poller", "b").await.unwrap();
    assert_eq!(
        store.lease_holder("poller").await.unwrap().as_deref(),
        Some("a"),
        "released by another"
    );
    store.release_lease("poller", "a").await.unwrap();
    assert_eq!(store.lease_holder("poller").await.unwrap(), None);
    assert!(store.take_lease("poller", "b", long).await.unwrap());
    // Expired: taken over.
    assert!(store
        .take_lease("short", "a", Duration::from_millis(1))
        .await
        .unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store.take_lease("short", "b", long).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "an expired lease was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.lease_holder("short").await.unwrap().as_deref(),
        Some("b")
    );
}
