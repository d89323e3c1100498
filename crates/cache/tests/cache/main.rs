//! The read-through cache on both backends, over a real SQLite store.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod helpers;
mod read_through;
