//! `--bot-cmd` and `--attach`: bringing another bot up as the suite's target, naming it in the
//! reports, and stopping it at the end.

use std::time::Duration;

use genbot_bench::blackbox::{BlackBox, BlackBoxError, Launch, Scenario};
use genbot_bench::grade::Lang;
use genbot_bench::report::Environment;
use genbot_config::Settings;

use super::Plan;
use crate::cli::BenchArgs;

/// How long `--attach` waits for a bot started by hand.
const ATTACH_PATIENCE: Duration = Duration::from_secs(300);
/// The bot's output, kept beside the reports.
const LOG_FILE: &str = "bot-under-test.log";

/// Why the black-box target could not be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error("{0}")]
    Scenario(#[from] genbot_bench::blackbox::ScenarioError),
    #[error("{0}")]
    Bot(#[from] BlackBoxError),
}

/// The bot under test when `--bot-cmd` or `--attach` is given, up and listening.
pub(super) async fn open(
    settings: &Settings,
    plan: &Plan,
    args: &BenchArgs,
) -> Result<Option<BlackBox>, OpenError> {
    let lang = plan.lang;
    if !plan.black_box {
        return Ok(None);
    }
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::genbot(settings),
    };
    let launch = match &args.bot_cmd {
        Some(command) => Launch::Command {
            command: command.clone(),
            restart: args.restart_cmd.clone(),
        },
        None => Launch::Attach,
    };
    if !args.quiet {
        eprintln!(
            "{}",
            match (&launch, lang) {
                (Launch::Command { command, .. }, Lang::En) =>
                    format!("starting the bot under test: {command}"),
                (Launch::Command { command, .. }, Lang::Ru) =>
                    format!("запуск тестируемого бота: {command}"),
                (Launch::Attach, _) => String::new(),
            }
        );
    }
    let log = args.out.join(LOG_FILE);
    let bot = BlackBox::start(
        launch,
        scenario,
        &log,
        |env| announce(env, lang),
        ATTACH_PATIENCE,
    )
    .await?;
    Ok(Some(bot))
}

/// `--attach`: the variables to start the bot with.
fn announce(env: &[(String, String)], lang: Lang) {
    eprintln!(
        "{}",
        match lang {
            Lang::En => format!(
                "genbot: waiting up to {} s for your bot to poll or set a webhook; start it with:",
                ATTACH_PATIENCE.as_secs()
            ),
            Lang::Ru => format!(
                "genbot: ждём до {} с, пока ваш бот начнёт опрос или установит вебхук; запустите его с переменными:",
                ATTACH_PATIENCE.as_secs()
            ),
        }
    );
    for (name, value) in env {
        eprintln!("  export {name}={value}");
    }
}

/// Names the bot in the report header, and says the bot's own storage is not seen.
pub(super) fn describe_in(env: &mut Environment, bot: &BlackBox, plan: &Plan) {
    env.bot = Some(match plan.lang {
        Lang::En => format!("`{}` · scenario: {}", bot.launched_as(), bot.scenario.name),
        Lang::Ru => format!("`{}` · сценарий: {}", bot.launched_as(), bot.scenario.name),
    });
    env.replicate = match plan.lang {
        Lang::En => format!("mock at {}", bot.replicate.url()),
        Lang::Ru => format!("мок на {}", bot.replicate.url()),
    };
    if plan.database.is_none() {
        let unseen = match plan.lang {
            Lang::En => "the bot's own, not seen (black box)",
            Lang::Ru => "собственные бота, не видны (чёрный ящик)",
        };
        env.db = unseen.into();
        env.cache = unseen.into();
    }
}

/// Stops the bot and adds how it stopped (and every restart) to the report header.
pub(super) async fn stop_and_record(bot: &BlackBox, env: &mut Environment, lang: Lang) {
    bot.stop().await;
    let stops: Vec<String> = bot
        .stops()
        .iter()
        .map(|s| s.describe(lang == Lang::En))
        .collect();
    if let (Some(described), false) = (env.bot.as_mut(), stops.is_empty()) {
        let word = match lang {
            Lang::En => "stops",
            Lang::Ru => "остановки",
        };
        described.push_str(&format!("; {word}: {}", stops.join("; ")));
    }
}
