//! One module per feature: what the bot does with one kind of request, from the router's
//! hand-off to its answer. The router hands each update to exactly one function here.
//!
//! A feature imports the shared layer ([`crate::shared`]), the texts, the parsers
//! ([`crate::command`]), [`crate::pacing`] to send, and the engine; never another feature
//! and never the router (the test `tests/layers.rs` holds them to it). What two features
//! both need goes down into [`crate::shared`].

pub(crate) mod admin;
pub(crate) mod balance;
pub(crate) mod broadcast;
pub(crate) mod groups;
pub(crate) mod help;
pub(crate) mod img2img;
pub(crate) mod membership;
pub(crate) mod models;
pub(crate) mod payments;
pub(crate) mod prompt;
pub(crate) mod rerun;
pub(crate) mod settings;
