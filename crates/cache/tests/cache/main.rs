//! The read-through cache on both backends, over a real SQLite store.

mod helpers;
mod read_through;
