//! Parsing a message's text into a command or a prompt: in a private chat ([`Input`]), and in
//! a group, where the bot answers only what is addressed to it ([`GroupInput`]).

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
    /// A command naming another bot (`/start@otherbot`): not for us, left unanswered.
    NotOurs,
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

/// A `/command` as written: `/name@target args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Command<'a> {
    /// The word after the slash, without `@target` (empty only for `/` or `/@target`).
    pub(crate) name: &'a str,
    /// The bot it names (`/img@genbot_bot`), if any.
    pub(crate) target: Option<&'a str>,
    /// The rest of the text, trimmed.
    pub(crate) args: &'a str,
}

impl<'a> Command<'a> {
    /// Splits a text that starts with `/` (after leading whitespace) into its parts; `None`
    /// for any other text, and for a slash followed by whitespace (`/ привет`): no command is
    /// named, and a user who writes that means the text, not a command. Splits only at character boundaries the string itself reports
    /// (`find`, `split_once`), never at a byte count taken from another string: user text is
    /// any Unicode, and a cut inside a character panics.
    pub(crate) fn split(text: &'a str) -> Option<Command<'a>> {
        let rest = text.trim().strip_prefix('/')?;
        if rest.starts_with(char::is_whitespace) {
            return None;
        }
        let (word, args) = match rest.split_once(char::is_whitespace) {
            Some((word, args)) => (word, args.trim()),
            None => (rest, ""),
        };
        let (name, target) = match word.split_once('@') {
            Some((name, target)) => (name, Some(target)),
            None => (word, None),
        };
        Some(Command { name, target, args })
    }

    /// Whether it is addressed to the bot called `me` (no `@target`, or `@me`).
    pub(crate) fn is_for(&self, me: &str) -> bool {
        self.target.is_none_or(|t| t.eq_ignore_ascii_case(me))
    }

    /// Whether it names a bot other than `me` (`/start@otherbot`, as Telegram clients write a
    /// command picked from another bot's menu). A bare `@` names nobody.
    fn for_another_bot(&self, me: &str) -> bool {
        self.target
            .is_some_and(|t| !t.is_empty() && !t.eq_ignore_ascii_case(me))
    }
}

impl<'a> Input<'a> {
    /// Reads `/cmd`, `/cmd@me` and `/cmd args` as commands (`me`: the bot's username), a
    /// command naming another bot as [`Input::NotOurs`], the rest as a prompt.
    pub(crate) fn parse(text: &'a str, me: &str) -> Input<'a> {
        let Some(command) = Command::split(text) else {
            return Input::Prompt(text.trim());
        };
        if command.for_another_bot(me) {
            return Input::NotOurs;
        }
        let Command { name, args, .. } = command;
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

/// What a text or caption in a group asks of the bot. With privacy mode on (Telegram's default)
/// the bot sees only commands and replies to its own messages: it answers `/img prompt` and
/// `/img@botname prompt` (a command naming another bot is left alone), takes a reply to one of
/// its messages as a prompt, and `/help`; anything else is not for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupInput<'a> {
    /// A description to draw (may be empty: `/img` alone).
    Prompt(&'a str),
    Help,
    /// A command for another bot, or one the bot has nothing for in a group.
    NotOurs,
}

impl<'a> GroupInput<'a> {
    /// Reads `text` sent to a group the bot called `me` is in; `replied_to_us`: whether it
    /// replies to one of the bot's messages.
    pub(crate) fn parse(text: &'a str, me: &str, replied_to_us: bool) -> GroupInput<'a> {
        if let Some(prompt) = command_args(text, "img", me) {
            GroupInput::Prompt(prompt)
        } else if command_args(text, "help", me).is_some() {
            GroupInput::Help
        } else if replied_to_us && !text.trim_start().starts_with('/') {
            GroupInput::Prompt(text)
        } else {
            GroupInput::NotOurs
        }
    }
}

/// `/NAME args` or `/NAME@bot args` addressed to us: the arguments.
fn command_args<'t>(text: &'t str, name: &str, me: &str) -> Option<&'t str> {
    let command = Command::split(text)?;
    (command.is_for(me) && command.name.eq_ignore_ascii_case(name)).then_some(command.args)
}

/// Any text a user (or a client forging button data) can send, for property tests of every
/// parser of it: any Unicode, with the characters that broke parsers weighted in (whitespace of
/// every class, zero-width and RTL marks, combining marks, emoji joiners, controls, `/`, `@`,
/// `:` and `=`).
#[cfg(test)]
pub(crate) fn arbitrary_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let special = prop::sample::select(vec![
        '/', '@', ':', '=', ' ', '\t', '\n', '\u{a0}', '\u{3000}', '\u{2003}', '\u{200b}',
        '\u{200d}', '\u{200f}', '\u{202e}', '\u{301}', '\u{fe0f}', '\u{0}', '\u{7f}', 'п', 'я',
        '🦊', '-', '0', '9',
    ]);
    let ch = prop_oneof![3 => any::<char>(), 2 => special];
    prop::collection::vec(ch, 0..64).prop_map(|chars| chars.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_prompts() {
        assert_eq!(Input::parse("/start", "genbot"), Input::Start);
        assert_eq!(
            Input::parse("/models@genbot_bot", "genbot_bot"),
            Input::Models
        );
        assert_eq!(Input::parse(" /Balance now", "genbot"), Input::Balance);
        assert_eq!(Input::parse("/dance", "genbot"), Input::Unknown);
        assert_eq!(
            Input::parse("/refund@genbot_bot  stx123 ", "genbot_bot"),
            Input::Refund("stx123")
        );
        assert_eq!(Input::parse("/refund", "genbot"), Input::Refund(""));
        assert_eq!(Input::parse("/start@otherbot", "genbot"), Input::NotOurs);
        assert_eq!(Input::parse("/START@GENBOT", "genbot"), Input::Start);
        assert_eq!(Input::parse("/help@ me", "genbot"), Input::Help);
        assert_eq!(
            Input::parse("  a red fox  ", "genbot"),
            Input::Prompt("a red fox")
        );
    }

    /// Texts that cut a character in half when the arguments were found by byte count.
    #[test]
    fn whitespace_of_every_kind_before_non_ascii_words() {
        assert_eq!(
            Input::parse("/ привет", "genbot"),
            Input::Prompt("/ привет")
        );
        assert_eq!(
            Input::parse("/\u{a0}привет", "genbot"),
            Input::Prompt("/\u{a0}привет")
        );
        assert_eq!(
            Input::parse("/img\u{3000}кот на крыше", "genbot"),
            Input::Prompt("кот на крыше")
        );
        assert_eq!(Input::parse("/img\u{200b}кот", "genbot"), Input::Unknown);
        assert_eq!(Input::parse("/\t🦊🦊", "genbot"), Input::Prompt("/\t🦊🦊"));
        assert_eq!(
            Input::parse("/refund\u{2003}é\u{301}", "genbot"),
            Input::Refund("é\u{301}")
        );
        assert_eq!(Input::parse("/", "genbot"), Input::Unknown);
        assert_eq!(Input::parse("/@", "genbot"), Input::Unknown);
    }

    #[test]
    fn commands_for_other_bots_are_not_ours() {
        assert_eq!(command_args("/img a fox", "img", "genbot"), Some("a fox"));
        assert_eq!(
            command_args("/img@GenBot  a fox ", "img", "genbot"),
            Some("a fox")
        );
        assert_eq!(command_args("/img@otherbot a fox", "img", "genbot"), None);
        assert_eq!(command_args("/imagine a fox", "img", "genbot"), None);
        assert_eq!(command_args("a fox", "img", "genbot"), None);
        assert_eq!(
            command_args("/img@genbot кот", "img", "genbot"),
            Some("кот")
        );
        assert_eq!(command_args("/ привет", "img", "genbot"), None);
        assert_eq!(command_args("/img@ привет", "img", "genbot"), None);
    }

    #[test]
    fn a_group_is_answered_only_what_is_addressed_to_the_bot() {
        let parse = GroupInput::parse;
        assert_eq!(
            parse("/img@genbot a fox", "genbot", false),
            GroupInput::Prompt("a fox")
        );
        assert_eq!(parse("/help@genbot", "genbot", false), GroupInput::Help);
        assert_eq!(parse("/help@other", "genbot", true), GroupInput::NotOurs);
        assert_eq!(parse("a fox", "genbot", true), GroupInput::Prompt("a fox"));
        assert_eq!(parse("a fox", "genbot", false), GroupInput::NotOurs);
        assert_eq!(parse("/start", "genbot", true), GroupInput::NotOurs);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in arbitrary_text(), me in arbitrary_text()) {
            let _ = Input::parse(&text, &me);
            let _ = GroupInput::parse(&text, &me, true);
            let _ = GroupInput::parse(&text, &me, false);
        }

        #[test]
        fn a_commands_parts_are_pieces_of_its_text(text in arbitrary_text()) {
            if let Some(command) = Command::split(&text) {
                proptest::prop_assert!(text.contains(command.name));
                proptest::prop_assert!(text.ends_with(command.args) || text.trim_end().ends_with(command.args));
                proptest::prop_assert!(!command.name.contains(char::is_whitespace));
                proptest::prop_assert!(!command.name.contains('@'));
            } else {
                let slash_then_space = text
                    .trim()
                    .strip_prefix('/')
                    .is_some_and(|rest| rest.starts_with(char::is_whitespace));
                proptest::prop_assert!(!text.trim_start().starts_with('/') || slash_then_space);
            }
        }

        /// A slash, whitespace of any kind, then anything: text to draw, never a command (it
        /// was answered "Unknown command").
        #[test]
        fn a_slash_then_whitespace_is_a_prompt(
            space in proptest::sample::select(vec![' ', '\t', '\n', '\u{a0}', '\u{2003}', '\u{3000}']),
            rest in arbitrary_text(),
        ) {
            let text = format!("/{space}{rest}");
            // Nothing after it: a lone `/`.
            proptest::prop_assume!(text.trim() != "/");
            proptest::prop_assert_eq!(Command::split(&text), None);
            proptest::prop_assert_eq!(Input::parse(&text, "genbot"), Input::Prompt(text.trim()));
        }

        /// A command naming another bot is never ours, in a private chat as in a group
        /// (`/start@otherbot` was answered in a private chat); naming us, or nobody, it is the
        /// command itself.
        #[test]
        fn a_command_for_another_bot_is_not_ours(text in arbitrary_text(), me in arbitrary_text()) {
            let parsed = Input::parse(&text, &me);
            let other = Command::split(&text).is_some_and(|c| {
                c.target.is_some_and(|t| !t.is_empty() && !t.eq_ignore_ascii_case(&me))
            });
            proptest::prop_assert_eq!(parsed == Input::NotOurs, other, "{:?}", parsed);
            if other {
                proptest::prop_assert_eq!(GroupInput::parse(&text, &me, true), GroupInput::NotOurs);
            }
        }

        #[test]
        fn a_known_command_is_ours_only_when_it_names_us(
            name in proptest::sample::select(MENU.iter().map(|(n, _)| *n).collect::<Vec<_>>()),
            other in arbitrary_text(),
            args in arbitrary_text(),
        ) {
            // A bot's name as Telegram clients write it after `@`: no whitespace, no `@`.
            let other: String = other.chars().filter(|c| !c.is_whitespace() && *c != '@').collect();
            proptest::prop_assume!(!other.is_empty() && !other.eq_ignore_ascii_case("genbot"));
            let text = format!("/{name}@{other} {args}");
            proptest::prop_assert_eq!(Input::parse(&text, "genbot"), Input::NotOurs);
            let ours = format!("/{name}@GenBot {args}");
            let plain = format!("/{name} {args}");
            proptest::prop_assert_eq!(Input::parse(&ours, "genbot"), Input::parse(&plain, "genbot"));
            proptest::prop_assert_ne!(Input::parse(&plain, "genbot"), Input::NotOurs);
        }

        #[test]
        fn the_4096_character_limit_parses(prefix in arbitrary_text(), fill in proptest::prelude::any::<char>()) {
            let text: String = prefix.chars().chain(std::iter::repeat(fill)).take(4096).collect();
            let _ = Input::parse(&text, "genbot");
            let _ = Command::split(&text).map(|c| c.is_for("genbot"));
        }
    }
}
