use std::time::Duration;

use chrono::Utc;
use genbot_store::{
    MovementKind, NewJob, NewStarPayment, PaymentRecorded, RefundResult, RefundStart, RefundState,
    Store, Submission, SubmitOutcome, UserId,
};

use crate::helpers::{on_both_backends, register};

on_both_backends!(
    a_repeated_payment_is_credited_once,
    a_refund_takes_the_credits_back_once_and_is_refused_when_they_were_spent,
    a_refused_refund_gives_the_credits_back,
    refunds_racing_spending_never_lose_or_double_credits,
    movements_explain_the_balance,
);

fn payment(charge: &str, user: UserId, credits: i64) -> NewStarPayment {
    NewStarPayment {
        charge_id: charge.into(),
        user,
        stars: credits * 5,
        credits,
    }
}

fn job(user: UserId, cost: i64) -> Submission {
    Submission {
        job: NewJob {
            user_id: user,
            model: "flux-schnell".into(),
            prompt: "spend".into(),
            params: serde_json::json!({}),
        },
        cost,
        quota_day: Utc::now().date_naive(),
        daily_limit: 1_000_000,
        queue_max: 1_000_000,
        source_update: None,
        reply: None,
    }
}

async fn audit_holds(store: &Store, user: UserId) -> i64 {
    let audit = store.credit_audit(user.0..user.0 + 1).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0].credits, audit[0].expected,
        "balance and ledger disagree"
    );
    audit[0].credits
}

async fn a_repeated_payment_is_credited_once(store: &Store) {
    let alice = register(store, 1, 10).await;
    assert_eq!(
        store
            .record_payment(payment("ch-1", alice, 50))
            .await
            .unwrap(),
        PaymentRecorded::Credited { balance: 60 }
    );
    assert_eq!(
        store
            .record_payment(payment("ch-1", alice, 50))
            .await
            .unwrap(),
        PaymentRecorded::AlreadyRecorded { balance: 60 }
    );
    // Concurrent repeats (two replicas handed the same update): one credits.
    let repeats = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.record_payment(payment("ch-2", alice, 20)).await })
    });
    let mut credited = 0;
    for repeat in repeats {
        if matches!(
            repeat.await.unwrap().unwrap(),
            PaymentRecorded::Credited { .. }
        ) {
            credited += 1;
        }
    }
    assert_eq!(credited, 1, "a charge id credited {credited} times");
    assert_eq!(audit_holds(store, alice).await, 80);
    assert!(matches!(
        store.record_payment(payment("ch-3", UserId(404), 5)).await,
        Err(genbot_store::StoreError::UserNotFound(UserId(404)))
    ));
}

async fn a_refund_takes_the_credits_back_once_and_is_refused_when_they_were_spent(store: &Store) {
    let bob = register(store, 2, 0).await;
    store
        .record_payment(payment("ch-b1", bob, 30))
        .await
        .unwrap();
    let RefundStart::Started(started) = store.start_refund("ch-b1").await.unwrap() else {
        panic!("refund not started");
    };
    assert_eq!(started.refund, RefundState::Refunding);
    assert_eq!(store.get_user(bob).await.unwrap().unwrap().credits, 0);
    // A retry (the first attempt crashed before Telegram answered) takes nothing more.
    assert!(matches!(
        store.start_refund("ch-b1").await.unwrap(),
        RefundStart::Started(_)
    ));
    assert_eq!(store.get_user(bob).await.unwrap().unwrap().credits, 0);
    assert!(store
        .finish_refund("ch-b1", RefundResult::Refunded)
        .await
        .unwrap());
    assert!(!store
        .finish_refund("ch-b1", RefundResult::Refused)
        .await
        .unwrap());
    assert!(matches!(
        store.start_refund("ch-b1").await.unwrap(),
        RefundStart::AlreadyRefunded(_)
    ));
    assert_eq!(
        store.start_refund("nope").await.unwrap(),
        RefundStart::NotFound
    );

    store
        .record_payment(payment("ch-b2", bob, 30))
        .await
        .unwrap();
    assert!(matches!(
        store.submit_job(job(bob, 5)).await.unwrap(),
        SubmitOutcome::Queued { .. }
    ));
    match store.start_refund("ch-b2").await.unwrap() {
        RefundStart::Spent { balance, payment } => {
            assert_eq!((balance, payment.credits), (25, 30));
        }
        other => panic!("refund of spent credits: {other:?}"),
    }
    assert_eq!(audit_holds(store, bob).await, 25);
}

async fn a_refused_refund_gives_the_credits_back(store: &Store) {
    let carol = register(store, 3, 1).await;
    store
        .record_payment(payment("ch-c", carol, 10))
        .await
        .unwrap();
    assert!(matches!(
        store.start_refund("ch-c").await.unwrap(),
        RefundStart::Started(_)
    ));
    assert_eq!(audit_holds(store, carol).await, 1);
    assert!(store
        .finish_refund("ch-c", RefundResult::Refused)
        .await
        .unwrap());
    assert_eq!(audit_holds(store, carol).await, 11);
    assert_eq!(
        store.payment("ch-c").await.unwrap().unwrap().refund,
        RefundState::None
    );
}

async fn refunds_racing_spending_never_lose_or_double_credits(store: &Store) {
    // Each round: a user with exactly one purchase's credits spends them while an admin refunds
    // the purchase, both released at once. One side wins; credits never go below zero and the
    // ledger always balances. At least 20 rounds, and on until each side has won at least once
    // (a race that always ends the same way proves nothing about the race), within a bound.
    const MIN_ROUNDS: i64 = 20;
    const MAX_ROUNDS: i64 = 200;
    let mut refunded = 0;
    let mut spent = 0;
    let mut rounds = 0;
    while rounds < MIN_ROUNDS || refunded == 0 || spent == 0 {
        assert!(
            rounds < MAX_ROUNDS,
            "{MAX_ROUNDS} rounds and one side always won: refunded {refunded}, spent {spent}"
        );
        let round = rounds;
        rounds += 1;
        let id = 100 + round;
        let dave = register(store, id, 0).await;
        let charge = format!("ch-race-{round}");
        store
            .record_payment(payment(&charge, dave, 4))
            .await
            .unwrap();
        // A head start of 0 to 3 ms for one side or the other, so neither always wins by the
        // order the tasks happen to be scheduled in.
        let head_start = Duration::from_micros(rand::random::<u64>() % 3_000);
        let refund_first = rand::random::<bool>();
        let go = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let spender = {
            let store = store.clone();
            let go = go.clone();
            tokio::spawn(async move {
                go.wait().await;
                if refund_first {
                    tokio::time::sleep(head_start).await;
                }
                let mut queued = 0;
                for _ in 0..4 {
                    if matches!(
                        store.submit_job(job(dave, 1)).await.unwrap(),
                        SubmitOutcome::Queued { .. }
                    ) {
                        queued += 1;
                    }
                }
                queued
            })
        };
        go.wait().await;
        if !refund_first {
            tokio::time::sleep(head_start).await;
        }
        let refund = store.start_refund(&charge).await.unwrap();
        let queued = spender.await.unwrap();
        let credits = audit_holds(store, dave).await;
        assert!(credits >= 0);
        match refund {
            RefundStart::Started(_) => {
                refunded += 1;
                assert_eq!(queued, 0, "round {round}: refunded and spent");
            }
            RefundStart::Spent { .. } => {
                spent += 1;
                assert!(
                    queued > 0,
                    "round {round}: refused a refund nothing was spent of"
                );
                assert_eq!(credits, 4 - queued);
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    eprintln!("refund race: {refunded} refunded, {spent} spent in {rounds} rounds");
}

async fn movements_explain_the_balance(store: &Store) {
    let erin = register(store, 5, 0).await;
    store
        .record_payment(payment("ch-e", erin, 12))
        .await
        .unwrap();
    assert!(matches!(
        store.submit_job(job(erin, 3)).await.unwrap(),
        SubmitOutcome::Queued { .. }
    ));
    let movements = store.movements(erin, 10).await.unwrap();
    let kinds: Vec<(MovementKind, i64)> = movements.iter().map(|m| (m.kind, m.credits)).collect();
    assert!(kinds.contains(&(MovementKind::Purchase, 12)), "{kinds:?}");
    assert!(kinds.contains(&(MovementKind::Generation, -3)), "{kinds:?}");
    assert_eq!(kinds.len(), 2);
    assert!(
        movements.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first"
    );
    assert_eq!(store.movements(erin, 1).await.unwrap().len(), 1);
    let purchase = movements
        .iter()
        .find(|m| m.kind == MovementKind::Purchase)
        .unwrap();
    assert_eq!(purchase.detail, "ch-e");
    // Payments are listed however many images came after them.
    for _ in 0..12 {
        store.submit_job(job(erin, 0)).await.unwrap();
    }
    let payments = store.payments_of(erin, 5).await.unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (payments[0].charge_id.as_str(), payments[0].credits),
        ("ch-e", 12)
    );
}
