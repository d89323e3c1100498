//! The mocks, spoken to over HTTP the way real clients do.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod fault_proxy;
mod replicate;
mod replies;
mod strict;
mod telegram;
mod teloxide_client;
