//! The engine against the Replicate mock over real HTTP, on a real SQLite store.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod exactly_once;
mod helpers;
mod limits;
mod lookup;
mod outputs_and_webhooks;
mod queue;
mod replicate_faults;
mod shared_limiter;
mod webhook_retries;
