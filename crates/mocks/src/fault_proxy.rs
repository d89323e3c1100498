//! A TCP proxy that breaks a connection on demand: put it between the bot and its Redis or
//! PostgreSQL to simulate an outage without touching the server (other tests share it).
//!
//! The mode is switched at run time and applies to new and open connections alike:
//! - [`Fault::Pass`]: bytes flow both ways;
//! - [`Fault::Refuse`]: every connection is reset at once (a connect gets a reset, as from a
//!   port nothing listens on; open ones are reset);
//! - [`Fault::Blackhole`]: connections are accepted and bytes taken, but nothing is forwarded
//!   until the mode changes (like packets dropped and retransmitted later);
//! - [`Fault::Latency`]: every chunk waits this long before it is forwarded;
//! - [`Fault::Reset`]: the connections open now are reset, then traffic passes (a server
//!   restart or a middlebox dropping state mid-stream); the mode reads `Pass` afterwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Refuse,
    Blackhole,
    Latency(Duration),
    Reset,
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultProxyStats {
    pub connections: u64,
    /// Connections reset by `Refuse` or `Reset`.
    pub resets: u64,
    /// Bytes forwarded, both directions.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    resets: AtomicU64,
    bytes: AtomicU64,
}

/// The mode as connections see it: a lasting fault, and how many resets were ordered (a
/// connection opened before the latest reset is reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mode {
    fault: Fault,
    resets: u64,
}

/// A running proxy on a loopback port; stops (and drops its connections) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`, starting in [`Fault::Pass`].
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (mode, watching) = watch::channel(Mode {
            fault: Fault::Pass,
            resets: 0,
        });
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept(listener, upstream, watching, counters.clone()));
        Ok(FaultProxy {
            address,
            mode,
            counters,
            task,
        })
    }

    /// Where clients connect instead of the upstream.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Switches the mode for new and open connections.
    pub fn set(&self, fault: Fault) {
        self.mode.send_modify(|mode| match fault {
            Fault::Reset => {
                mode.resets += 1;
                mode.fault = Fault::Pass;
            }
            lasting => mode.fault = lasting,
        });
    }

    pub fn mode(&self) -> Fault {
        self.mode.borrow().fault
    }

    pub fn stats(&self) -> FaultProxyStats {
        FaultProxyStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            resets: self.counters.resets.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
        }
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let now = *mode.borrow();
        if now.fault == Fault::Refuse {
            reset(client, &counters);
            continue;
        }
        let (mode, counters) = (mode.clone(), counters.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                reset(client, &counters);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let born = now.resets;
            let up = forward(
                client_read,
                server_write,
                mode.clone(),
                born,
                counters.clone(),
            );
            let down = forward(server_read, client_write, mode, born, counters.clone());
            // Either direction ending (or a reset) ends the connection; dropping the halves
            // closes both sockets (with RST when a fault marked them).
            let ended = tokio::select! {
                ended = up => ended,
                ended = down => ended,
            };
            if ended == Ended::Reset {
                counters.resets.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Why a direction stopped.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Closed,
    /// A fault reset the connection.
    Reset,
}

/// Copies `from` to `to` chunk by chunk, applying the mode to each chunk and resetting open
/// connections when the mode turns to `Refuse` or `Reset`.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    born: u64,
    counters: Arc<Counters>,
) -> Ended {
    let doomed = |mode: Mode| mode.fault == Fault::Refuse || mode.resets > born;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = mode.changed() => {
                if changed.is_err() {
                    return Ended::Closed;
                }
                if doomed(*mode.borrow_and_update()) {
                    return reset_halves(from, to);
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return Ended::Closed;
            }
            Ok(n) => n,
        };
        loop {
            let current = *mode.borrow_and_update();
            if doomed(current) {
                return reset_halves(from, to);
            }
            match current.fault {
                Fault::Pass | Fault::Refuse | Fault::Reset => break,
                Fault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Fault::Blackhole => {
                    if mode.changed().await.is_err() {
                        return Ended::Closed;
                    }
                }
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return Ended::Closed;
        }
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Marks both sockets of this direction (client and server) to close with RST; they close
/// when the connection's halves are dropped.
fn reset_halves(from: OwnedReadHalf, to: OwnedWriteHalf) -> Ended {
    let _ = from.as_ref().set_zero_linger();
    let _ = to.as_ref().set_zero_linger();
    Ended::Reset
}

/// Closes `stream` with a reset (RST) instead of an orderly close.
fn reset(stream: TcpStream, counters: &Counters) {
    counters.resets.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_zero_linger();
    drop(stream);
}
