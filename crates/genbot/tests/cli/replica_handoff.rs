//! Work that reaches the wrong replica: a Replicate webhook posted to a replica that does not
//! run the job, and a Telegram webhook delivery whose replica dies before recording it. Both
//! run two `genbot serve` on one PostgreSQL and one Bot API mock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};

use crate::process::{database_url_text, default_mocks, scratch_postgres, wait_until, Bot};

const WAIT: Duration = Duration::from_secs(30);

fn photos(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotPhoto { .. }))
        .count()
}

fn texts(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { .. }))
        .count()
}

/// A counter from `genbot serve`'s `/metrics` on `port` (0 when absent).
pub(crate) async fn metric(port: u16, name: &str) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

pub(crate) async fn healthy(port: u16) -> bool {
    reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Replicate posts every prediction's end to replica B (the one URL both replicas give it),
/// while replica A, which handles the users' messages, runs most of the jobs. With the
/// reconcile poll an hour away, A's results can only come through the database: each must arrive
/// within seconds, each job end exactly once, and no prediction is polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicate_webhook_at_another_replica_ends_the_owners_wait_at_once() {
    let Some(database) =
        scratch_postgres("a_replicate_webhook_at_another_replica_ends_the_owners_wait_at_once")
            .await
    else {
        return;
    };
    let database_url = database_url_text(&database);
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(300),
        failure_rate: 0.0,
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    // Both replicas give Replicate B's webhook URL from their start: B's port is fixed.
    let port_b = crate::free_port();
    let hook = format!("http://127.0.0.1:{port_b}/replicate/webhook");
    let replica = |id: &str| {
        Bot::new(&telegram, &replicate, &database_url)
            .with("REPLICA_ID", id)
            .with("REPLICATE_WEBHOOK_URL", &hook)
            .with("REPLICATE_RECONCILE_SECONDS", "3600")
    };
    let mut a = replica("relay-a");
    let mut b = replica("relay-b").listen_on(port_b);
    // A starts first and polls Telegram: it handles every message, and its own submissions
    // wake its dispatcher, so it claims most jobs (B looks at the queue every 250 ms).
    a.start();
    let port_a = a.port().await;
    let first = telegram.user(76_000, "first", Some("en"));
    first.send_text("/start");
    wait_until("replica A answers", WAIT, || async { texts(&first) > 0 }).await;
    b.start();
    wait_until("replica B serves its webhook", WAIT, || async {
        healthy(port_b).await
    })
    .await;
    let users: Vec<SimUser> = (0..6)
        .map(|n| telegram.user(76_100 + n, &format!("r{n}"), Some("en")))
        .collect();
    let started = Instant::now();
    for user in &users {
        user.send_text(&format!("a harbour at dawn, number {}", user.id()));
    }
    wait_until(
        "every photo, well before the reconcile poll (1 h)",
        Duration::from_secs(20),
        || async { users.iter().all(|u| photos(u) >= 1) },
    )
    .await;
    let took = started.elapsed();
    let relayed_a = metric(port_a, "genbot_replicate_webhooks_relayed_total").await;
    let delivered_b = metric(port_b, "genbot_replicate_webhooks_delivered_total").await;
    let relayed_b = metric(port_b, "genbot_replicate_webhooks_relayed_total").await;
    let delivered_a = metric(port_a, "genbot_replicate_webhooks_delivered_total").await;
    let stats = replicate.stats();
    eprintln!(
        "relay: 6 photos in {took:?}; A relayed {relayed_a}, B delivered {delivered_b}; mock: {} webhooks, {} polls",
        stats.webhooks_delivered, stats.polls
    );
    assert!(
        relayed_a >= 1,
        "no job of replica A ended by a webhook B received: the test proved nothing"
    );
    // Every prediction's end reached exactly one wait: A's through the database, B's directly.
    assert_eq!(
        relayed_a + delivered_b,
        6,
        "A relayed {relayed_a}, B delivered {delivered_b}"
    );
    assert_eq!((delivered_a, relayed_b), (0, 0));
    assert_eq!(stats.webhooks_delivered, 6, "{stats:?}");
    assert_eq!(stats.polls, 0, "a wait ended by polling Replicate");
    // Exactly one photo per job.
    let store = crate::process::open(&database_url).await;
    wait_until("every job delivered", WAIT, || async {
        store.count_jobs_by_status().await.unwrap().succeeded == 6
    })
    .await;
    for user in &users {
        assert_eq!(photos(user), 1, "user {}", user.id());
    }
    a.kill().await;
    b.kill().await;
    database.drop_now().await.unwrap();
}

/// A load balancer in front of two replicas, as an operator runs them: each connection goes
/// to `primary` while it accepts connections, else to `fallback`; bytes are copied as they are,
/// so a replica that dies mid-request closes the caller's connection without an answer.
struct Failover {
    port: u16,
    to_primary: Arc<AtomicU64>,
    to_fallback: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Failover {
    async fn start(primary: u16, fallback: u16) -> Failover {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let to_primary = Arc::new(AtomicU64::new(0));
        let to_fallback = Arc::new(AtomicU64::new(0));
        let (p, f) = (to_primary.clone(), to_fallback.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (p, f) = (p.clone(), f.clone());
                tokio::spawn(async move {
                    let mut upstream = match tokio::net::TcpStream::connect(("127.0.0.1", primary))
                        .await
                    {
                        Ok(up) => {
                            p.fetch_add(1, Ordering::SeqCst);
                            up
                        }
                        Err(_) => {
                            match tokio::net::TcpStream::connect(("127.0.0.1", fallback)).await {
                                Ok(up) => {
                                    f.fetch_add(1, Ordering::SeqCst);
                                    up
                                }
                                Err(_) => return,
                            }
                        }
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Failover {
            port,
            to_primary,
            to_fallback,
            task,
        }
    }
}

impl Drop for Failover {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replica A receives an update on the webhook and is SIGKILLed before recording it (a test
/// hook holds it there); Telegram got no 200, so it sends the update again, the load balancer
/// finds A gone and hands it to B, and the user is answered exactly once. A build that answers
/// Telegram before recording loses the update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_update_whose_replica_dies_before_recording_it_is_answered_once_after_the_retry()
{
    let Some(database) = scratch_postgres(
        "a_webhook_update_whose_replica_dies_before_recording_it_is_answered_once_after_the_retry",
    )
    .await
    else {
        return;
    };
    let database_url = database_url_text(&database);
    let (telegram, replicate) = default_mocks().await;
    // Fixed ports: after A's SIGKILL the balancer must find A's refusing connections, and one
    // from below the ephemeral range is taken by no port-0 bind or outgoing connection meanwhile.
    let (port_a, port_b) = (crate::free_port(), crate::free_port());
    let balancer = Failover::start(port_a, port_b).await;
    let url = format!("http://127.0.0.1:{}/telegram/webhook", balancer.port);
    let mut a = Bot::new(&telegram, &replicate, &database_url)
        .with("REPLICA_ID", "hold-a")
        .listen_on(port_a)
        .with("GENBOT_TEST_HOOKS", "1")
        .with("GENBOT_TEST_HOLD_WEBHOOK_UPDATES_MS", "60000")
        .with_args(&["--webhook-url", &url]);
    let mut b = Bot::new(&telegram, &replicate, &database_url)
        .with("REPLICA_ID", "hold-b")
        .listen_on(port_b)
        .with_args(&["--webhook-url", &url]);
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
    wait_until("replica B set the webhook", WAIT, || async {
        set_calls() >= 2 && healthy(port_b).await
    })
    .await;
    let user = telegram.user(77_001, "Held", Some("en"));
    user.send_text("/help");
    wait_until("the update reached replica A", WAIT, || async {
        balancer.to_primary.load(Ordering::SeqCst) >= 1
    })
    .await;
    // A holds the update before recording it: nothing of it is in the database yet.
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let recorded = || async {
        sqlx::query_as::<_, (String,)>("SELECT owner FROM telegram_updates")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    assert!(recorded().await.is_empty(), "{:?}", recorded().await);
    let killed = Instant::now();
    a.kill().await;
    wait_until(
        "the user answered after Telegram's retry",
        Duration::from_secs(15),
        || async { texts(&user) >= 1 },
    )
    .await;
    eprintln!(
        "held update answered {:?} after the kill; connections: {} to A, {} to B",
        killed.elapsed(),
        balancer.to_primary.load(Ordering::SeqCst),
        balancer.to_fallback.load(Ordering::SeqCst)
    );
    assert!(balancer.to_fallback.load(Ordering::SeqCst) >= 1);
    // Recorded once, by B; handled; nothing A could have left for a take-over.
    wait_until("the update marked handled", WAIT, || async {
        sqlx::query_as::<_, (i64,)>(
            "SELECT count(*) FROM telegram_updates WHERE handled_at IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .0 == 1
    })
    .await;
    assert_eq!(recorded().await, vec![("hold-b".to_owned(),)]);
    assert_eq!(texts(&user), 1, "{:?}", user.transcript());
    pool.close().await;
    b.kill().await;
    database.drop_now().await.unwrap();
}
