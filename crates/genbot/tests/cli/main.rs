//! The real `genbot` binary, run as an operator would.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod bad_input;
mod bench;
mod blackbox;
mod broadcast;
mod config_check;
mod crash;
mod payments;
mod poison;
mod process;
mod replicas;
mod serve;
mod webhooks;
mod wire;

/// A loopback port free right now, for a `genbot serve --listen` started next.
pub(crate) fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}
