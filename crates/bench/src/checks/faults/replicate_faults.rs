//! `replicate_faults`: Replicate misbehaving under load — a burst of 429s without Retry-After,
//! 30 % of creations answered 5xx, predictions stuck past `GENERATION_TIMEOUT_SECONDS`,
//! answers lost after the prediction was created. Every job must end, every charge be exact,
//! the creation rate be kept and no prediction be created twice.

use std::time::Duration;

use genbot_mocks::replicate::{LostResponse, ReplicateMockConfig, ScriptedFault};

use super::{describe, grade, on_stage, settle_limit, timeline, until};
use crate::context::Context;
use crate::faults::audit::{self, Tally};
use crate::faults::load::Load;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::outcome::{TestId, TestOutcome};

const USERS: u32 = 30;
const PROMPTS_PER_S: f64 = 4.0;
/// Creations per minute the replicas are allowed (`REPLICATE_RATE_LIMIT` on the stage).
const RATE_PER_MIN: u32 = 300;
/// `GENERATION_TIMEOUT_SECONDS` on the stage: stuck predictions end this soon.
const TIMEOUT_S: u64 = 3;
const THROTTLE_BURST: usize = 5;

struct Measured {
    tally: Tally,
    /// Most creations the mock saw in any one second.
    peak_per_s: u64,
    scripted: Script,
    settled: Option<Duration>,
    load: Load,
    load_s: f64,
}

/// What was scripted, for the report.
#[derive(Debug, Default, Clone, Copy)]
struct Script {
    throttled: usize,
    errors: usize,
    stalled: usize,
    lost_answers: usize,
}

pub async fn run(ctx: &Context) -> TestOutcome {
    let id = TestId::ReplicateFaults;
    let spec = StageSpec {
        redis: true,
        replicate: ReplicateMockConfig {
            median_latency: Duration::from_millis(400),
            ..ReplicateMockConfig::default()
        },
        env: vec![
            ("GENERATION_TIMEOUT_SECONDS", TIMEOUT_S.to_string()),
            ("REPLICATE_RATE_LIMIT", RATE_PER_MIN.to_string()),
        ],
        ..StageSpec::default()
    };
    on_stage(
        id,
        ctx,
        spec,
        |ctx, stage| Box::pin(measure(ctx, stage)),
        describe_run,
    )
    .await
}

/// The answers the next creations get: a 429 burst, then of every ten creations three 5xx,
/// one created with its answer lost (502) and, twice, one stuck.
fn script(creations: usize) -> (Vec<ScriptedFault>, Script) {
    let mut faults = vec![
        ScriptedFault::Throttle {
            retry_after_secs: None
        };
        THROTTLE_BURST
    ];
    let mut counts = Script {
        throttled: THROTTLE_BURST,
        ..Script::default()
    };
    for n in 0..creations {
        let fault = match n % 10 {
            0 | 6 => Some(ScriptedFault::Status(500)),
            3 => Some(ScriptedFault::Status(503)),
            4 => Some(ScriptedFault::LoseResponse(LostResponse::Status(502))),
            8 if counts.stalled < 2 => Some(ScriptedFault::Stall),
            _ => None,
        };
        match &fault {
            Some(ScriptedFault::Status(_)) => counts.errors += 1,
            Some(ScriptedFault::LoseResponse(_)) => counts.lost_answers += 1,
            Some(ScriptedFault::Stall) => counts.stalled += 1,
            _ => {}
        }
        faults.push(fault.unwrap_or(ScriptedFault::Pass));
    }
    (faults, counts)
}

async fn measure(ctx: &Context, stage: &Stage) -> Result<Measured, FaultError> {
    let load_s = if ctx.quick { 6.0 } else { 20.0 };
    let (faults, scripted) = script((load_s * PROMPTS_PER_S) as usize);
    stage.replicate.script(faults);
    let mut bot = stage.replica("bench-replicate")?;
    bot.start().await?;
    let users = Load::users(&stage.telegram, USERS);
    let mut load = Load::start(&stage.telegram, users, PROMPTS_PER_S);
    until(&load, load_s).await;
    load.stop_prompting().await;
    let settled = audit::settle(stage, &load, settle_limit(ctx)).await;
    load.finish().await;
    bot.kill().await;
    let stats = stage.replicate.stats();
    Ok(Measured {
        tally: audit::count(stage, &load, &[]).await?,
        peak_per_s: peak_per_second(&stats.creation_times),
        scripted,
        settled,
        load,
        load_s,
    })
}

/// Most creations within any one-second window.
fn peak_per_second(times: &[f64]) -> u64 {
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1.0 {
            start += 1;
        }
        peak = peak.max(end + 1 - start);
    }
    peak as u64
}

fn describe_run(ctx: &Context, m: &Measured) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::ReplicateFaults, ctx.lang);
    // A GCRA limiter with a burst of one lets at most rate + 1 through in any second.
    let allowed_per_s = u64::from(RATE_PER_MIN / 60) + 1;
    let mut extra = Vec::new();
    if m.peak_per_s > allowed_per_s {
        extra.push(format!(
            "rate not kept: {} creations in one second, REPLICATE_RATE_LIMIT={RATE_PER_MIN}/min allows {allowed_per_s}",
            m.peak_per_s
        ));
    }
    out.grade = grade(&m.tally, &extra, m.settled.is_some());
    out.metric("creations_peak_per_s", m.peak_per_s as f64)
        .metric("creations_allowed_per_s", allowed_per_s as f64);
    if let Some(settled) = m.settled {
        out.metric("settle_after_load_s", settled.as_secs_f64());
    }
    describe(&mut out, ctx, &m.tally, &extra);
    let s = m.scripted;
    out.fact(ctx.text(
        format!(
            "{USERS} users, {PROMPTS_PER_S} prompts/s for {:.0} s; Replicate answered: {} × 429 without Retry-After in a burst, {} × 5xx (30 %), {} creations with the answer lost (502 after the prediction existed), {} predictions stuck past GENERATION_TIMEOUT_SECONDS={TIMEOUT_S}",
            m.load_s, s.throttled, s.errors, s.lost_answers, s.stalled
        ),
        format!(
            "{USERS} пользователей, {PROMPTS_PER_S} запросов/с в течение {:.0} с; Replicate ответил: {} × 429 без Retry-After подряд, {} × 5xx (30 %), {} созданий с потерянным ответом (502 при уже созданном прогнозе), {} прогнозов зависли дольше GENERATION_TIMEOUT_SECONDS={TIMEOUT_S}",
            m.load_s, s.throttled, s.errors, s.lost_answers, s.stalled
        ),
    ));
    out.fact(ctx.text(
        "bound: every job final (failed ones refunded), balances equal to their ledger, no prediction created twice, creation rate kept",
        "граница: каждое задание завершено (неудачные возвращены), балансы равны журналу, ни один прогноз не создан дважды, частота созданий соблюдена",
    ));
    for series in timeline(ctx, &m.load, vec![(0.0, m.load_s)]) {
        out.series(series);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_counts_the_busiest_second() {
        assert_eq!(peak_per_second(&[]), 0);
        assert_eq!(peak_per_second(&[0.0, 0.5, 0.99, 1.5, 3.0]), 3);
        assert_eq!(peak_per_second(&[0.0, 1.0, 2.0]), 1);
    }

    #[test]
    fn the_script_is_thirty_percent_errors_after_the_burst() {
        let (faults, counts) = script(100);
        assert_eq!(faults.len(), 105);
        assert_eq!(
            (counts.errors, counts.lost_answers, counts.stalled),
            (30, 10, 2)
        );
    }
}
