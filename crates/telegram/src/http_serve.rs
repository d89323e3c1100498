//! genbot's own HTTP server: `/healthz`, `/metrics` and the webhooks, on `serve --listen`.
//!
//! `axum::serve` gives hyper no timer, so a connection that never finishes its request head
//! (slowloris), or opens and stays silent, is held for ever, and it accepts without limit:
//! thousands of such connections hold sockets, tasks and buffers. Here each connection is
//! served by hyper's HTTP/1 connection with a header-read timeout, and at most
//! [`HttpLimits::max_connections`] are open at once. Graceful shutdown is as `axum::serve`'s:
//! stop accepting, let each connection finish its request in flight, wait for all of them.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to send a whole request head, counted from the connection's start and,
/// on a kept-alive connection, from the end of the previous response. A client that does not
/// finish in time is disconnected, so this also bounds how long an idle keep-alive connection
/// is held. Telegram and Prometheus send their heads in one packet; 10 s leaves slow links room.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections open at once. Telegram uses at most `max_connections` (≤ 100) to deliver a
/// webhook, and a scraper or a health check one each, so 1024 leaves them room ten times over
/// while bounding what a flood of connections holds (a task, a socket, hyper's buffers each).
/// Beyond it, new connections are not accepted but wait in the kernel's listen backlog until
/// one ends, rather than being accepted and reset: a burst is delayed, not refused, and with
/// the header-read timeout a slot comes free within [`HEADER_READ_TIMEOUT`] of a hostile
/// connection's start.
pub const MAX_CONNECTIONS: usize = 1024;

/// Pause after an accept error that is not about one connection (out of file descriptors):
/// retrying at once would spin; the condition usually clears as connections end.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A limit given to [`HttpLimits::new`] that the server cannot work with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpLimitsError {
    /// A zero timeout would close every connection before its request.
    #[error("header_read_timeout is {0:?}: it must be above zero")]
    ZeroTimeout(Duration),
    /// No connection could ever be served.
    #[error("max_connections is 0: it must be at least 1")]
    ZeroConnections,
}

/// The server's limits: [`HttpLimits::default`] in production; tests make them small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    header_read_timeout: Duration,
    max_connections: usize,
}

impl HttpLimits {
    /// Limits with this header-read timeout and connection cap.
    ///
    /// # Errors
    /// A zero timeout or a zero cap.
    pub fn new(
        header_read_timeout: Duration,
        max_connections: usize,
    ) -> Result<Self, HttpLimitsError> {
        if header_read_timeout.is_zero() {
            return Err(HttpLimitsError::ZeroTimeout(header_read_timeout));
        }
        if max_connections == 0 {
            return Err(HttpLimitsError::ZeroConnections);
        }
        Ok(Self {
            header_read_timeout,
            max_connections,
        })
    }

    /// How long a client has to send a request head (see [`HEADER_READ_TIMEOUT`]).
    #[must_use]
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// Most connections open at once (see [`MAX_CONNECTIONS`]).
    #[must_use]
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then accepts no more
/// connections, lets each open one finish the request it is serving (an idle one is closed at
/// once, one still sending its head at the latest when its header-read timeout ends) and
/// returns when all have ended.
///
/// Accept errors are logged and retried, as `axum::serve` does: the server itself never fails.
pub async fn serve<F>(listener: TcpListener, app: Router, limits: HttpLimits, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    let mut shutdown = pin!(shutdown);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    loop {
        // The slot first: at the cap, the next connection stays in the listen backlog.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        // The semaphore is never closed; were it, serving could not go on.
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    if accept_failed(&e, &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            },
        };
        let app = app.clone();
        let closing = closing.clone();
        connections.spawn(async move {
            serve_connection(stream, app, limits, closing).await;
            drop(slot);
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

/// Logs an accept error; one that is not about a single connection is waited out. True if
/// `shutdown` completed meanwhile (it must not be polled again).
async fn accept_failed<F>(e: &std::io::Error, shutdown: &mut std::pin::Pin<&mut F>) -> bool
where
    F: Future<Output = ()>,
{
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        tracing::debug!(error = %e, "a connection ended before it was accepted");
        return false;
    }
    tracing::error!(error = %e, pause = ?ACCEPT_ERROR_PAUSE, "accepting an HTTP connection failed; retrying after a pause");
    tokio::select! {
        () = shutdown.as_mut() => true,
        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => false,
    }
}

/// One connection, HTTP/1 only: Telegram, Replicate and scrapers speak it, and hyper's HTTP/2
/// (or the version sniffing of hyper-util's auto builder) has no header-read timeout.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: HttpLimits,
    closing: CancellationToken,
) {
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // A client gone or too slow is no fault of the server's: debug, or a flood fills the logs.
    if let Err(e) = ended {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_zero_timeout_and_zero_cap() {
        assert_eq!(
            HttpLimits::new(Duration::ZERO, 1),
            Err(HttpLimitsError::ZeroTimeout(Duration::ZERO))
        );
        assert_eq!(
            HttpLimits::new(Duration::from_secs(1), 0),
            Err(HttpLimitsError::ZeroConnections)
        );
        let limits = HttpLimits::new(Duration::from_secs(1), 1);
        assert_eq!(
            limits.map(|l| (l.header_read_timeout(), l.max_connections())),
            Ok((Duration::from_secs(1), 1))
        );
    }
}
