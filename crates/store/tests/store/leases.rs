use std::time::Duration;

use genbot_store::Store;

use crate::helpers::on_both_backends;

on_both_backends!(
    a_lease_has_one_holder_until_it_expires_or_is_released,
    a_replica_id_is_held_by_one_live_process
);

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

/// On PostgreSQL a replica id is one holder's until its hold is dropped (its connection ends);
/// SQLite has nothing to hold.
async fn a_replica_id_is_held_by_one_live_process(store: &Store) {
    // The hold is named by the schema too, so runs of this test beside each other (each in its
    // own schema) do not meet; the pid keeps them apart on a server without that.
    let twin = format!("twin-{}", std::process::id());
    let first = store.hold_replica_id(&twin).await.unwrap();
    assert!(first.is_some(), "the first hold refused");
    let second = store.hold_replica_id(&twin).await.unwrap();
    let other = store.hold_replica_id("other").await.unwrap();
    assert!(other.is_some(), "ids share a hold");
    if store.backend() == "sqlite" {
        assert!(second.is_some(), "SQLite refused a hold it does not need");
        return;
    }
    assert!(second.is_none(), "two live holders of one replica id");
    drop(first);
    // The server lets go when it reads the closed connection: soon, but not synchronously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store.hold_replica_id(&twin).await.unwrap().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the id stayed held 10 s after its holder let go"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
