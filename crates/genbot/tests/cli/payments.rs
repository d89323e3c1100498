//! Stars payments across crashes: the real `genbot serve`, SIGKILLed while payments are being
//! credited and receipted, started again (with a different offer), and then told about every
//! payment once more. Counted at the Bot API mock (charges) and in the ledger.

use std::time::Duration;

use futures_util::FutureExt;
use genbot_mocks::telegram::{Entry, SimUser};
use genbot_store::{Store, UserId};

use crate::process::{database_url_text, default_mocks, open, scratch_postgres, wait_until, Bot};

const PAYERS: i64 = 30;
const FIRST: i64 = 40_000;
const INITIAL_CREDITS: i64 = 10;
const WAIT: Duration = Duration::from_secs(60);

fn keyboard_of(user: &SimUser) -> Option<i64> {
    user.transcript().iter().rev().find_map(|e| match e {
        Entry::BotText {
            message_id,
            buttons,
            ..
        } if buttons.iter().any(|(_, d)| d.starts_with("buy:")) => Some(*message_id),
        _ => None,
    })
}

async fn paying_users_are_credited_once_across_a_crash_and_repeats(database_url: &str) {
    let (telegram, replicate) = default_mocks().await;
    let mut bot = Bot::new(&telegram, &replicate, database_url).with("STARS_PACKAGES", "10:50");
    bot.start();
    let users: Vec<SimUser> = (0..=PAYERS)
        .map(|n| telegram.user(FIRST + n, &format!("p{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
        user.send_text("/buy");
    }
    wait_until("every /buy answered with packages", WAIT, || async {
        users.iter().all(|u| keyboard_of(u).is_some())
    })
    .await;
    for user in &users {
        user.press(keyboard_of(user).unwrap(), "buy:10:50").unwrap();
    }
    wait_until("every user has an invoice", WAIT, || async {
        users.iter().all(|u| u.last_invoice().is_some())
    })
    .await;
    let store = open(database_url).await;
    let range = FIRST..FIRST + PAYERS + 1;
    let paid_credits = |store: Store| async move {
        store
            .credit_audit(FIRST..FIRST + PAYERS + 1)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.credits > INITIAL_CREDITS)
            .count()
    };

    // Receipts are held back by a slow Bot API, so the kill lands after payments are in the
    // ledger but before their updates are marked handled: those are replayed at the restart.
    telegram.set_send_delay(Duration::from_secs(3));
    let (payers, late) = users.split_at(PAYERS as usize);
    for user in payers {
        user.pay(user.last_invoice().unwrap()).unwrap();
    }
    wait_until("a third of the payments credited", WAIT, || {
        paid_credits(store.clone()).map(|n| n >= (PAYERS / 3) as usize)
    })
    .await;
    bot.kill().await;
    let credited_at_kill = paid_credits(store.clone()).await;
    let receipted_at_kill = payers.iter().filter(|u| has_receipt(u)).count();
    // Credited but not receipted: killed between the ledger and the end of the handler.
    assert!(
        receipted_at_kill < credited_at_kill,
        "the kill missed the window: {credited_at_kill} credited, {receipted_at_kill} receipted"
    );
    eprintln!("at the kill: {credited_at_kill} of {PAYERS} payments credited, {receipted_at_kill} receipted");
    telegram.set_send_delay(Duration::ZERO);

    // The offer changes while the bot is down: the late user's invoice (10:50) is refused.
    bot.env
        .push(("STARS_PACKAGES".to_owned(), "12:50,30:100".to_owned()));
    bot.start();
    let late = &late[0];
    let seen = late.transcript().len();
    late.pay(late.last_invoice().unwrap()).unwrap();
    let refused = late
        .wait_for(WAIT, |t| {
            t[seen..]
                .iter()
                .any(|e| matches!(e, Entry::CheckoutAnswered { .. }))
        })
        .await
        .expect("the late checkout is answered");
    assert!(
        refused[seen..].iter().any(|e| matches!(
            e,
            Entry::CheckoutAnswered { ok: false, error: Some(reason) } if reason.contains("no longer offered")
        )),
        "a withdrawn package was accepted: {:?}",
        &refused[seen..]
    );

    let charges = telegram.charges();
    assert_eq!(charges.len(), PAYERS as usize, "one charge per payer");
    // Telegram reports every payment once more.
    for (charge, user, _, _) in &charges {
        let payer = &users[(user - FIRST) as usize];
        payer.repeat_payment(charge).unwrap();
    }
    wait_until(
        "every payment credited and every update answered",
        WAIT,
        || async {
            paid_credits(store.clone()).await == PAYERS as usize && telegram.stats().unanswered == 0
        },
    )
    .await;
    bot.kill().await;

    for (charge, user, stars, refunded) in &charges {
        let recorded = store.payment(charge).await.unwrap();
        let recorded = recorded.unwrap_or_else(|| panic!("charge {charge} lost"));
        assert_eq!(
            (recorded.user, recorded.stars, recorded.credits, *refunded),
            (UserId(*user), *stars, 10, false)
        );
    }
    for audit in store.credit_audit(range).await.unwrap() {
        assert_eq!(audit.credits, audit.expected, "ledger broken: {audit:?}");
        let expected = if audit.user.0 < FIRST + PAYERS {
            INITIAL_CREDITS + 10
        } else {
            INITIAL_CREDITS
        };
        assert_eq!(
            audit.credits, expected,
            "user {} credited {} (credited at the kill: {credited_at_kill})",
            audit.user, audit.credits
        );
    }
    assert!(
        payers.iter().all(has_receipt),
        "a payer never got a receipt"
    );
}

fn has_receipt(user: &SimUser) -> bool {
    user.transcript().iter().any(|e| {
        matches!(e, Entry::BotText { text, .. }
            if text.contains("+10 credits") || text.contains("already credited"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stars_payments_survive_sigkill_and_repeats_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("payments.db").display());
    paying_users_are_credited_once_across_a_crash_and_repeats(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stars_payments_survive_sigkill_and_repeats_on_postgres() {
    let Some(database) =
        scratch_postgres("stars_payments_survive_sigkill_and_repeats_on_postgres").await
    else {
        return;
    };
    paying_users_are_credited_once_across_a_crash_and_repeats(&database_url_text(&database)).await;
    // As the replica tests do: a run left one genbot_scratch_* database behind.
    database.drop_now().await.unwrap();
}
