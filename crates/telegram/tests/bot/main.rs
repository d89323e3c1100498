//! The real dispatcher and delivery task against the Bot API and Replicate mocks over HTTP.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod admin;
mod flow;
mod groups;
mod helpers;
mod history;
mod img2img;
mod kinds;
mod load;
mod outage;
mod outbox;
mod payments;
mod recorded;
mod refusals;
mod resilience;
