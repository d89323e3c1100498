//! genbot's HTTP server under slow and many clients: request heads that never end are cut off
//! at the header-read timeout while others are answered, connections beyond the cap wait for
//! a slot, and shutdown is not held up by a client that never finishes its head.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use genbot_telegram::http_serve::{serve, HttpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A request head that never ends: no blank line.
const PARTIAL_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
const FULL_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
/// The header-read timeout of the tests that wait for it.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Room over a timeout for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(5);

struct Server {
    address: std::net::SocketAddr,
    stop: CancellationToken,
    served: JoinHandle<()>,
}

async fn start(limits: HttpLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let served = tokio::spawn(serve(listener, app, limits, async move {
        signal.cancelled().await;
    }));
    Server {
        address,
        stop,
        served,
    }
}

impl Server {
    /// Signals shutdown and waits for the server's end, failing past `bound`.
    async fn stopped_within(self, bound: Duration) {
        self.stop.cancel();
        tokio::time::timeout(bound, self.served)
            .await
            .unwrap_or_else(|_| panic!("the server still ran {bound:?} after its shutdown"))
            .unwrap();
    }
}

/// A server with a 1 s header-read timeout and room for many connections.
async fn start_timed() -> Server {
    start(HttpLimits::new(TIMEOUT, 1024).unwrap()).await
}

async fn partial(address: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(PARTIAL_HEAD).await.unwrap();
    stream
}

/// The whole answer to [`FULL_REQUEST`] on a new connection, or `None` if none came within
/// `within`.
async fn health(address: std::net::SocketAddr, within: Duration) -> Option<String> {
    tokio::time::timeout(within, async {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(FULL_REQUEST).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .ok()
}

/// Waits until the server closes `stream` (a read gives 0 or an error), at most until
/// `deadline`; whatever it sent first is read past. True if it was closed.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_heads_are_closed_at_the_timeout_while_others_are_answered() {
    let server = start_timed().await;
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(partial(server.address).await);
    }
    let answer = health(server.address, MARGIN)
        .await
        .expect("GET /healthz answered while 50 heads are unfinished");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    let deadline = opened + TIMEOUT + MARGIN;
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_by(stream, deadline).await,
            "unfinished head {i} still open {:?} after it was sent (timeout {TIMEOUT:?})",
            opened.elapsed()
        );
    }
    // Not closed for some other reason straight away: the timeout ran.
    assert!(
        opened.elapsed() >= TIMEOUT,
        "closed after {:?}",
        opened.elapsed()
    );
    server.stopped_within(MARGIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_at_the_timeout() {
    let server = start_timed().await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer is small: it ends with the body "ok" (the connection stays open after it).
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(b"ok") {
        let n = tokio::time::timeout(MARGIN, stream.read(&mut buf))
            .await
            .expect("an answer to a kept-alive request")
            .unwrap();
        assert_ne!(n, 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    assert!(
        closed_by(&mut stream, answered + TIMEOUT + MARGIN).await,
        "an idle kept-alive connection still open {:?} after its answer",
        answered.elapsed()
    );
    server.stopped_within(MARGIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_slot() {
    // A long timeout: here only a connection's end frees a slot.
    let cap = 4;
    let server = start(HttpLimits::new(Duration::from_secs(600), cap).unwrap()).await;
    let mut slow = Vec::new();
    for _ in 0..cap {
        slow.push(partial(server.address).await);
    }
    // How long to see that nothing comes: an unloaded server answers in a millisecond.
    let unanswered = Duration::from_millis(500);
    assert_eq!(
        health(server.address, unanswered).await,
        None,
        "a connection beyond the cap of {cap} was served"
    );
    let waiting = tokio::spawn(health(server.address, MARGIN));
    drop(slow.pop());
    let answer = waiting
        .await
        .unwrap()
        .expect("served once a connection under the cap ended");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(slow);
    server.stopped_within(MARGIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_an_unfinished_head() {
    let server = start_timed().await;
    let mut slow = partial(server.address).await;
    let answer = health(server.address, MARGIN).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let address = server.address;
    // The unfinished head ends at its header-read timeout, and the server with it.
    server.stopped_within(TIMEOUT + MARGIN).await;
    assert!(closed_by(&mut slow, Instant::now() + MARGIN).await);
    assert!(
        TcpStream::connect(address).await.is_err(),
        "still accepting after the shutdown"
    );
}
