//! The queue of a black-box bot, seen from outside: a burst from one user must not hold back
//! another's single prompt (fairness, from the photos' arrival order), one user's prompts are
//! started in the order sent (order, from the prompts reaching the Replicate mock), and prompts
//! in flight when the bot is restarted each get exactly one photo afterwards.

use std::time::{Duration, Instant};

use genbot_mocks::replicate::ReplicateMockConfig;
use genbot_mocks::telegram::Sent;

use super::{collect, generation_of, photos};
use crate::blackbox::BlackBox;
use crate::context::Context;
use crate::grade::{Grade, Lang};
use crate::outcome::{TestId, TestOutcome};

/// Prompts user A sends at once (below a flood guard's burst).
const A_PROMPTS: u32 = 8;
/// How long each of the burst's generations takes at the Replicate mock. Long enough that a
/// job started together with an earlier one, whose create request the host's scheduler held
/// back a little, still reaches Replicate before the next round starts.
const BURST_GENERATION: Duration = Duration::from_millis(300);
/// Numbers B's and C's prompts carry, far from A's.
const B_NUMBER: u64 = 900;
const C_NUMBER: u64 = 901;

pub(super) async fn run(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let test = TestId::Queue;
    let generation = match generation_of(test, ctx, bot) {
        Ok(g) => g,
        Err(out) => return *out,
    };
    let mut out = TestOutcome::new(test, ctx.lang);
    let en = ctx.lang == Lang::En;
    bot.replicate.reconfigure(ReplicateMockConfig {
        median_latency: BURST_GENERATION,
        ..ReplicateMockConfig::default()
    });

    // Burst: A sends eight, then B and C one each.
    let users = bot.users(3, Some("en"));
    let (a, b, c) = (&users[0], &users[1], &users[2]);
    let before: Vec<usize> = users.iter().map(|u| photos(&u.transcript())).collect();
    let sent_before = bot.telegram.sent_in_order().len();
    let mark = bot.replicate.mark();
    let started = Instant::now();
    for n in 0..u64::from(A_PROMPTS) {
        a.send_text(&generation.prompt(a.id(), n));
    }
    b.send_text(&generation.prompt(b.id(), B_NUMBER));
    c.send_text(&generation.prompt(c.id(), C_NUMBER));
    let a_delivered = collect(
        std::slice::from_ref(a),
        &before[..1],
        A_PROMPTS as usize,
        started,
        generation.within,
    )
    .await;
    let bc_delivered = collect(&users[1..], &before[1..], 1, started, generation.within).await;
    let arrivals: Vec<i64> = bot.telegram.sent_in_order()[sent_before..]
        .iter()
        .filter(|sent| sent.photo)
        .map(|sent: &Sent| sent.chat)
        .collect();
    let b_at = arrivals.iter().position(|chat| *chat == b.id());
    let fair = b_at.is_some_and(|at| at <= 3);
    let a_prompts: Vec<String> = (0..u64::from(A_PROMPTS))
        .map(|n| generation.prompt(a.id(), n))
        .collect();
    let stats = bot.replicate.stats_since(mark);
    // Both lists are in creation order, so each prompt lines up with its creation time.
    let seen: Vec<(String, f64)> = stats
        .prompts
        .into_iter()
        .zip(stats.creation_times)
        .filter(|(p, _)| a_prompts.contains(p))
        .collect();
    let distinct = a_prompts
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    // Order is only observable when the prompts differ and reach Replicate as sent. Jobs
    // started together may swap: prompt j reaching Replicate before prompt i < j is out of
    // order unless j - i < the per-user limit (both may run at once), or i arrived within half
    // a generation after j (both were already on their way: a queue that held i back would
    // have released it only when a generation ended).
    let together = bot
        .scenario
        .limits
        .max_concurrent_generations_per_user
        .unwrap_or(1)
        .max(1) as usize;
    let order = (distinct == a_prompts.len() && seen.len() == a_prompts.len())
        .then(|| kept_order(&seen, &a_prompts, together, BURST_GENERATION / 2));
    out.metric("b_started_at", b_at.map_or(-1.0, |at| at as f64))
        .metric("a_photos", a_delivered.photos as f64)
        .metric("bc_photos", bc_delivered.photos as f64);
    if let Some(kept) = order {
        out.metric("a_order_kept", if kept { 1.0 } else { 0.0 });
    }
    out.fact(ctx.text(
        format!(
            "burst: user A sent {A_PROMPTS} prompts, then B and C one each: B's photo arrived {}{}; A's prompts {}; photos: A {}/{A_PROMPTS}, B and C {}/2",
            b_at.map_or("never".into(), |at| format!("#{} of the burst's photos", at + 1)),
            if fair { "" } else { " (unfair)" },
            match order { Some(true) => "reached Replicate in the order sent (jobs allowed to run together may swap)", Some(false) => "did NOT reach Replicate in the order sent", None => "could not be told apart at Replicate (use {n} in the generation text)" },
            a_delivered.photos,
            bc_delivered.photos,
        ),
        format!(
            "всплеск: A отправил {A_PROMPTS} запросов, затем B и C по одному: фото B пришло {}{}; запросы A {}; фото: A {}/{A_PROMPTS}, B и C {}/2",
            b_at.map_or("никогда".into(), |at| format!("{}-м среди фото всплеска", at + 1)),
            if fair { "" } else { " (нечестно)" },
            match order { Some(true) => "дошли до Replicate в порядке отправки", Some(false) => "дошли до Replicate НЕ в порядке отправки", None => "не различимы на Replicate (используйте {n} в тексте генерации)" },
            a_delivered.photos,
            bc_delivered.photos,
        ),
    ));

    // Restart with generations in flight: each prompt must get exactly one photo after it.
    let restart = restart_in_flight(ctx, bot, &generation).await;
    let (lost, twice) = match &restart {
        Ok((lost, twice, prompts, stopped)) => {
            out.metric("jobs_across_restart", *prompts as f64)
                .metric("lost_jobs", *lost as f64)
                .metric("finished_twice", *twice as f64);
            out.fact(ctx.text(
                format!("restart with {prompts} prompts in flight (the bot {}): {lost} got no photo, {twice} photos were sent twice", stopped.describe(true)),
                format!("перезапуск с {prompts} запросами в работе (бот {}): без фото {lost}, дважды {twice}", stopped.describe(false)),
            ));
            (*lost, *twice)
        }
        Err(reason) => {
            out.fact(ctx.text(
                format!("restart not measured: {reason}"),
                format!("перезапуск не измерен: {reason}"),
            ));
            (0, 0)
        }
    };
    out.fact(ctx.text(
        "QUEUE_MAX_LENGTH is not checked black-box: a refusal cannot be told from other answers from outside",
        "QUEUE_MAX_LENGTH не проверяется снаружи: отказ не отличить от других ответов",
    ));
    let delivered_all = a_delivered.missing() == 0 && bc_delivered.missing() == 0;
    out.grade = if lost > 0 || twice > 0 || !delivered_all {
        Grade::NeedsOptimization
    } else if fair && order != Some(false) && restart.is_ok() {
        Grade::Excellent
    } else {
        Grade::Good
    };
    if !fair {
        out.recommend(ctx.text(
            "One user's backlog delayed another user's single prompt: serve users round-robin, or limit each user's concurrent generations.",
            "Очередь одного пользователя задержала запрос другого: обслуживайте пользователей по кругу или ограничьте генерации на пользователя.",
        ));
    }
    for missing in [&a_delivered, &bc_delivered]
        .into_iter()
        .filter_map(|d| d.describe_missing(en))
    {
        out.recommend(missing);
    }
    if lost > 0 || twice > 0 {
        out.recommend(ctx.text(
            format!("{lost} prompts got no photo and {twice} photos were sent twice across a restart: keep the queue outside the process (a database) and resume running predictions by id."),
            format!("При перезапуске {lost} запросов остались без фото, {twice} фото отправлены дважды: храните очередь вне процесса (в базе) и возобновляйте предсказания по id."),
        ));
    }
    out
}

/// Three users send three prompts each to a slow Replicate; once they reach it, the bot is
/// restarted. Returns (prompts without a photo, photos sent twice, prompts, how it stopped).
async fn restart_in_flight(
    ctx: &Context,
    bot: &BlackBox,
    generation: &crate::blackbox::scenario::Generation,
) -> Result<(usize, usize, usize, crate::blackbox::Stopped), String> {
    if !bot.has_process() {
        return Err(ctx.text(
            "the bot was started by hand (--attach); give --bot-cmd to have it restarted",
            "бот запущен вручную (--attach); укажите --bot-cmd, чтобы его перезапускать",
        ));
    }
    bot.replicate.reconfigure(ReplicateMockConfig {
        median_latency: Duration::from_secs(2),
        ..ReplicateMockConfig::default()
    });
    let users = bot.users(3, Some("en"));
    let per_user = 3usize;
    let before: Vec<usize> = users.iter().map(|u| photos(&u.transcript())).collect();
    let mark = bot.replicate.mark();
    let started = Instant::now();
    for n in 0..per_user as u64 {
        for user in &users {
            user.send_text(&generation.prompt(user.id(), 100 + n));
        }
    }
    // Restart once the prompts reached Replicate (or the bot had ten seconds to get there).
    let deadline = Instant::now() + Duration::from_secs(10);
    while bot.replicate.stats_since(mark).created < (users.len() * per_user) as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = bot.restart().await.map_err(|e| e.to_string())?;
    bot.replicate.reconfigure(ReplicateMockConfig {
        median_latency: Duration::from_millis(40),
        ..ReplicateMockConfig::default()
    });
    let delivered = collect(&users, &before, per_user, started, generation.within).await;
    Ok((
        delivered.missing(),
        delivered.extra,
        delivered.prompts,
        stopped,
    ))
}

/// Whether `seen` (prompts in the order they reached Replicate) keeps `sent`'s order, allowing
/// prompts fewer than `together` apart to swap (they may start at the same moment).
fn kept_order(seen: &[(String, f64)], sent: &[String], together: usize, grace: Duration) -> bool {
    let arrivals: Vec<(usize, f64)> = seen
        .iter()
        .filter_map(|(p, at)| sent.iter().position(|s| s == p).map(|i| (i, *at)))
        .collect();
    arrivals.iter().enumerate().all(|(at, (j, j_at))| {
        arrivals[at + 1..]
            .iter()
            .all(|(i, i_at)| i > j || j - i < together || i_at - j_at < grace.as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::kept_order;

    /// Prompts `0..4` sent in order, seen at Replicate as `(prompt, second)`.
    fn check(order: &[(usize, f64)], together: usize) -> bool {
        let sent: Vec<String> = (0..4).map(|n| n.to_string()).collect();
        let seen: Vec<(String, f64)> = order.iter().map(|(n, at)| (n.to_string(), *at)).collect();
        kept_order(&seen, &sent, together, Duration::from_millis(150))
    }

    #[test]
    fn prompts_started_together_may_swap_but_not_further_apart() {
        let rounds = |order: [usize; 4]| -> Vec<(usize, f64)> {
            order
                .iter()
                .enumerate()
                .map(|(k, n)| (*n, k as f64))
                .collect()
        };
        assert!(check(&rounds([0, 1, 2, 3]), 1));
        assert!(!check(&rounds([1, 0, 2, 3]), 1));
        assert!(check(&rounds([1, 0, 3, 2]), 2));
        assert!(!check(&rounds([2, 0, 1, 3]), 2));
    }

    #[test]
    fn an_earlier_prompt_held_up_on_its_way_may_arrive_just_after_a_later_one() {
        // One at a time, but 1's create request reached Replicate 50 ms after 2's.
        assert!(check(&[(0, 0.0), (2, 0.30), (1, 0.35), (3, 0.6)], 1));
        // 1 arrived a whole generation after 2: the queue held it back.
        assert!(!check(&[(0, 0.0), (2, 0.30), (1, 0.60), (3, 0.9)], 1));
    }
}
