use std::time::Duration;

use chrono::Utc;
use genbot_store::{InboxUpdate, NewJob, Store, Submission, SubmitOutcome, Unhandled, UserId};

use crate::helpers::{on_both_backends, register};

on_both_backends!(
    a_chats_updates_go_to_the_replica_holding_it_until_none_waits,
    a_dead_replicas_chats_are_taken_over_when_its_claims_lapse_and_a_restart_takes_its_own,
    a_replayed_prompt_finds_its_job_and_is_not_charged_again,
    a_recorder_whose_claim_lapsed_renews_it_before_taking_more,
    a_crowds_marks_are_all_written_and_free_every_chat,
);

const LONG: Duration = Duration::from_secs(3600);
const RUNNING: Unhandled = Unhandled::Running {
    leave_fresh: Duration::ZERO,
};

fn update(id: i64, chat: i64) -> InboxUpdate {
    InboxUpdate::new(id, chat, format!("{{\"update_id\":{id}}}"))
}

/// The ids of `updates` with their replay marks.
fn ids(updates: &[InboxUpdate]) -> Vec<(i64, bool)> {
    updates.iter().map(|u| (u.id, u.replay)).collect()
}

async fn a_chats_updates_go_to_the_replica_holding_it_until_none_waits(store: &Store) {
    let base = 7_000_000_000; // Telegram's update ids are large; each test has its own schema
    let (one, two) = (501, 502);
    // A, alone, records a batch of two chats and takes all of it.
    let recorded = store
        .record_updates(
            "a",
            vec![
                update(base, one),
                update(base + 1, two),
                update(base + 2, one),
            ],
            LONG,
        )
        .await
        .unwrap();
    assert_eq!(recorded.new, [base, base + 1, base + 2]);
    assert_eq!(
        ids(&recorded.taken),
        [(base, false), (base + 1, false), (base + 2, false)]
    );
    assert_eq!(recorded.taken[0].chat, one);
    // Recorded twice (Telegram sent it again): nothing new, nothing taken.
    let again = store
        .record_updates("a", vec![update(base, one)], LONG)
        .await
        .unwrap();
    assert!(again.new.is_empty() && again.taken.is_empty(), "{again:?}");
    // B records the next update of chat one (a webhook delivery reached B): A holds the chat,
    // so B leaves it, and A's round takes it (after its earlier ones: one chat, in order).
    let by_b = store
        .record_updates("b", vec![update(base + 3, one)], LONG)
        .await
        .unwrap();
    assert_eq!(by_b.new, [base + 3]);
    assert!(by_b.taken.is_empty(), "B took a chat A holds: {by_b:?}");
    assert!(store
        .take_updates("b", RUNNING, LONG)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&store.take_updates("a", RUNNING, LONG).await.unwrap()),
        [(base + 3, false)]
    );
    assert!(
        store
            .take_updates("a", RUNNING, LONG)
            .await
            .unwrap()
            .is_empty(),
        "an update taken twice"
    );
    // Chat one handled: A's claim is given up and its next update goes to whoever records it.
    store
        .mark_updates_handled("a", &[base, base + 2, base + 3])
        .await
        .unwrap();
    let next = store
        .record_updates("b", vec![update(base + 4, one)], LONG)
        .await
        .unwrap();
    assert_eq!(ids(&next.taken), [(base + 4, false)], "chat one stayed A's");
    // Chat two still waits at A: nobody else takes it, however often it asks.
    assert!(store
        .take_updates("b", RUNNING, LONG)
        .await
        .unwrap()
        .is_empty());
    // The heartbeat keeps A's claim; handled, it is given up.
    assert_eq!(store.renew_chat_claims("a", LONG).await.unwrap(), 1);
    store.mark_updates_handled("a", &[base + 1]).await.unwrap();
    store.mark_updates_handled("b", &[base + 4]).await.unwrap();
    assert_eq!(store.renew_chat_claims("a", LONG).await.unwrap(), 0);
    assert_eq!(store.renew_chat_claims("b", LONG).await.unwrap(), 0);
}

/// A round's marks under a crowd: more than one write's worth on SQLite (which writes them in
/// chunks). Every one is marked, counted once, and every chat's claim is given up.
async fn a_crowds_marks_are_all_written_and_free_every_chat(store: &Store) {
    let base = 7_100_000_000;
    let updates: Vec<InboxUpdate> = (0..700).map(|n| update(base + n, 600 + n % 300)).collect();
    let recorded = store.record_updates("a", updates, LONG).await.unwrap();
    assert_eq!(recorded.taken.len(), 700);
    let all: Vec<i64> = (base..base + 700).collect();
    assert_eq!(store.mark_updates_handled("a", &all).await.unwrap(), 700);
    assert_eq!(store.mark_updates_handled("a", &all).await.unwrap(), 0);
    assert_eq!(
        store.renew_chat_claims("a", LONG).await.unwrap(),
        0,
        "a claim outlived its chat's last update"
    );
    let next = store
        .record_updates("b", vec![update(base + 700, 600)], LONG)
        .await
        .unwrap();
    assert_eq!(ids(&next.taken), [(base + 700, false)]);
}

async fn a_dead_replicas_chats_are_taken_over_when_its_claims_lapse_and_a_restart_takes_its_own(
    store: &Store,
) {
    let base = 7_500_000_000;
    let (one, two) = (601, 602);
    // A records and takes under a short lease, then stops renewing (it was killed).
    let short = Duration::from_secs(1);
    let recorded = store
        .record_updates("a", vec![update(base, one), update(base + 1, two)], short)
        .await
        .unwrap();
    assert_eq!(recorded.taken.len(), 2);
    // B records the next of chat two while A's claim still holds: left for A.
    let left = store
        .record_updates("b", vec![update(base + 2, two)], LONG)
        .await
        .unwrap();
    assert!(left.taken.is_empty());
    assert!(store
        .take_updates("b", RUNNING, LONG)
        .await
        .unwrap()
        .is_empty());
    // Past the lease: B takes both chats, A's taken updates marked as replays, in order.
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let taken = store.take_updates("b", RUNNING, LONG).await.unwrap();
    assert_eq!(
        ids(&taken),
        [(base, true), (base + 1, true), (base + 2, false)]
    );
    // A restarts (same replica id) while B holds them: A takes nothing of B's.
    assert!(store
        .take_updates("a", Unhandled::AtStart, LONG)
        .await
        .unwrap()
        .is_empty());
    // B is restarted: at start it takes its own chats' waiting updates again, all replays.
    let restarted = store
        .take_updates("b", Unhandled::AtStart, LONG)
        .await
        .unwrap();
    assert_eq!(
        ids(&restarted),
        [(base, true), (base + 1, true), (base + 2, true)]
    );
    // Attempts are what they were: a take counts none.
    assert!(restarted.iter().all(|u| u.attempts == 0));
    store
        .mark_updates_handled("b", &[base, base + 1, base + 2])
        .await
        .unwrap();
    // A clean stop gives every claim up at once.
    store
        .record_updates("b", vec![update(base + 3, one)], LONG)
        .await
        .unwrap();
    store.release_chat_claims("b").await.unwrap();
    assert_eq!(
        ids(&store.take_updates("a", RUNNING, LONG).await.unwrap()),
        [(base + 3, true)]
    );
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

/// With two members (PostgreSQL), a recorder takes its share of a batch's free chats and
/// leaves the rest; the other member's round takes them, and the recorder's own round leaves
/// them to the others while they are fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_takes_its_share_and_the_other_member_the_rest() {
    let Some(test) =
        crate::helpers::postgres("a_recorder_takes_its_share_and_the_other_member_the_rest").await
    else {
        return;
    };
    let store = &test.store;
    store.renew_chat_claims("a", LONG).await.unwrap();
    store.renew_chat_claims("b", LONG).await.unwrap();
    let base = 7_700_000_000;
    let batch: Vec<InboxUpdate> = (0..4).map(|n| update(base + n, 700 + n)).collect();
    let recorded = store.record_updates("a", batch, LONG).await.unwrap();
    assert_eq!(recorded.new.len(), 4);
    assert_eq!(ids(&recorded.taken), [(base, false), (base + 1, false)]);
    let fresh = Unhandled::Running {
        leave_fresh: Duration::from_secs(60),
    };
    assert!(
        store
            .take_updates("a", fresh, LONG)
            .await
            .unwrap()
            .is_empty(),
        "the recorder took fresh updates it left to the others"
    );
    assert_eq!(
        ids(&store.take_updates("b", RUNNING, LONG).await.unwrap()),
        [(base + 2, false), (base + 3, false)]
    );
}

/// A database an older genbot left with unhandled updates (schema 14, no chats, no claims):
/// after the upgrade each update knows its chat and a replica's first round takes them all,
/// as replays (their handling may have died with the old process).
async fn upgraded_updates_know_their_chats(store: &Store) {
    let taken = store
        .take_updates("new", Unhandled::AtStart, LONG)
        .await
        .unwrap();
    let chats: Vec<(i64, i64, bool)> = taken.iter().map(|u| (u.id, u.chat, u.replay)).collect();
    assert_eq!(
        chats,
        [
            (9_000_000_001, 42, true),
            (9_000_000_002, 43, true),
            (9_000_000_003, 44, true),
            (9_000_000_004, 0, true)
        ]
    );
}

/// Updates as a schema-14 genbot recorded them, with the chats they belong to.
const OLD_UPDATES: [(i64, &str); 5] = [
    (
        9_000_000_001,
        r#"{"update_id":9000000001,"message":{"chat":{"id":42},"text":"hi"}}"#,
    ),
    (
        9_000_000_002,
        r#"{"update_id":9000000002,"callback_query":{"id":"q","from":{"id":7},"message":{"chat":{"id":43}}}}"#,
    ),
    (
        9_000_000_003,
        r#"{"update_id":9000000003,"pre_checkout_query":{"id":"p","from":{"id":44}}}"#,
    ),
    (
        9_000_000_004,
        r#"{"update_id":9000000004,"poll":{"id":"1"}}"#,
    ),
    // Handled already: stays handled.
    (
        9_000_000_005,
        r#"{"update_id":9000000005,"message":{"chat":{"id":45},"text":"done"}}"#,
    ),
];

#[test]
fn a_sqlite_database_at_schema_14_is_upgraded_with_its_updates_chats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    drop(genbot_store::SqliteStore::open(&path, 1).unwrap());
    {
        // Back to schema 14: no chats, no claims (nor v16's index by owner, nor v17's
        // ledger indexes).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX generation_jobs_user_charged;
             DROP INDEX generation_jobs_user_refunded;
             DROP INDEX star_payments_user_refund;
             DROP INDEX telegram_updates_waiting_owner;
             DROP TABLE chat_claims;
             DROP INDEX telegram_updates_waiting;
             ALTER TABLE telegram_updates DROP COLUMN chat_id;
             PRAGMA user_version = 14;",
        )
        .unwrap();
        for (id, payload) in OLD_UPDATES {
            let handled = (id == 9_000_000_005).then_some(1_i64);
            conn.execute(
                "INSERT INTO telegram_updates (update_id, payload, owner, received_at, handled_at)
                 VALUES (?1, ?2, 'old-replica', 0, ?3)",
                rusqlite::params![id, payload, handled],
            )
            .unwrap();
        }
    }
    let store = Store::Sqlite(genbot_store::SqliteStore::open(&path, 1).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(upgraded_updates_know_their_chats(&store));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_at_schema_14_is_upgraded_with_its_updates_chats() {
    let Some(test) = crate::helpers::postgres(
        "a_postgres_database_at_schema_14_is_upgraded_with_its_updates_chats",
    )
    .await
    else {
        return;
    };
    let options = test.pg_options().unwrap();
    let pool = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
    sqlx::raw_sql(
        "DROP TABLE chat_claims;
         DROP INDEX telegram_updates_waiting;
         ALTER TABLE telegram_updates DROP COLUMN chat_id;
         DELETE FROM genbot_schema_version WHERE version = 15;",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (id, payload) in OLD_UPDATES {
        sqlx::query(
            "INSERT INTO telegram_updates (update_id, payload, owner, handled_at)
             VALUES ($1, $2, 'old-replica', CASE WHEN $3 THEN now() END)",
        )
        .bind(id)
        .bind(payload)
        .bind(id == 9_000_000_005)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let upgraded = Store::Postgres(
        genbot_store::PgStore::connect_with(options, 2, "test")
            .await
            .unwrap(),
    );
    upgraded_updates_know_their_chats(&upgraded).await;
}

/// A replica whose chat claim lapsed (its renewal was late) never takes another update of
/// that chat under the lapsed claim: held as it was, the claim stayed lapsed, and another
/// replica's next round took the chat with the update just taken (both handling one chat at
/// once). Two members, so a recorder claims only its share of the batch's free chats.
async fn a_recorder_whose_claim_lapsed_renews_it_before_taking_more(store: &Store) {
    let base = 7_700_000_000;
    let (kept, new) = (701, 702);
    let short = Duration::from_secs(1);
    for member in ["a", "b"] {
        store
            .take_updates(member, Unhandled::AtStart, LONG)
            .await
            .unwrap();
    }
    let first = store
        .record_updates("a", vec![update(base, kept)], short)
        .await
        .unwrap();
    assert_eq!(first.taken.len(), 1);
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let next = store
        .record_updates(
            "a",
            vec![update(base + 1, new), update(base + 2, kept)],
            LONG,
        )
        .await
        .unwrap();
    let stolen = store.take_updates("b", RUNNING, LONG).await.unwrap();
    let by_a: Vec<i64> = next.taken.iter().map(|u| u.id).collect();
    let by_b: Vec<i64> = stolen.iter().map(|u| u.id).collect();
    assert!(
        !by_b.contains(&(base + 2)) || !by_a.contains(&(base + 2)),
        "both replicas took update {}: A {by_a:?}, B {by_b:?}",
        base + 2
    );
}
