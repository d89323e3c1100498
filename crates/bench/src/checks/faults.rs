//! The fault tests: the bot as real `genbot serve` processes, broken on purpose — killed,
//! cut off from Redis or its database, fed Replicate's and Telegram's failures, one replica of
//! two lost — and graded on what survived.
//!
//! Each test measures (stage, load, fault, settle, count), then grades the same way:
//! NEEDS OPTIMIZATION when anything was lost, duplicated or mis-charged (named, with ids);
//! GOOD when nothing was but recovery took longer than its bound; EXCELLENT otherwise.

pub mod bad_input;
pub mod crash_restart;
pub mod database_outage;
pub mod redis_outage;
pub mod replica_failover;
pub mod replicate_faults;
pub mod telegram_faults;

use std::path::PathBuf;
use std::time::Duration;

use genbot_mocks::telegram::repeats::WIRE_GRACE;

use crate::context::Context;
use crate::faults::audit::Tally;
use crate::faults::load::Load;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::grade::Grade;
use crate::outcome::{Line, Scale, Series, TestId, TestOutcome};

/// Longest wait for the bot to finish every job and delivery after the load stops.
fn settle_limit(ctx: &Context) -> Duration {
    Duration::from_secs(if ctx.quick { 45 } else { 90 })
}

/// The `genbot` executable, or the outcome that says why the test did not run.
fn program(id: TestId, ctx: &Context) -> Result<PathBuf, Box<TestOutcome>> {
    ctx.bot_program.clone().ok_or_else(|| {
        Box::new(TestOutcome::not_applicable(
            id,
            ctx.lang,
            ctx.text(
                "needs the genbot binary to start as `genbot serve` (run it from `genbot bench`)",
                "нужен исполняемый файл genbot для запуска `genbot serve` (запускайте из `genbot bench`)",
            ),
        ))
    })
}

/// A fault test's measurement on its stage, boxed so [`on_stage`] can take any of them.
type Measure<M> = for<'a> fn(
    &'a Context,
    &'a Stage,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<M, FaultError>> + Send + 'a>,
>;

/// What every fault test does around its measurement: find the program, set the stage up,
/// measure, take the stage down (whatever the measurement did), then describe the run or say
/// why it could not run.
async fn on_stage<M>(
    id: TestId,
    ctx: &Context,
    spec: StageSpec,
    measure: Measure<M>,
    describe_run: fn(&Context, &M) -> TestOutcome,
) -> TestOutcome {
    let program = match program(id, ctx) {
        Ok(program) => program,
        Err(outcome) => return *outcome,
    };
    let stage = match Stage::open(ctx, program, spec).await {
        Ok(stage) => stage,
        Err(e) => return could_not_run(id, ctx, &e),
    };
    let measured = measure(ctx, &stage).await;
    let telegram = stage.telegram.stats();
    stage.close().await;
    match measured {
        Ok(measured) => {
            let mut out = describe_run(ctx, &measured);
            // What users of the real Bot API would have missed, as every test reports it.
            out.telegram(&telegram);
            out.cap_for_refusals(ctx.lang);
            out
        }
        Err(e) => could_not_run(id, ctx, &e),
    }
}

/// A test whose stage or bot could not be brought up: graded as failing, with the reason.
pub(crate) fn could_not_run(id: TestId, ctx: &Context, error: &FaultError) -> TestOutcome {
    let mut out = TestOutcome::new(id, ctx.lang);
    out.grade = Grade::NeedsOptimization;
    out.fact(ctx.text(
        format!("could not run: {error}"),
        format!("не удалось выполнить: {error}"),
    ));
    out
}

/// The grade every fault test gives: anything lost, duplicated or mis-charged fails;
/// otherwise recovery within its bound decides between EXCELLENT and GOOD.
fn grade(tally: &Tally, extra_problems: &[String], recovered_in_bound: bool) -> Grade {
    if !tally.is_clean() || !extra_problems.is_empty() {
        Grade::NeedsOptimization
    } else if recovered_in_bound {
        Grade::Excellent
    } else {
        Grade::Good
    }
}

/// The audit's figures and, when any, its findings.
fn describe(out: &mut TestOutcome, ctx: &Context, tally: &Tally, extra_problems: &[String]) {
    out.metric("prompts", tally.prompts as f64)
        .metric("jobs", tally.jobs as f64)
        .metric("jobs_succeeded", tally.succeeded as f64)
        .metric("jobs_failed_and_refunded", tally.failed as f64)
        .metric("jobs_lost", tally.lost.len() as f64)
        .metric("jobs_duplicated", tally.duplicated_jobs.len() as f64)
        .metric(
            "predictions_duplicated",
            tally.duplicated_predictions() as f64,
        )
        .metric("photos_missing", tally.photos_missing.len() as f64)
        .metric("photos_duplicated", tally.photos_duplicated.len() as f64)
        .metric(
            "photos_duplicated_at_wire",
            tally.photos_duplicated_at_wire.len() as f64,
        )
        .metric("photo_sends_at_kills", tally.photo_sends_at_kills as f64)
        .metric("balances_broken", tally.balances_broken.len() as f64);
    if let Some(sends) = tally.sends_per_job() {
        out.metric("sends_per_job", sends);
    }
    if !tally.photos_duplicated_at_wire.is_empty() {
        let shown: Vec<&str> = tally
            .photos_duplicated_at_wire
            .iter()
            .take(5)
            .map(String::as_str)
            .collect();
        let (n, sends, kills) = (
            tally.photos_duplicated_at_wire.len(),
            tally.photo_sends_at_kills,
            tally.kills,
        );
        let grace = WIRE_GRACE.as_secs();
        let shown = shown.join("; ");
        out.fact(ctx.text(
            format!(
                "{n} photo(s) sent again after a kill caught the first copy at the wire (its answer never reached the bot, or reached it within {grace} s of the kill; Telegram has no idempotency key, so this is allowed): {sends} photo sends were at the wire at the {kills} kill(s); {shown}"
            ),
            format!(
                "{n} фото отправлено повторно: SIGKILL застал первую копию в пути (ответ не дошёл до бота или дошёл менее чем за {grace} с до убийства; у Telegram нет ключа идемпотентности, это допустимо); в пути при {kills} убийствах было {sends} отправок фото; {shown}"
            ),
        ));
    }
    for problem in tally.problems().iter().chain(extra_problems) {
        out.recommend(ctx.text(format!("fix: {problem}"), format!("исправить: {problem}")));
    }
}

/// Answer latency (p50, p99) and answers per second over the run, the fault windows shaded.
fn timeline(ctx: &Context, load: &Load, windows: Vec<(f64, f64)>) -> Vec<Series> {
    let rows = load.per_second();
    let x_label = ctx.text(
        "seconds since the load started",
        "секунды от начала нагрузки",
    );
    vec![
        Series {
            id: "answer_latency_over_time".into(),
            title: ctx.text(
                "Answer latency, fault windows shaded",
                "Задержка ответа, окна сбоев затенены",
            ),
            x_label: x_label.clone(),
            y_label: ctx.text("ms", "мс"),
            x_scale: Scale::Linear,
            lines: vec![
                Line {
                    name: "p50".into(),
                    points: rows.iter().map(|r| (r.0, r.1)).collect(),
                },
                Line {
                    name: "p99".into(),
                    points: rows.iter().map(|r| (r.0, r.2)).collect(),
                },
            ],
            shaded: windows.clone(),
        },
        Series {
            id: "answers_over_time".into(),
            title: ctx.text(
                "Answers per second, fault windows shaded",
                "Ответов в секунду, окна сбоев затенены",
            ),
            x_label,
            y_label: ctx.text("answers/s", "ответов/с"),
            x_scale: Scale::Linear,
            lines: vec![Line {
                name: ctx.text("answers", "ответы"),
                points: rows.iter().map(|r| (r.0, r.3)).collect(),
            }],
            shaded: windows,
        },
    ]
}

/// Sleeps until `at_s` seconds after the load started.
async fn until(load: &Load, at_s: f64) {
    let left = at_s - load.now_s();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left)).await;
    }
}

/// Waits until `check` holds, polling every 50 ms; how long it took, `None` at `limit`.
async fn time_until<F, Fut>(limit: Duration, check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    time_until_every(limit, Duration::from_millis(50), check).await
}

/// As [`time_until`], polling every `every`.
async fn time_until_every<F, Fut>(
    limit: Duration,
    every: Duration,
    mut check: F,
) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// `Some(x)` as seconds with one decimal, `None` as "not reached".
fn seconds(value: Option<Duration>, ctx: &Context) -> String {
    value.map_or_else(
        || ctx.text("not reached", "не достигнуто"),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}
