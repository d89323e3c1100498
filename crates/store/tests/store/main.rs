//! The store's behaviour, checked identically on SQLite and PostgreSQL.

mod helpers;
mod jobs;
mod users;
