//! Replicas under load on one Bot API mock and one PostgreSQL: the handling of updates spreads
//! over every replica (claimed per chat, each chat in order at one replica at a time), a
//! replica killed while holding chats has them taken over, and a rolling stop behind a
//! round-robin load balancer loses nothing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::telegram::{Entry, SimUser};

use crate::process::{database_url_text, default_mocks, scratch_postgres, wait_until, Bot};
use crate::replica_handoff::{healthy, metric};
use crate::replicas::webhook_url_at_telegram;

const WAIT: Duration = Duration::from_secs(60);

/// The bot's texts in a chat, in order.
fn texts(user: &SimUser) -> Vec<String> {
    user.transcript()
        .into_iter()
        .filter_map(|e| match e {
            Entry::BotText { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .0
}

/// Waits until no update in the table is still unhandled (`handled_at` unset).
async fn every_update_handled(pool: &sqlx::PgPool) {
    wait_until("every update marked handled", WAIT, || async {
        count(
            pool,
            "SELECT count(*) FROM telegram_updates WHERE handled_at IS NULL",
        )
        .await
            == 0
    })
    .await;
}

/// Two polling replicas, many chats each sending three commands at once: both replicas handle
/// updates (only one of them polls), every update is answered once and each chat's answers come
/// in the order of its messages. Then replica B, which does not poll and whose handlers are
/// slow, is SIGKILLed while it holds chats it has not answered yet: A takes them over when
/// B's claims lapse, and each is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_replicas_share_the_handling_and_a_killed_handlers_chats_are_taken_over() {
    let Some(database) = scratch_postgres(
        "polling_replicas_share_the_handling_and_a_killed_handlers_chats_are_taken_over",
    )
    .await
    else {
        return;
    };
    let database_url = database_url_text(&database);
    let (telegram, replicate) = default_mocks().await;
    let (port_a, port_b) = (crate::free_port(), crate::free_port());
    let mut a = Bot::new(&telegram, &replicate, &database_url)
        .with("REPLICA_ID", "spread-a")
        .listen_on(port_a);
    // B's handlers wait 2 s before they answer: the window in which it is killed below.
    let mut b = Bot::new(&telegram, &replicate, &database_url)
        .with("REPLICA_ID", "spread-b")
        .listen_on(port_b)
        .with("GENBOT_TEST_HOOKS", "1")
        .with("GENBOT_TEST_SLOW_HANDLERS_MS", "2000");
    a.start();
    let first = telegram.user(78_000, "first", Some("en"));
    first.send_text("/start");
    wait_until("replica A polls and answers", WAIT, || async {
        !texts(&first).is_empty()
    })
    .await;
    b.start();
    wait_until("replica B is up", WAIT, || async { healthy(port_b).await }).await;
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    // B takes part once it joined the members sharing the work (a lease in the database); a
    // build without members never gets there, and is judged by what B handled below.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &pool,
        "SELECT count(*) FROM leases WHERE name = 'inbox-member:spread-b'",
    )
    .await
        == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Waves of 30 users, three commands each, until both replicas handled some: whether B's
    // rounds win any chats from the poller's depends on how the two processes are scheduled,
    // and beside two CI runs B once got none of a single wave's 30 (the poller took them all).
    let mut users: Vec<SimUser> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let (handled_a, handled_b) = loop {
        let first = 78_100 + users.len() as i64;
        let wave: Vec<SimUser> = (0..30)
            .map(|n| telegram.user(first + n, &format!("s{}", first + n), Some("en")))
            .collect();
        let started = Instant::now();
        for user in &wave {
            for command in ["/start", "/help", "/balance"] {
                user.send_text(command);
            }
        }
        users.extend(wave);
        wait_until("every command answered", WAIT, || async {
            users.iter().all(|u| texts(u).len() >= 3)
        })
        .await;
        let took = started.elapsed();
        every_update_handled(&pool).await;
        let handled_a = metric(port_a, "genbot_updates_total").await;
        let handled_b = metric(port_b, "genbot_updates_total").await;
        eprintln!(
            "spread: {} updates of {} chats, the last 90 in {took:?}; handled by A (the poller) {handled_a}, by B {handled_b}",
            3 * users.len(),
            users.len()
        );
        if (handled_b >= 9 && handled_a >= 9) || users.len() >= 90 || Instant::now() >= deadline {
            break (handled_a, handled_b);
        }
    };
    for user in &users {
        let said = texts(user);
        assert_eq!(said.len(), 3, "user {}: {said:?}", user.id());
        assert!(
            said[0].starts_with("Hi,")
                && said[1].starts_with("Send any text")
                && said[2].starts_with("Credits:"),
            "user {}'s answers out of order: {said:?}",
            user.id()
        );
    }
    let sent = 1 + 3 * users.len() as u64;
    assert_eq!(handled_a + handled_b, sent, "A {handled_a}, B {handled_b}");
    assert!(
        handled_b >= 9 && handled_a >= 9,
        "the handling did not spread over {} waves: A (the poller) {handled_a}, B {handled_b}",
        users.len() / 30
    );

    // B takes chats and is killed before it answers them (its handlers wait 2 s). A recorder
    // takes its share of a batch's free chats, which is all of a batch of one: how Telegram
    // batches 20 quick messages depends on when the poller asks, so new users keep coming, 20 at
    // a time, until B holds some (it took 42 of 90 above; one round almost always does).
    let b_holds = || {
        count(
            &pool,
            "SELECT count(*) FROM telegram_updates
             WHERE handled_at IS NULL AND owner = 'spread-b'",
        )
    };
    let mut late: Vec<SimUser> = Vec::new();
    let deadline = Instant::now() + WAIT;
    'rounds: loop {
        let first = 79_000 + late.len() as i64;
        let fresh: Vec<SimUser> = (0..20)
            .map(|n| telegram.user(first + n, &format!("k{}", first + n), Some("en")))
            .collect();
        for user in &fresh {
            user.send_text("/start");
        }
        late.extend(fresh);
        let round_ends = Instant::now() + Duration::from_secs(5);
        while Instant::now() < round_ends {
            if b_holds().await > 0 {
                break 'rounds;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            Instant::now() < deadline,
            "replica B took none of {} new chats",
            late.len()
        );
    }
    b.kill().await;
    let held: Vec<(i64,)> = sqlx::query_as(
        "SELECT update_id FROM telegram_updates WHERE handled_at IS NULL AND owner = 'spread-b'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let killed = Instant::now();
    wait_until("every new user answered", WAIT, || async {
        late.iter().all(|u| !texts(u).is_empty())
    })
    .await;
    let answered_after = killed.elapsed();
    every_update_handled(&pool).await;
    eprintln!(
        "kill: B held {} updates; all {} new users answered {answered_after:?} after the kill",
        held.len(),
        late.len()
    );
    for user in &late {
        assert_eq!(
            texts(user).len(),
            1,
            "user {}: {:?}",
            user.id(),
            texts(user)
        );
    }
    assert!(
        !held.is_empty(),
        "B held nothing when killed: the test proved nothing"
    );
    let taken_over = count(
        &pool,
        &format!(
            "SELECT count(*) FROM telegram_updates WHERE owner = 'spread-a' AND update_id IN ({})",
            held.iter()
                .map(|(id,)| id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
    .await;
    assert_eq!(
        taken_over,
        held.len() as i64,
        "B's updates not taken over by A"
    );
    assert_eq!(telegram.stats().poll_conflicts, 0, "two replicas polled");
    pool.close().await;
    a.kill().await;
    database.drop_now().await.unwrap();
}

/// A load balancer handing each new connection to the next replica in turn (skipping one that
/// refuses connections, as a health-checked balancer does); bytes are copied as they are.
struct RoundRobin {
    port: u16,
    /// Connections handed to each upstream.
    handed: Arc<Vec<AtomicU64>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    async fn start(upstreams: Vec<u16>) -> RoundRobin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handed: Arc<Vec<AtomicU64>> =
            Arc::new(upstreams.iter().map(|_| AtomicU64::new(0)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let counts = handed.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstreams, counts, next) = (upstreams.clone(), counts.clone(), next.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::SeqCst);
                    for turn in 0..upstreams.len() {
                        let index = (first + turn) % upstreams.len();
                        let connected =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstreams[index])).await;
                        if let Ok(mut upstream) = connected {
                            counts[index].fetch_add(1, Ordering::SeqCst);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                });
            }
        });
        RoundRobin { port, handed, task }
    }

    fn handed(&self, index: usize) -> u64 {
        self.handed[index].load(Ordering::SeqCst)
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two webhook replicas behind one round-robin load balancer; replica B gets SIGTERM while
/// updates stream in (a rolling deploy's first step): every user is answered once, the
/// webhook is still set, and Telegram never got a 401 (both replicas accept the one secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_replicas_behind_a_round_robin_balancer_lose_nothing_to_a_rolling_stop() {
    let Some(database) = scratch_postgres(
        "webhook_replicas_behind_a_round_robin_balancer_lose_nothing_to_a_rolling_stop",
    )
    .await
    else {
        return;
    };
    let database_url = database_url_text(&database);
    let (telegram, replicate) = default_mocks().await;
    let (port_a, port_b) = (crate::free_port(), crate::free_port());
    let balancer = RoundRobin::start(vec![port_a, port_b]).await;
    let url = format!("http://127.0.0.1:{}/telegram/webhook", balancer.port);
    let replica = |id: &str, port: u16| {
        Bot::new(&telegram, &replicate, &database_url)
            .with("REPLICA_ID", id)
            .listen_on(port)
            .with_args(&["--webhook-url", &url])
    };
    let mut a = replica("rr-a", port_a);
    let mut b = replica("rr-b", port_b);
    let set_calls = || {
        telegram
            .stats()
            .methods
            .get("setwebhook")
            .copied()
            .unwrap_or(0)
    };
    a.start();
    wait_until("replica A set the webhook", WAIT, || async {
        set_calls() >= 1
    })
    .await;
    b.start();
    wait_until("replica B set the webhook and serves", WAIT, || async {
        set_calls() >= 2 && healthy(port_b).await
    })
    .await;
    let users: Vec<SimUser> = (0..40)
        .map(|n| telegram.user(79_000 + n, &format!("rr{n}"), Some("en")))
        .collect();
    let (before, after) = users.split_at(20);
    for user in before {
        user.send_text("/start");
    }
    wait_until("some of the first users answered", WAIT, || async {
        before.iter().filter(|u| !texts(u).is_empty()).count() >= 5
    })
    .await;
    // B stops while the rest stream in.
    let sending = async {
        for user in after {
            user.send_text("/start");
            tokio::task::yield_now().await;
        }
    };
    let ((stopped, _), ()) = tokio::join!(b.terminate(WAIT), sending);
    assert!(
        stopped.success(),
        "replica B did not stop cleanly: {stopped:?}"
    );
    wait_until("every user answered", WAIT, || async {
        users.iter().all(|u| !texts(u).is_empty())
    })
    .await;
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    every_update_handled(&pool).await;
    let stats = telegram.stats();
    eprintln!(
        "round robin: connections A {}, B {}; webhook answers {:?}, retries {}",
        balancer.handed(0),
        balancer.handed(1),
        stats.webhook_answers,
        stats.webhook_retries
    );
    for user in &users {
        assert_eq!(
            texts(user).len(),
            1,
            "user {}: {:?}",
            user.id(),
            texts(user)
        );
    }
    assert!(
        balancer.handed(0) >= 1 && balancer.handed(1) >= 1,
        "the balancer did not use both replicas"
    );
    assert_eq!(
        stats.webhook_answers.get(&401).copied().unwrap_or(0),
        0,
        "Telegram's deliveries were refused: {:?}",
        stats.webhook_answers
    );
    assert_eq!(
        webhook_url_at_telegram(&telegram).await.as_deref(),
        Some(url.as_str()),
        "the stopping replica deleted or changed the webhook"
    );
    pool.close().await;
    a.kill().await;
    database.drop_now().await.unwrap();
}
