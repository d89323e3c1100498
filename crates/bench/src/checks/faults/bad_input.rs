//! `bad_input`: the bot attacked with what users and Telegram really send (the seeded corpus of
//! [`crate::faults::corpus`]) while normal users keep talking to it. Runs against genbot (a
//! `genbot serve` child on a stage of its own) and against any `--bot-cmd` bot.
//!
//! Graded: the process never died (a death names the input that preceded it, with its update
//! JSON); restarted on the same state afterwards it stays up (a crash loop is named as such);
//! normal users' p99 during the attack within max(2 × before, 1 s) and every normal step
//! answered; every hostile text or command in a private chat answered within 10 s, none
//! answered in another user's chat; forged payments credit nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::telegram::{Entry, SimUser, TelegramMock};
use parking_lot::Mutex;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{on_stage, program};
use crate::blackbox::scenario::{fill, Action};
use crate::blackbox::BlackBox;
use crate::context::Context;
use crate::faults::corpus::{self, Cast, Input};
use crate::faults::process::BotProcess;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::grade::Grade;
use crate::histogram::Latencies;
use crate::outcome::{TestId, TestOutcome};
use crate::target::TEST_IDS;

/// A hostile text must be answered within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Normal users.
const NORMAL_USERS: usize = 6;
/// Hostile users who send texts, in turn (one chat alone would measure Telegram's pacing of
/// one message a second per chat, not the bot): enough that each gets at most a chat's burst
/// of 3 answers from the corpus, so no hostile answer waits for the pacer.
const TALKERS: i64 = 12;
/// The attack stops after this many deaths (the rest would only repeat them).
const MAX_DEATHS: usize = 3;
/// Restarts tried after the attack before the bot is called a crash loop.
const FINAL_RESTARTS: usize = 3;

/// The bot under attack: a `genbot serve` child, or the black-box bot.
enum Subject<'a> {
    Genbot(Box<BotProcess>),
    BlackBox(&'a BlackBox),
}

impl Subject<'_> {
    /// The exit status and the last output, once the bot has exited on its own.
    async fn died(&mut self) -> Option<(String, String)> {
        match self {
            Subject::Genbot(bot) => bot.exited().map(|status| (status, bot.log_tail(5))),
            Subject::BlackBox(bot) => bot.crashed().await,
        }
    }

    /// Starts the bot again on the same state (stopping it first if it still runs).
    async fn restart(&mut self) -> Result<(), String> {
        match self {
            Subject::Genbot(bot) => {
                bot.kill().await;
                bot.start().await.map_err(|e| e.to_string())
            }
            Subject::BlackBox(bot) => bot.restart().await.map(|_| ()).map_err(|e| e.to_string()),
        }
    }

    /// Whether the bot stays up for `span`; its death when it does not.
    async fn stays_up(&mut self, span: Duration) -> Result<(), (String, String)> {
        let deadline = Instant::now() + span;
        while Instant::now() < deadline {
            if let Some(death) = self.died().await {
                return Err(death);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// A death of the bot during the attack.
#[derive(Debug, Clone)]
struct Death {
    /// The input sent last before the death was seen, and the two before it.
    inputs: Vec<String>,
    update: String,
    status: String,
    log: String,
    /// It died again within seconds of being restarted (a stored update kills it again).
    again_at_restart: bool,
}

#[derive(Debug, Default)]
struct Measured {
    seed: u64,
    inputs_sent: u64,
    inputs_delivered: u64,
    deaths: Vec<Death>,
    restart_deaths: Vec<String>,
    crash_loop: bool,
    /// Hostile texts not answered within [`ANSWER_WITHIN`] (labels).
    unanswered: Vec<String>,
    hostile_p99_ms: f64,
    normal_p99_before_ms: f64,
    normal_p99_during_ms: f64,
    normal_steps: u64,
    normal_unanswered: u64,
    replies_in_other_chats: u64,
    forged_payments_accepted: u64,
    forged_sent: u64,
    credit_mismatches: Vec<String>,
    attack_s: f64,
}

/// Entries the bot wrote.
fn bot_entries(transcript: &[Entry]) -> usize {
    transcript
        .iter()
        .filter(|e| {
            matches!(
                e,
                Entry::BotText { .. }
                    | Entry::BotPhoto { .. }
                    | Entry::BotDocument { .. }
                    | Entry::BotInvoice { .. }
            )
        })
        .count()
}

/// Waits up to `within` for a new bot entry in `user`'s chat; how long it took.
async fn answer(user: &SimUser, seen: usize, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    user.wait_for(within, |t| bot_entries(t) > seen)
        .await
        .map(|_| started.elapsed())
}

/// genbot: a `genbot serve` child on a stage of its own.
pub async fn run(ctx: &Context) -> TestOutcome {
    if let Err(outcome) = program(TestId::BadInput, ctx) {
        return *outcome;
    }
    on_stage(
        TestId::BadInput,
        ctx,
        StageSpec::default(),
        |ctx, stage| Box::pin(measure_genbot(ctx, stage)),
        describe_run,
    )
    .await
}

async fn measure_genbot(ctx: &Context, stage: &Stage) -> Result<Measured, FaultError> {
    let telegram = &stage.telegram;
    let mut bot = stage.replica("bench-bad-input")?;
    bot.start().await?;
    let first = TEST_IDS.start;
    let normal: Vec<SimUser> = (0..NORMAL_USERS as i64)
        .map(|n| telegram.user(first + n, &format!("normal{n}"), Some("en")))
        .collect();
    let [bystander, prankster] =
        [100, 200].map(|n| telegram.user(first + n, "Hostile", Some("ru")));
    let talkers = (0..TALKERS)
        .map(|n| telegram.user(first + 210 + n, "Hostile", Some("ru")))
        .collect();
    let mut subject = Subject::Genbot(Box::new(bot));
    let mut measured = attack(
        ctx,
        telegram,
        &mut subject,
        normal,
        [bystander, prankster],
        talkers,
        "/start".to_owned(),
    )
    .await;
    // The ledger: a forged payment must add nothing beyond what the ledger explains, and no
    // Stars purchase may stand for the prankster.
    if let Ok(audits) = stage.store.credit_audit(first..first + 300).await {
        for audit in audits {
            if audit.credits != audit.expected {
                measured.credit_mismatches.push(format!(
                    "user {}: {} credits, the ledger says {}",
                    audit.user.0, audit.credits, audit.expected
                ));
            }
        }
    }
    measured.forged_payments_accepted += measured.credit_mismatches.len() as u64;
    if let Subject::Genbot(bot) = &mut subject {
        bot.kill().await;
    }
    Ok(measured)
}

/// Any bot started with `--bot-cmd` (or attached).
pub(crate) async fn run_blackbox(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let normal = bot.users(NORMAL_USERS as u32, Some("en"));
    let mut cast = bot.users(2, Some("ru")).into_iter();
    let (Some(bystander), Some(prankster)) = (cast.next(), cast.next()) else {
        return TestOutcome::new(TestId::BadInput, ctx.lang);
    };
    let talkers = bot.users(TALKERS as u32, Some("ru"));
    let text = bot
        .scenario
        .steps
        .iter()
        .find_map(|step| match &step.action {
            Action::Send(text) => Some(fill(text, normal[0].id(), 0)),
            _ => None,
        })
        .unwrap_or_else(|| "/start".to_owned());
    let mut subject = Subject::BlackBox(bot);
    let measured = attack(
        ctx,
        &bot.telegram,
        &mut subject,
        normal,
        [bystander, prankster],
        talkers,
        text,
    )
    .await;
    describe_run(ctx, &measured)
}

/// Normal users: each sends `text`, waits for an answer and reads it for a second, until stopped;
/// `(seconds since start, latency or None when unanswered)` per step.
type Steps = Arc<Mutex<Vec<(f64, Option<Duration>)>>>;

fn normal_load(
    users: Vec<SimUser>,
    text: String,
    started: Instant,
    stop: CancellationToken,
) -> (Steps, Vec<tokio::task::JoinHandle<()>>) {
    let steps: Steps = Arc::default();
    let tasks = users
        .into_iter()
        .map(|user| {
            let (steps, stop, text) = (steps.clone(), stop.clone(), text.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let seen = bot_entries(&user.transcript());
                    let sent_at = started.elapsed().as_secs_f64();
                    user.send_text(&text);
                    let took = answer(&user, seen, ANSWER_WITHIN).await;
                    steps.lock().push((sent_at, took));
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(1000)) => {}
                    }
                }
            })
        })
        .collect();
    (steps, tasks)
}

fn p99(steps: &[(f64, Option<Duration>)], from_s: f64, to_s: f64) -> f64 {
    let mut latencies = Latencies::new();
    for (at, took) in steps {
        if let (true, Some(took)) = ((from_s..to_s).contains(at), took) {
            latencies.record(*took);
        }
    }
    latencies.summary().p99_ms
}

/// A receipt-like text: "+N" with N > 0 (what a bot says when it credits a payment).
fn receipt_like(text: &str) -> bool {
    regex::Regex::new(r"\+\s*[1-9]\d*").is_ok_and(|re| re.is_match(text))
}

fn short_json(update: &Value) -> String {
    let text = update.to_string();
    if text.chars().count() > 600 {
        let mut cut: String = text.chars().take(600).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

async fn attack(
    ctx: &Context,
    telegram: &TelegramMock,
    subject: &mut Subject<'_>,
    normal: Vec<SimUser>,
    [bystander, prankster]: [SimUser; 2],
    talkers: Vec<SimUser>,
    normal_text: String,
) -> Measured {
    let mut m = Measured {
        seed: ctx.seed,
        ..Measured::default()
    };
    // Quick: 2 s of normal talk before the attack (their p99 only matters above 500 ms, the
    // bound being at least 1 s) and 2 s up after the final restart, as after a death in the
    // attack (a stored poison update is replayed within milliseconds of the start).
    let (before_s, rounds, stay_up) = if ctx.quick {
        (2.0, 1, Duration::from_secs(2))
    } else {
        (5.0, 3, Duration::from_secs(5))
    };
    // The bystander talks first, so hostile users can press its buttons.
    for text in ["/start", "/models", "/buy"] {
        let seen = bot_entries(&bystander.transcript());
        bystander.send_text(text);
        let _ = answer(&bystander, seen, ANSWER_WITHIN).await;
    }
    let buttons: Vec<(i64, String)> = bystander
        .transcript()
        .iter()
        .filter_map(|e| match e {
            Entry::BotText {
                message_id,
                buttons,
                ..
            } => buttons.first().map(|(_, data)| (*message_id, data.clone())),
            _ => None,
        })
        .collect();
    let bystander_seen = bot_entries(&bystander.transcript());
    let cast = Cast {
        talkers: talkers.iter().map(SimUser::id).collect(),
        prankster: prankster.id(),
        bystander: bystander.id(),
        bystander_buttons: buttons,
        group: -1_000_000_777,
        channel: -1_000_000_888,
        bot_username: telegram.bot_user()["username"]
            .as_str()
            .unwrap_or("bot")
            .to_owned(),
    };
    // What the bot gets wrong answering hostile inputs is this test's own finding; the
    // report's refusals are the rest (normal users' chats), as in every other test.
    telegram.exempt_from_refusals(cast.talkers.iter().copied().chain([
        cast.prankster,
        cast.bystander,
        cast.group,
        cast.channel,
    ]));
    let _group = telegram.group(cast.group, "bad input group");
    let _channel = telegram.group(cast.channel, "bad input channel");

    let started = Instant::now();
    let stop = CancellationToken::new();
    let (steps, tasks) = normal_load(normal, normal_text, started, stop.clone());
    tokio::time::sleep(Duration::from_secs_f64(before_s)).await;
    let attack_started = started.elapsed().as_secs_f64();
    let mut hostile = Latencies::new();
    let mut recent: Vec<&str> = Vec::new();
    let inputs: Vec<Input> = (0..rounds)
        .flat_map(|round| corpus::corpus(ctx.seed.wrapping_add(round), &cast, telegram))
        .collect();
    'attack: for input in &inputs {
        let talker = input
            .answer_in
            .and_then(|chat| talkers.iter().find(|t| t.id() == chat));
        let seen = talker.map_or(0, |t| bot_entries(&t.transcript()));
        let (update_id, delivered) = telegram.inject_update(input.update.clone());
        m.inputs_sent += 1;
        m.inputs_delivered += u64::from(delivered);
        m.forged_sent += u64::from(input.forged_payment && delivered);
        recent.push(&input.label);
        let deadline = Instant::now()
            + if input.answer_in.is_some() && delivered {
                ANSWER_WITHIN
            } else {
                Duration::from_millis(40)
            };
        let mut answered = false;
        loop {
            if talker.is_some_and(|t| bot_entries(&t.transcript()) > seen) {
                answered = true;
                break;
            }
            if let Some((status, log)) = subject.died().await {
                let mut update = input.update.clone();
                update["update_id"] = update_id.into();
                let mut death = Death {
                    inputs: recent
                        .iter()
                        .rev()
                        .take(3)
                        .map(|s| (*s).to_owned())
                        .collect(),
                    update: short_json(&update),
                    status,
                    log,
                    again_at_restart: false,
                };
                let up = match subject.restart().await {
                    Ok(()) => subject.stays_up(Duration::from_secs(2)).await.is_ok(),
                    Err(_) => false,
                };
                death.again_at_restart = !up;
                m.deaths.push(death);
                recent.clear();
                if !up || m.deaths.len() >= MAX_DEATHS {
                    break 'attack;
                }
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if input.answer_in.is_some() && delivered {
            if answered {
                hostile.record(Instant::now() - (deadline - ANSWER_WITHIN));
            } else {
                m.unanswered.push(input.label.clone());
            }
        }
    }
    let attack_ended = started.elapsed().as_secs_f64();
    m.attack_s = attack_ended - attack_started;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let steps = steps.lock().clone();
    m.normal_steps = steps.len() as u64;
    m.normal_unanswered = steps.iter().filter(|(_, t)| t.is_none()).count() as u64;
    m.normal_p99_before_ms = p99(&steps, 0.0, attack_started);
    m.normal_p99_during_ms = p99(&steps, attack_started, attack_ended);
    m.hostile_p99_ms = hostile.summary().p99_ms;

    // Restarted on the same state, it must stay up.
    for _ in 0..FINAL_RESTARTS {
        match subject.restart().await {
            Ok(()) => match subject.stays_up(stay_up).await {
                Ok(()) => break,
                Err((status, log)) => m.restart_deaths.push(format!("{status}; {log}")),
            },
            Err(e) => m.restart_deaths.push(e),
        }
    }
    m.crash_loop = m.restart_deaths.len() >= FINAL_RESTARTS;

    m.replies_in_other_chats =
        bot_entries(&bystander.transcript()).saturating_sub(bystander_seen) as u64;
    m.forged_payments_accepted = prankster
        .transcript()
        .iter()
        .filter(|e| match e {
            Entry::BotText { text, .. } => receipt_like(text),
            _ => false,
        })
        .count() as u64;
    m
}

fn describe_run(ctx: &Context, m: &Measured) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::BadInput, ctx.lang);
    let bound_ms = (2.0 * m.normal_p99_before_ms).max(1000.0);
    let broken = !m.deaths.is_empty()
        || !m.restart_deaths.is_empty()
        || !m.unanswered.is_empty()
        || m.normal_unanswered > 0
        || m.replies_in_other_chats > 0
        || m.forged_payments_accepted > 0;
    out.grade = if broken {
        Grade::NeedsOptimization
    } else if m.normal_p99_during_ms > bound_ms {
        Grade::Good
    } else {
        Grade::Excellent
    };
    out.metric("inputs_sent", m.inputs_sent as f64)
        .metric("inputs_delivered", m.inputs_delivered as f64)
        .metric("bot_deaths", m.deaths.len() as f64)
        .metric("restart_deaths", m.restart_deaths.len() as f64)
        .metric("unanswered", m.unanswered.len() as f64)
        .metric("hostile_answer_p99_ms", m.hostile_p99_ms)
        .metric("normal_p99_ms_before", m.normal_p99_before_ms)
        .metric("normal_p99_ms_during", m.normal_p99_during_ms)
        .metric("normal_steps", m.normal_steps as f64)
        .metric("normal_unanswered", m.normal_unanswered as f64)
        .metric("replies_in_other_chats", m.replies_in_other_chats as f64)
        .metric(
            "forged_payments_accepted",
            m.forged_payments_accepted as f64,
        );
    let seed = m.seed;
    out.fact(ctx.text(
        format!(
            "seed {seed} (repeat with --seed {seed}): {} hostile updates in {:.1} s ({} delivered; the rest were kinds the bot left out of allowed_updates, which Telegram does not send), {} forged payments, while {NORMAL_USERS} normal users kept talking",
            m.inputs_sent, m.attack_s, m.inputs_delivered, m.forged_sent
        ),
        format!(
            "seed {seed} (повторить: --seed {seed}): {} враждебных обновлений за {:.1} с (доставлено {}; остальные — типы, которых нет в allowed_updates бота, Telegram их не шлёт), {} поддельных платежей, пока {NORMAL_USERS} обычных пользователя продолжали писать",
            m.inputs_sent, m.attack_s, m.inputs_delivered, m.forged_sent
        ),
    ));
    for death in &m.deaths {
        let last = death.inputs.first().cloned().unwrap_or_default();
        let before = death.inputs.get(1..).unwrap_or_default().join("; ");
        let again = if death.again_at_restart {
            ctx.text(
                " It died again right after a restart: a crash loop on an update it never confirms.",
                " Умер снова сразу после перезапуска: цикл падений на обновлении, которое он не подтверждает.",
            )
        } else {
            String::new()
        };
        out.fact(ctx.text(
            format!(
                "the bot died ({}) after the input \"{last}\" (before it: {before}); the update: {}; its last output: {}.{again}",
                death.status, death.update, death.log
            ),
            format!(
                "бот умер ({}) после ввода «{last}» (перед ним: {before}); обновление: {}; последний вывод: {}.{again}",
                death.status, death.update, death.log
            ),
        ));
        out.recommend(ctx.text(
            format!("one message takes the bot down: \"{last}\". Catch errors per update (and never exit the process from a handler), so a bad input is answered, counted and set aside"),
            format!("одно сообщение роняет бота: «{last}». Перехватывайте ошибки для каждого обновления (и не завершайте процесс из обработчика), чтобы плохой ввод получил ответ, был учтён и отложен"),
        ));
    }
    if m.crash_loop {
        out.fact(ctx.text(
            format!("crash loop: restarted on the same state after the attack, the bot died {} times in a row: {}", m.restart_deaths.len(), m.restart_deaths.join(" | ")),
            format!("цикл падений: перезапущенный на том же состоянии бот умер {} раз подряд: {}", m.restart_deaths.len(), m.restart_deaths.join(" | ")),
        ));
    } else if !m.restart_deaths.is_empty() {
        out.fact(ctx.text(
            format!(
                "restarted after the attack, the bot died {} time(s) before it stayed up: {}",
                m.restart_deaths.len(),
                m.restart_deaths.join(" | ")
            ),
            format!(
                "после атаки бот умер {} раз(а), прежде чем остался работать: {}",
                m.restart_deaths.len(),
                m.restart_deaths.join(" | ")
            ),
        ));
    }
    if !m.unanswered.is_empty() {
        let shown = m
            .unanswered
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        out.recommend(ctx.text(
            format!(
                "{} hostile text(s) in a private chat got no answer within {} s: {shown}",
                m.unanswered.len(),
                ANSWER_WITHIN.as_secs()
            ),
            format!(
                "{} враждебных текстов в личном чате остались без ответа за {} с: {shown}",
                m.unanswered.len(),
                ANSWER_WITHIN.as_secs()
            ),
        ));
    }
    if m.normal_unanswered > 0 {
        out.recommend(ctx.text(
            format!(
                "{} of {} normal users' steps got no answer within {} s during the attack",
                m.normal_unanswered,
                m.normal_steps,
                ANSWER_WITHIN.as_secs()
            ),
            format!(
                "{} из {} шагов обычных пользователей остались без ответа за {} с во время атаки",
                m.normal_unanswered,
                m.normal_steps,
                ANSWER_WITHIN.as_secs()
            ),
        ));
    }
    if m.replies_in_other_chats > 0 {
        out.recommend(ctx.text(
            format!("{} message(s) went to a bystander's chat after hostile users pressed its buttons, forwarded it or sent its contact", m.replies_in_other_chats),
            format!("{} сообщений ушло в чат постороннего пользователя после чужих нажатий, пересылок или контакта", m.replies_in_other_chats),
        ));
    }
    if m.forged_payments_accepted > 0 {
        let detail = m.credit_mismatches.join("; ");
        out.recommend(ctx.text(
            format!("{} forged payment(s) accepted (a receipt with +N for a payment no invoice stands behind, or credits the ledger cannot explain{}{detail}): credit only payloads the bot issued, in Telegram Stars, once per charge id", m.forged_payments_accepted, if detail.is_empty() { "" } else { ": " }),
            format!("принято поддельных платежей: {} (квитанция с +N за платёж без счёта или кредиты, которых нет в журнале{}{detail}): начисляйте только за выставленные ботом счета в Stars, один раз на charge id", m.forged_payments_accepted, if detail.is_empty() { "" } else { ": " }),
        ));
    }
    out.fact(ctx.text(
        format!("normal users' p99 {:.0} ms before, {:.0} ms during the attack (bound {bound_ms:.0} ms = max(2 × before, 1 s)); hostile texts answered at p99 {:.0} ms", m.normal_p99_before_ms, m.normal_p99_during_ms, m.hostile_p99_ms),
        format!("p99 обычных пользователей {:.0} мс до и {:.0} мс во время атаки (граница {bound_ms:.0} мс = max(2 × до, 1 с)); враждебные тексты получили ответ с p99 {:.0} мс", m.normal_p99_before_ms, m.normal_p99_during_ms, m.hostile_p99_ms),
    ));
    out
}
