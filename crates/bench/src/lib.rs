//! genbot's readiness suite: the seed's thirteen tests run against the bot's real parts, each
//! graded, then a readiness score, a load forecast and reports.
//!
//! Built so far: grades and thresholds ([`grade`]), the readiness score ([`readiness`]),
//! bounded latency recording ([`histogram`]), the safe test target ([`target`]: test users only
//! from id 1,000,000 up, always removed) and the storage measurements ([`measure`]: DB read,
//! DB write, cache). The suite uses only the public APIs the bot uses.

pub mod blackbox;
mod bot_rig;
pub mod checks;
pub mod compare;
pub mod context;
pub mod cpu;
mod faults;
pub mod grade;
pub mod histogram;
pub mod measure;
pub mod measured;
pub mod monitor;
pub mod outcome;
pub mod readiness;
pub mod report;
mod rig;
pub mod rss;
pub mod suite;
pub mod target;
mod timeline;
