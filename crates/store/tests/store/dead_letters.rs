use std::time::Duration;

use genbot_store::{InboxUpdate, SetAside, Store, Unhandled};

use crate::helpers::on_both_backends;

on_both_backends!(
    a_poison_update_is_counted_set_aside_and_retried_only_by_an_operator,
    a_claim_counts_nothing_a_started_replay_does,
);

fn update(id: i64) -> InboxUpdate {
    InboxUpdate::new(id, 900, format!("{{\"update_id\":{id}}}"))
}

const LONG: Duration = Duration::from_secs(3600);
const RUNNING: Unhandled = Unhandled::Running {
    leave_fresh: Duration::ZERO,
};

async fn a_poison_update_is_counted_set_aside_and_retried_only_by_an_operator(store: &Store) {
    let id = 7_100_000_000;
    store
        .record_updates("a", vec![update(id)], LONG)
        .await
        .unwrap();
    assert_eq!(store.note_update_failure(id, "panicked").await.unwrap(), 1);
    assert_eq!(store.note_update_failure(id, "panicked").await.unwrap(), 2);
    assert_eq!(
        store.note_update_failure(id + 999, "x").await.unwrap(),
        0,
        "an update not in the inbox has no attempts"
    );
    assert_eq!(
        store
            .dead_letter_update(id, "panicked 3 times")
            .await
            .unwrap(),
        SetAside::First
    );
    assert_eq!(
        store.dead_letter_update(id, "again").await.unwrap(),
        SetAside::NotWaiting,
        "set aside twice"
    );
    // A replica whose claim lapsed while it set the update aside too marks it handled: the
    // dead letter stays one (marked handled, `inbox retry` would clear it and replay nothing).
    assert_eq!(store.mark_updates_handled("b", &[id]).await.unwrap(), 0);
    assert_eq!(store.count_dead_letters().await.unwrap(), 1);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id, id);
    assert_eq!(letters[0].attempts, 2);
    assert_eq!(letters[0].error, "panicked 3 times");
    assert!(
        !format!("{:?}", letters[0]).contains("update_id"),
        "Debug shows the payload"
    );
    // Never replayed: not at its replica's start, not by another replica.
    for (owner, which) in [("a", Unhandled::AtStart), ("b", RUNNING)] {
        let taken = store.take_updates(owner, which, LONG).await.unwrap();
        assert!(
            taken.iter().all(|u| u.id != id),
            "{owner} replayed a dead letter"
        );
    }
    // Its chat's claim is given up at A's next heartbeat: nothing of it waits.
    store.renew_chat_claims("a", LONG).await.unwrap();
    // Retried by an operator: any replica's next round takes it, with the attempts the retry
    // gave it (one short of the handler's limit: one more try).
    assert!(store.retry_dead_letter(id, 2).await.unwrap());
    assert!(
        !store.retry_dead_letter(id, 2).await.unwrap(),
        "retried twice"
    );
    assert_eq!(store.count_dead_letters().await.unwrap(), 0);
    let taken = store.take_updates("b", RUNNING, LONG).await.unwrap();
    let retried: Vec<&InboxUpdate> = taken.iter().filter(|u| u.id == id).collect();
    assert_eq!(retried.len(), 1, "the retried dead letter was not taken");
    assert_eq!(retried[0].attempts, 2, "the retry's attempts");
    // Taken as a replay: its try is counted as it starts (a retry that dies with its process
    // is set aside at the next take) and it is never shed by a full chat backlog.
    assert!(
        retried[0].replay,
        "a retried dead letter must be taken as a replay"
    );
    // Set aside again: its sender was told the first time.
    assert_eq!(
        store
            .dead_letter_update(id, "panicked again")
            .await
            .unwrap(),
        SetAside::AfterRetry
    );
    // Retried once more and handled now: it can no longer be set aside.
    assert!(store.retry_dead_letter(id, 2).await.unwrap());
    store.take_updates("b", RUNNING, LONG).await.unwrap();
    store.mark_updates_handled("b", &[id]).await.unwrap();
    assert_eq!(
        store.dead_letter_update(id, "late").await.unwrap(),
        SetAside::NotWaiting
    );
}

/// Restarts alone never add up to a dead letter: only a replay whose handling started does.
async fn a_claim_counts_nothing_a_started_replay_does(store: &Store) {
    let id = 7_200_000_000;
    store
        .record_updates("a", vec![update(id)], LONG)
        .await
        .unwrap();
    let attempts_at_start = || async {
        store
            .take_updates("a", Unhandled::AtStart, LONG)
            .await
            .unwrap()
            .iter()
            .filter(|u| u.id == id)
            .map(|u| u.attempts)
            .collect::<Vec<u32>>()
    };
    for _ in 0..5 {
        assert_eq!(attempts_at_start().await, [0], "a take counted an attempt");
    }
    assert_eq!(
        store
            .note_update_failure(id, "the process stopped while handling it")
            .await
            .unwrap(),
        1
    );
    assert_eq!(attempts_at_start().await, [1]);
}
