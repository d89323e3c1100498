//! What every check needs: the settings under test, thresholds, language, run length, target.

use std::ops::Range;
use std::time::Duration;

use genbot_config::Settings;

use crate::grade::{Lang, Thresholds};
use crate::target::Target;

/// Shared by all checks of one run.
#[derive(Debug)]
pub struct Context {
    /// The bot's settings (limits, TTLs, rates) being judged.
    pub settings: Settings,
    pub thresholds: Thresholds,
    pub lang: Lang,
    /// Shorter runs for CI and a first look.
    pub quick: bool,
    /// Simulated users for the concurrent-users test.
    pub users: u32,
    /// Length of each timed measurement.
    pub duration: Duration,
    pub target: Target,
    /// Test users registered in the target.
    pub seeded: Range<i64>,
    /// Also send a few generations to the Replicate API the settings name, with their token
    /// (`--live-replicate`; costs real predictions). Load always goes to the in-process mock.
    pub live_replicate: bool,
    /// The operation simulation's predictions report their end by signed webhook to the bot's
    /// receiver instead of being polled (`--replicate-webhooks`, or `REPLICATE_WEBHOOK_URL` set).
    pub replicate_webhooks: bool,
    /// `--database-url`: the fault tests make a scratch database on this server (PostgreSQL);
    /// `None` on the embedded default.
    pub database_url: Option<genbot_config::DatabaseUrl>,
    /// The `genbot` executable the fault tests start as `genbot serve` (the running binary);
    /// `None` where there is none (then those tests say they were not run).
    pub bot_program: Option<std::path::PathBuf>,
    /// `--bot-cmd` / `--attach`: the bot under test is this black box, measured from outside;
    /// `None` for genbot's own parts in-process.
    pub blackbox: Option<crate::blackbox::BlackBox>,
    /// `--seed`: the `bad_input` test's corpus (random when not given; printed in the report).
    pub seed: u64,
}

impl Context {
    /// Concurrent tasks for closed-loop storage measurements.
    pub fn workers(&self) -> usize {
        64
    }

    /// English or Russian.
    pub fn text(&self, en: impl Into<String>, ru: impl Into<String>) -> String {
        match self.lang {
            Lang::En => en.into(),
            Lang::Ru => ru.into(),
        }
    }
}
