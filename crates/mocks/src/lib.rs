//! Test servers that speak the real protocols, so genbot's code never knows it talks to one.
//!
//! - [`replicate`]: Replicate's predictions API (`/v1/predictions`, `/v1/models/…/predictions`,
//!   polling, cancel) with a latency model, a failure rate, an optional server-side rate limit
//!   answering 429 like Replicate, scripted faults for tests, and introspection (creations over
//!   time, maximum running at once, outcomes), and its webhooks, signed and retried;
//! - [`telegram`]: the Bot API as a bot sees it, with simulated users;
//! - [`fault_proxy`]: a TCP proxy that refuses, blackholes, delays or resets the connections to
//!   a Redis or PostgreSQL on demand, to simulate outages without touching the server.
//!
//! Mocks depend on nothing of genbot's: they speak HTTP + JSON, as the real services do. They
//! are built to carry the readiness suite's load on 2 cores without becoming its bottleneck:
//! no background task per prediction, state computed from timestamps when asked.

mod clock;
pub mod fault_proxy;
mod png;
pub mod replicate;
mod server;
pub mod telegram;
