use std::time::Duration;

use genbot_store::{ReplicaIdHold, Store};

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

/// The backend pids of this database holding an advisory lock under `application_name`
/// (the id in it is this test's own, random, so no other test's sessions are counted).
async fn lock_holders(admin: &mut sqlx::PgConnection, application_name: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
         WHERE a.datname = current_database() AND a.application_name = $1
           AND l.locktype = 'advisory' AND l.granted",
    )
    .bind(application_name)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Ends the backend `pid`, one this test created (found by its own id in this database).
async fn terminate(admin: &mut sqlx::PgConnection, pid: i32) {
    let ended: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND datname = current_database()",
    )
    .bind(pid)
    .fetch_one(admin)
    .await
    .unwrap();
    assert!(ended, "backend {pid} was not ended");
}

/// An admin connection to the test's database, a hold of a fresh random id (so no other test's
/// sessions are ever counted or ended), its `application_name` and its backend's pid.
struct Held {
    admin: sqlx::PgConnection,
    id: String,
    name: String,
    hold: ReplicaIdHold,
    pid: i32,
}

async fn held(test_name: &str) -> Option<(crate::helpers::TestStore, Held)> {
    use sqlx::Connection;
    let test = crate::helpers::postgres(test_name).await?;
    let mut admin = sqlx::PgConnection::connect_with(&test.pg_options().unwrap())
        .await
        .unwrap();
    let id = format!("lost-{:016x}", rand::random::<u64>());
    let name = ReplicaIdHold::application_name(&id);
    let hold = test.store.hold_replica_id(&id).await.unwrap().unwrap();
    let holders = lock_holders(&mut admin, &name).await;
    assert_eq!(holders.len(), 1, "{holders:?}");
    let held = Held {
        admin,
        id,
        name,
        hold,
        pid: holders[0],
    };
    Some((test, held))
}

/// Waits up to 10 s for one holder of `name` other than the ended backend `ended`.
async fn taken_again(admin: &mut sqlx::PgConnection, name: &str, ended: i32) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let holders = lock_holders(admin, name).await;
        if holders.len() == 1 && holders[0] != ended {
            return holders[0];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hold lost with backend {ended} was not taken again within 10 s: holders {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hold whose connection is ended under it (pg_terminate_backend, as idle_session_timeout or
/// a proxy would) is taken again on a new connection, and stays one holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_replica_id_hold_is_taken_again() {
    let Some((test, held)) = held("a_lost_replica_id_hold_is_taken_again").await else {
        return;
    };
    let (mut admin, id, name, mut hold, first) =
        (held.admin, held.id, held.name, held.hold, held.pid);
    let keeping = tokio::spawn(async move { hold.keep(Duration::from_millis(200)).await });
    terminate(&mut admin, first).await;
    let second = taken_again(&mut admin, &name, first).await;
    assert!(
        test.store.hold_replica_id(&id).await.unwrap().is_none(),
        "a second holder beside the retaken hold"
    );
    assert!(
        !keeping.is_finished(),
        "the watch gave up a hold it took again"
    );
    // Ended again: taken again again (the watch goes on after a retaking).
    terminate(&mut admin, second).await;
    taken_again(&mut admin, &name, second).await;
    keeping.abort();
}

/// When another process took the id while the hold was lost, the watch says so (its holder
/// must stop) rather than running beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_replica_id_taken_by_another_ends_the_watch() {
    let Some((test, mut held)) = held("a_lost_replica_id_taken_by_another_ends_the_watch").await
    else {
        return;
    };
    terminate(&mut held.admin, held.pid).await;
    // Not watched yet: the other process takes the id as soon as the server let it go.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let _other = loop {
        if let Some(other) = test.store.hold_replica_id(&held.id).await.unwrap() {
            break other;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the id stayed held 10 s after its holder's backend was ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let taken = tokio::time::timeout(
        Duration::from_secs(10),
        held.hold.keep(Duration::from_millis(100)),
    )
    .await
    .expect("the watch did not notice within 10 s that another process took the id");
    assert_eq!(taken.id, held.id);
    assert!(
        taken
            .to_string()
            .contains(&format!("REPLICA_ID={:?} was taken", held.id)),
        "{taken}"
    );
    let holders = lock_holders(&mut held.admin, &held.name).await;
    assert_eq!(holders.len(), 1, "{holders:?}");
}
