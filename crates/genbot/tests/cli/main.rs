//! The real `genbot` binary, run as an operator would.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod bench;
mod config_check;
mod crash;
mod serve;
