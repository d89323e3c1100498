//! The generation limits a black-box bot claims, checked where they take effect: at the
//! Replicate mock. Semaphores: most predictions running at once; rate limiting: creations per
//! minute; model configuration: which models the bot asked for.

use std::time::Duration;

use genbot_mocks::replicate::ReplicateMockConfig;

use super::{claimed, generation_of, prompt_and_collect};
use crate::blackbox::BlackBox;
use crate::context::Context;
use crate::grade::Grade;
use crate::outcome::{TestId, TestOutcome};

/// Most prompts one user sends at once (a bot's flood guard may rightly drop more).
const MAX_PER_USER_BURST: u32 = 8;

/// The generation message and the claimed limit `name` a test needs, or the outcome that says
/// which one the scenario lacks.
fn needs_generation_and_claim(
    test: TestId,
    ctx: &Context,
    bot: &BlackBox,
    name: &str,
    value: Option<u32>,
) -> Result<(crate::blackbox::scenario::Generation, u32), Box<TestOutcome>> {
    Ok((
        generation_of(test, ctx, bot)?,
        claimed(test, ctx, name, value)?,
    ))
}

pub(super) async fn semaphores(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let test = TestId::Semaphores;
    let limits = &bot.scenario.limits;
    let (generation, limit) = match needs_generation_and_claim(
        test,
        ctx,
        bot,
        "max_concurrent_generations",
        limits.max_concurrent_generations,
    ) {
        Ok(needed) => needed,
        Err(out) => return *out,
    };
    let per_user = limits.max_concurrent_generations_per_user;
    let mut out = TestOutcome::new(test, ctx.lang);
    // The bot's own rate limit cannot be lifted from outside: each prediction must last long
    // enough that the rate lets the limit fill (rate × latency ≥ 1.5 × limit).
    let rate_per_s = limits
        .replicate_rate_limit
        .map_or(f64::INFINITY, |r| f64::from(r) / 60.0);
    let latency = Duration::from_millis(if ctx.quick { 300 } else { 1000 }).max(
        Duration::from_secs_f64((1.5 * f64::from(limit) / rate_per_s).min(30.0)),
    );
    bot.replicate.reconfigure(ReplicateMockConfig {
        median_latency: latency,
        ..ReplicateMockConfig::default()
    });
    let each = per_user.unwrap_or(1).clamp(1, MAX_PER_USER_BURST);
    let burst = limit.saturating_mul(2).min(600);
    let users = bot.users(burst.div_ceil(each), Some("en"));
    let mark = bot.replicate.mark();
    let patience = generation.within
        + latency
        + Duration::from_secs_f64((f64::from(burst) / rate_per_s).min(600.0));
    let delivered = prompt_and_collect(&users, &generation, each, 0, patience).await;
    let stats = bot.replicate.stats_since(mark);
    let observed = stats.max_running;
    out.metric("limit", f64::from(limit))
        .metric("burst", delivered.prompts as f64)
        .metric("max_in_flight", observed as f64)
        .metric("completed", delivered.photos as f64)
        .metric("missing_photos", delivered.missing() as f64)
        .metric("seconds", delivered.elapsed.as_secs_f64());
    out.fact(ctx.text(
        format!("burst of {} prompts from {} users ({each} each), mock latency {latency:?}: at most {observed} predictions ran at once at the Replicate mock (claimed limit {limit}); {} photos in {:.1} s", delivered.prompts, users.len(), delivered.photos, delivered.elapsed.as_secs_f64()),
        format!("всплеск из {} запросов от {} пользователей (по {each}), задержка мока {latency:?}: одновременно не более {observed} предсказаний на моке Replicate (заявленный лимит {limit}); {} фото за {:.1} с", delivered.prompts, users.len(), delivered.photos, delivered.elapsed.as_secs_f64()),
    ));
    let mut solo_violated = false;
    if let Some(per_user) = per_user {
        bot.replicate.reconfigure(ReplicateMockConfig {
            median_latency: Duration::from_millis(300),
            ..ReplicateMockConfig::default()
        });
        let solo = bot.users(1, Some("en"));
        let jobs = per_user.saturating_mul(3).clamp(1, MAX_PER_USER_BURST);
        let mark = bot.replicate.mark();
        let delivered = prompt_and_collect(&solo, &generation, jobs, 0, generation.within).await;
        let solo_max = bot.replicate.stats_since(mark).max_running;
        solo_violated = solo_max > u64::from(per_user);
        out.metric("per_user_limit", f64::from(per_user))
            .metric("per_user_max_in_flight", solo_max as f64);
        out.fact(ctx.text(
            format!("one user sending {jobs} at once: at most {solo_max} ran at once (claimed per-user limit {per_user}); {} photos", delivered.photos),
            format!("один пользователь отправил {jobs} сразу: одновременно не более {solo_max} (заявленный лимит на пользователя {per_user}); фото: {}", delivered.photos),
        ));
    }
    let violated = observed > u64::from(limit) || solo_violated;
    out.grade = if violated {
        Grade::NeedsOptimization
    } else if delivered.missing() > 0 {
        Grade::Good
    } else {
        ctx.thresholds.generation_limit(limit)
    };
    if violated {
        out.recommend(ctx.text(
            format!("The bot ran {observed} generations at once while claiming a limit of {limit} (per user: {}): guard Replicate calls with a semaphore of that size.", per_user.map_or("none".into(), |p| p.to_string())),
            format!("Бот запускал {observed} генераций одновременно при заявленном лимите {limit} (на пользователя: {}): ограничьте вызовы Replicate семафором этого размера.", per_user.map_or("нет".into(), |p| p.to_string())),
        ));
    }
    if let Some(missing) = delivered.describe_missing(ctx.lang == crate::grade::Lang::En) {
        out.recommend(missing);
    }
    out
}

pub(super) async fn rate_limiting(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let test = TestId::RateLimiting;
    let limits = &bot.scenario.limits;
    let (generation, per_min) = match needs_generation_and_claim(
        test,
        ctx,
        bot,
        "replicate_rate_limit",
        limits.replicate_rate_limit,
    ) {
        Ok(needed) => needed,
        Err(out) => return *out,
    };
    let mut out = TestOutcome::new(test, ctx.lang);
    bot.replicate.reconfigure(ReplicateMockConfig {
        median_latency: Duration::from_millis(20),
        ..ReplicateMockConfig::default()
    });
    let span = Duration::from_secs(if ctx.quick { 3 } else { 15 });
    let jobs = ((f64::from(per_min) / 60.0 * span.as_secs_f64()).floor() as u32 + 1).clamp(5, 600);
    let each = limits
        .max_concurrent_generations_per_user
        .unwrap_or(1)
        .clamp(1, MAX_PER_USER_BURST);
    let users = bot.users(jobs.div_ceil(each), Some("en"));
    let patience =
        Duration::from_secs_f64(60.0 / f64::from(per_min) * f64::from(jobs)) + generation.within;
    let mark = bot.replicate.mark();
    let delivered = prompt_and_collect(&users, &generation, each, 0, patience).await;
    let stats = bot.replicate.stats_since(mark);
    let Some(measured) = stats.creation_rate_per_min() else {
        out.fact(ctx.text(
            format!("could not run: fewer than two predictions reached the Replicate mock for {} prompts", delivered.prompts),
            format!("не запущен: до мока Replicate дошло меньше двух предсказаний на {} запросов", delivered.prompts),
        ));
        out.grade = Grade::NeedsOptimization;
        return out;
    };
    let error = (measured - f64::from(per_min)) / f64::from(per_min);
    out.metric("configured_per_min", f64::from(per_min))
        .metric("measured_per_min", measured)
        .metric("error_percent", error * 100.0)
        .metric("creations", stats.created as f64)
        .metric("missing_photos", delivered.missing() as f64);
    out.fact(ctx.text(
        format!("{} prompts from {} users at once, claimed limit {per_min}/min: the Replicate mock saw {} creations at {measured:.1}/min ({:+.1} %)", delivered.prompts, users.len(), stats.created, error * 100.0),
        format!("{} запросов от {} пользователей сразу, заявленный лимит {per_min}/мин: мок Replicate получил {} созданий, {measured:.1}/мин ({:+.1} %)", delivered.prompts, users.len(), stats.created, error * 100.0),
    ));
    // Above the claim risks Replicate's 429s; well below it wastes the budget.
    out.grade = match error {
        e if e > 0.05 => Grade::NeedsOptimization,
        e if e.abs() <= 0.05 => Grade::Excellent,
        e if e >= -0.25 => Grade::Good,
        _ => Grade::NeedsOptimization,
    };
    if error > 0.05 {
        out.recommend(ctx.text(
            format!("The bot created {measured:.0} predictions a minute while claiming {per_min}: Replicate will answer 429; pace creations with a rate limiter."),
            format!("Бот создавал {measured:.0} предсказаний в минуту при заявленных {per_min}: Replicate ответит 429; ограничьте частоту созданий."),
        ));
    } else if out.grade != Grade::Excellent {
        out.recommend(ctx.text(
            format!("The bot reached only {measured:.0} of the {per_min} creations a minute it claims: something before Replicate (a semaphore, a lock, the CPU) limits it first."),
            format!("Бот достиг лишь {measured:.0} из заявленных {per_min} созданий в минуту: его раньше ограничивает что-то другое (семафор, блокировка, CPU)."),
        ));
    }
    if let Some(missing) = delivered.describe_missing(ctx.lang == crate::grade::Lang::En) {
        out.recommend(missing);
    }
    out
}

pub(super) async fn model_config(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let test = TestId::ModelConfig;
    let mut out = TestOutcome::new(test, ctx.lang);
    let mut asked = bot.replicate.stats().models;
    if asked.is_empty() {
        if let Ok(generation) = generation_of(test, ctx, bot) {
            let user = bot.users(1, Some("en"));
            prompt_and_collect(&user, &generation, 1, 0, generation.within).await;
            asked = bot.replicate.stats().models;
        }
    }
    if asked.is_empty() {
        out.fact(ctx.text(
            "the bot asked the Replicate mock for no model at all during the run",
            "за весь прогон бот не обратился к моку Replicate ни за одной моделью",
        ));
        out.grade = Grade::NeedsOptimization;
        out.recommend(ctx.text(
            format!("No prediction reached the Replicate mock: does the bot read {} for Replicate's address?", bot.scenario.env.replicate_api_url),
            format!("Ни одно предсказание не дошло до мока Replicate: читает ли бот адрес Replicate из {}?", bot.scenario.env.replicate_api_url),
        ));
        return out;
    }
    let listed = asked
        .iter()
        .map(|(model, n)| format!("{model} ({n})"))
        .collect::<Vec<_>>()
        .join(", ");
    out.metric("models_asked", asked.len() as f64);
    out.fact(ctx.text(
        format!("models the bot asked the Replicate mock for: {listed}"),
        format!("модели, запрошенные у мока Replicate: {listed}"),
    ));
    match &bot.scenario.limits.models {
        Some(models) => {
            let unclaimed: Vec<&String> = asked.keys().filter(|m| !models.contains(m)).collect();
            out.metric("problems", unclaimed.len() as f64);
            if unclaimed.is_empty() {
                out.grade = Grade::Excellent;
            } else {
                out.grade = Grade::NeedsOptimization;
                out.recommend(ctx.text(
                    format!(
                            "The bot asked for models it does not claim ({}); claimed: {}.",
                            unclaimed
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            models.join(", ")
                        ),
                    format!(
                            "Бот запрашивал незаявленные модели ({}); заявлены: {}.",
                            unclaimed
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            models.join(", ")
                        ),
                ));
            }
        }
        None => {
            out.grade = Grade::Good;
            out.recommend(ctx.text(
                "The scenario claims no models: list them under [limits] models = [\"owner/name\"] to have the ones the bot asks for checked.",
                "Сценарий не заявляет моделей: перечислите их в [limits] models = [\"владелец/имя\"], чтобы проверить запрашиваемые.",
            ));
        }
    }
    out
}
