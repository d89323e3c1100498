//! The store's behaviour, checked identically on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod broadcast;
mod dead_letters;
mod helpers;
mod inbox;
mod jobs;
mod leases;
mod lifecycle;
mod outcomes;
mod payments;
mod pool;
mod scratch;
mod users;
