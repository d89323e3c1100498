//! The real `genbot` binary, run as an operator would.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod bad_input;
mod bench;
mod blackbox;
mod broadcast;
mod busy_group;
mod config_check;
mod crash;
mod deploy;
mod doctor;
mod payments;
mod poison;
mod process;
mod prometheus;
mod replica_handoff;
mod replica_load;
mod replicas;
mod serve;
mod start_stop;
mod webhooks;
mod wire;

/// A loopback port for a `genbot serve --listen` that must be known before the start (a
/// webhook URL given as an argument) or stay the bot's across a restart or after its death.
/// Any other test lets the child bind port 0 and reads the port from its log
/// ([`process::Bot::port`]): no gap between a probe and the bind at all. (A port that must
/// refuse connections is [`closed_port`]'s: held, so there is no gap either.)
///
/// It comes from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768 up
/// by default), which `bind(…:0)` and outgoing connections draw from: a port taken from there
/// and freed again (between a probe and the child's bind, or between a kill and the restart)
/// can meanwhile become the local end of any connection on the machine. Below the range only
/// an explicit bind takes it, and each port is handed out once per test process, starting at
/// a pid-dependent offset so concurrent test processes rarely meet; one bound by someone else
/// right now is skipped.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = SPAN.min(ephemeral_low.saturating_sub(LOW)).max(1);
    let offset = std::process::id() * 97;
    for _ in 0..span {
        let port = LOW + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + span);
}

/// A loopback port that refuses connections for as long as the returned socket lives: bound,
/// so nothing else can take it meanwhile (no gap between a probe and the use, unlike a port
/// found free and let go), and never listening, so every connect is refused at once.
pub(crate) fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}
