//! `replica_failover`: two replicas on one PostgreSQL (and Redis when there is one), one of
//! them killed under load and not restarted. The other must take its running jobs over when
//! their leases expire and its unhandled updates with them; nothing lost or run twice.

use std::time::{Duration, Instant};

use genbot_mocks::replicate::ReplicateMockConfig;
use genbot_store::JobStatus;

use super::{describe, grade, on_stage, settle_limit, timeline, until};
use crate::context::Context;
use crate::faults::audit::{self, Tally};
use crate::faults::load::Load;
use crate::faults::stage::{Stage, StageSpec, LEASE_SECONDS};
use crate::faults::FaultError;
use crate::outcome::{TestId, TestOutcome};

const USERS: u32 = 40;
const PROMPTS_PER_S: f64 = 8.0;
const KILLED: &str = "bench-replica-a";
const SURVIVOR: &str = "bench-replica-b";

/// Lease, one heartbeat and two seconds of slack: a take-over within this is EXCELLENT.
fn takeover_bound() -> Duration {
    Duration::from_secs(LEASE_SECONDS + 1 + 2)
}

struct Measured {
    tally: Tally,
    kill_at_s: f64,
    running_at_kill: usize,
    takeover: Option<Duration>,
    settled: Option<Duration>,
    load: Load,
}

pub async fn run(ctx: &Context) -> TestOutcome {
    let id = TestId::ReplicaFailover;
    if !Stage::has_postgres(ctx) {
        return TestOutcome::not_applicable(
            id,
            ctx.lang,
            ctx.text(
                "replicas share a PostgreSQL database; embedded SQLite runs one replica (give --database-url postgres://…)",
                "реплики делят базу PostgreSQL; встроенная SQLite работает с одной репликой (укажите --database-url postgres://…)",
            ),
        );
    }
    let spec = StageSpec {
        redis: true,
        replicate: ReplicateMockConfig {
            median_latency: Duration::from_millis(1500),
            create_response_delay: Duration::from_millis(100),
            ..ReplicateMockConfig::default()
        },
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

/// Running jobs the killed replica still owns.
async fn owned_by_killed(stage: &Stage) -> usize {
    stage
        .store
        .jobs_with_status(JobStatus::Running, 100_000)
        .await
        .map_or(usize::MAX, |jobs| {
            jobs.iter()
                .filter(|j| j.owner.as_deref() == Some(KILLED))
                .count()
        })
}

async fn measure(ctx: &Context, stage: &Stage) -> Result<Measured, FaultError> {
    let (kill_at_s, load_s) = if ctx.quick { (2.5, 6.0) } else { (5.0, 20.0) };
    let mut a = stage.replica(KILLED)?;
    let mut b = stage.replica(SURVIVOR)?;
    a.start().await?;
    b.start().await?;
    let users = Load::users(&stage.telegram, USERS);
    let mut load = Load::start(&stage.telegram, users, PROMPTS_PER_S);
    until(&load, kill_at_s).await;
    a.kill().await;
    let killed = Instant::now();
    let running_at_kill = owned_by_killed(stage).await;
    let takeover = super::time_until(Duration::from_secs(30), || async {
        owned_by_killed(stage).await == 0
    })
    .await
    .map(|_| killed.elapsed());
    until(&load, load_s).await;
    load.stop_prompting().await;
    let settled = audit::settle(stage, &load, settle_limit(ctx)).await;
    load.finish().await;
    b.kill().await;
    Ok(Measured {
        tally: audit::count(stage, &load, &[]).await?,
        kill_at_s,
        running_at_kill,
        takeover,
        settled,
        load,
    })
}

fn describe_run(ctx: &Context, m: &Measured) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::ReplicaFailover, ctx.lang);
    let in_bound = m.settled.is_some() && m.takeover.is_some_and(|t| t <= takeover_bound());
    out.grade = grade(&m.tally, &[], in_bound);
    out.metric("running_on_killed_replica", m.running_at_kill as f64);
    if let Some(takeover) = m.takeover {
        out.metric("takeover_s", takeover.as_secs_f64());
    }
    if let Some(settled) = m.settled {
        out.metric("settle_after_load_s", settled.as_secs_f64());
    }
    describe(&mut out, ctx, &m.tally, &[]);
    out.fact(ctx.text(
        format!(
            "two replicas, {USERS} users, {PROMPTS_PER_S} prompts/s; replica A SIGKILLed at {:.1} s with {} running jobs and not restarted; B took them over in {} (bound: lease {LEASE_SECONDS} s + heartbeat 1 s + 2 s; in production JOB_LEASE_SECONDS is {} s)",
            m.kill_at_s,
            m.running_at_kill,
            super::seconds(m.takeover, ctx),
            ctx.settings.job_lease.as_secs()
        ),
        format!(
            "две реплики, {USERS} пользователей, {PROMPTS_PER_S} запросов/с; реплика A получила SIGKILL на {:.1} с с {} выполняемыми заданиями и не перезапускалась; B забрала их за {} (граница: аренда {LEASE_SECONDS} с + пульс 1 с + 2 с; в продакшене JOB_LEASE_SECONDS = {} с)",
            m.kill_at_s,
            m.running_at_kill,
            super::seconds(m.takeover, ctx),
            ctx.settings.job_lease.as_secs()
        ),
    ));
    let window = (
        m.kill_at_s,
        m.kill_at_s + m.takeover.map_or(1.0, |t| t.as_secs_f64()),
    );
    for series in timeline(ctx, &m.load, vec![window]) {
        out.series(series);
    }
    // With no running job on the killed replica there was nothing to take over: a fast
    // "take-over" of nothing proves nothing (nor does a count the store could not give).
    if m.running_at_kill == 0 || m.running_at_kill == usize::MAX {
        let reason = ctx.text(
            "did not test: the killed replica owned no running job at the kill (or they could not be counted), so no take-over was needed",
            "не проверено: у убитой реплики не было выполняемых заданий в момент SIGKILL (или их не удалось сосчитать), забирать было нечего",
        );
        out.did_not_measure(reason);
    }
    out
}
