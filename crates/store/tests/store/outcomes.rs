//! Prediction outcomes one replica records for another (a Replicate webhook that reached a
//! replica not running the job).

use std::time::Duration;

use genbot_store::Store;

use crate::helpers::on_both_backends;

on_both_backends!(an_outcome_is_taken_once_by_whoever_waits_for_it_and_old_ones_are_forgotten);

async fn an_outcome_is_taken_once_by_whoever_waits_for_it_and_old_ones_are_forgotten(
    store: &Store,
) {
    store
        .record_prediction_outcome("p1", r#"{"id":"p1","status":"succeeded"}"#)
        .await
        .unwrap();
    // Replicate retried the delivery: the first record stays.
    store
        .record_prediction_outcome("p1", r#"{"id":"p1","status":"failed"}"#)
        .await
        .unwrap();
    store
        .record_prediction_outcome("p2", r#"{"id":"p2","status":"failed"}"#)
        .await
        .unwrap();
    let none: Vec<String> = store
        .take_prediction_outcomes(&["p9".to_owned()])
        .await
        .unwrap();
    assert!(none.is_empty());
    let taken = store
        .take_prediction_outcomes(&["p1".to_owned(), "p9".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        taken,
        vec![r#"{"id":"p1","status":"succeeded"}"#.to_owned()]
    );
    assert!(store
        .take_prediction_outcomes(&["p1".to_owned()])
        .await
        .unwrap()
        .is_empty());
    // p2 was never taken: kept an hour in production, forgotten here at once.
    assert_eq!(
        store
            .prune_prediction_outcomes(Duration::from_secs(3_600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_prediction_outcomes(Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert!(store
        .take_prediction_outcomes(&["p2".to_owned()])
        .await
        .unwrap()
        .is_empty());
}
