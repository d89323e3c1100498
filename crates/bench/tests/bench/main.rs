//! The suite's measurements on real stores, and its promise to leave real users alone.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod safety;
mod storage;
