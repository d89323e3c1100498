//! Parsing a message's text into a command or a prompt.

/// What a user's text asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input<'a> {
    Start,
    Help,
    Models,
    Balance,
    Cancel,
    History,
    Settings,
    Buy,
    PaySupport,
    /// `/refund <charge id>` (admins): the arguments as written.
    Refund(&'a str),
    /// `/ban <user id>` and `/unban <user id>` (admins): whether to ban, and the arguments.
    Ban(bool, &'a str),
    /// `/broadcast <text>` (admins).
    Broadcast(&'a str),
    Stats,
    /// A `/word` the bot does not know.
    Unknown,
    /// Anything else, or `/img <prompt>`: a description to draw.
    Prompt(&'a str),
}

/// The commands shown in Telegram's menu (`setMyCommands`); the admins' (`/stats`, `/refund`,
/// `/ban`, `/unban`, `/broadcast`) stay hidden.
pub(crate) const MENU: [(&str, &str); 9] = [
    ("start", "register / start over"),
    ("models", "choose a model"),
    ("settings", "aspect ratio, steps, seed… of your model"),
    ("balance", "credits and today's images"),
    ("history", "your images, to send again or re-run"),
    ("buy", "buy credits with Telegram Stars"),
    ("paysupport", "payment help and refunds"),
    ("cancel", "cancel your queued image"),
    ("help", "help"),
];

impl<'a> Input<'a> {
    /// Reads `/cmd`, `/cmd@botname` and `/cmd args` as commands, the rest as a prompt.
    pub(crate) fn parse(text: &'a str) -> Input<'a> {
        let trimmed = text.trim();
        let Some(rest) = trimmed.strip_prefix('/') else {
            return Input::Prompt(trimmed);
        };
        let word = rest.split_whitespace().next().unwrap_or_default();
        let args = rest[word.len()..].trim();
        let name = word.split('@').next().unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            "start" => Input::Start,
            "help" => Input::Help,
            "models" => Input::Models,
            "balance" => Input::Balance,
            "cancel" => Input::Cancel,
            "history" => Input::History,
            "settings" => Input::Settings,
            "buy" => Input::Buy,
            "paysupport" => Input::PaySupport,
            "refund" => Input::Refund(args),
            "img" => Input::Prompt(args),
            "ban" => Input::Ban(true, args),
            "broadcast" => Input::Broadcast(args),
            "unban" => Input::Ban(false, args),
            "stats" => Input::Stats,
            _ => Input::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_prompts() {
        assert_eq!(Input::parse("/start"), Input::Start);
        assert_eq!(Input::parse("/models@genbot_bot"), Input::Models);
        assert_eq!(Input::parse(" /Balance now"), Input::Balance);
        assert_eq!(Input::parse("/dance"), Input::Unknown);
        assert_eq!(
            Input::parse("/refund@genbot_bot  stx123 "),
            Input::Refund("stx123")
        );
        assert_eq!(Input::parse("/refund"), Input::Refund(""));
        assert_eq!(Input::parse("  a red fox  "), Input::Prompt("a red fox"));
    }
}
