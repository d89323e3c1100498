//! URL newtypes that cannot leak the passwords they carry.

use std::fmt;
use std::path::PathBuf;

use url::Url;

/// A URL that may carry credentials. `Display` and `Debug` print it with every credential-bearing
/// part replaced by `***`: the user name and password (`rediss://TOKEN@host` carries its token as
/// the user name), and the value of every query parameter but the few known to hold no secret
/// (`sslmode`, `connect_timeout`, …: see [`is_public_parameter`]), since a secret can hide under
/// any name (`?k=…`). [`RedactedUrl::expose`] gives the real one to the code that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(Url);

impl RedactedUrl {
    /// Wraps a parsed URL.
    pub fn new(url: Url) -> Self {
        RedactedUrl(url)
    }

    /// The full URL, password included. Only for handing to a client library.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The URL's scheme (`postgres`, `redis`, …).
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// Host and port, for messages (`127.0.0.1:5432`).
    pub fn host_port(&self) -> String {
        match (self.0.host_str(), self.0.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => String::new(),
        }
    }

    fn redacted(&self) -> String {
        let mut shown = self.0.clone();
        // Both setters only fail for URLs that cannot have credentials (no host), which then
        // have none to hide.
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        if !shown.username().is_empty() {
            let _ = shown.set_username("***");
        }
        if shown.query().is_some() {
            let pairs: Vec<(String, String)> = shown
                .query_pairs()
                .map(|(k, v)| {
                    let v = if !is_public_parameter(&k) || is_bot_token_segment(&v) {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        // A Bot API token pasted into a path (`/bot123:AAH…/`) is as secret as a password.
        if shown.path().split('/').any(is_bot_token_segment) {
            let path: Vec<&str> = shown
                .path()
                .split('/')
                .map(|segment| {
                    if is_bot_token_segment(segment) {
                        "bot***"
                    } else {
                        segment
                    }
                })
                .collect();
            shown.set_path(&path.join("/"));
        }
        // A fragment never reaches the server, so nothing needs it shown, and a pasted token
        // (`…/api#bot123:AAH…`) can sit there.
        if shown.fragment().is_some() {
            shown.set_fragment(Some("***"));
        }
        // `***` is written percent-encoded in some positions; show it plainly.
        shown.to_string().replace("%2A%2A%2A", "***")
    }
}

/// A path segment that carries a Telegram bot token as the Bot API's URLs do: `bot<id>:<secret>`,
/// however it was spelled when pasted: `BOT`/`Bot`, percent-encoded (`bot123%3AAAH…`, `%62ot…`),
/// or the bare token `<id>:<secret>` (an id of at least 5 digits and a secret of at least 20
/// characters, as BotFather issues them, so ordinary `a:b` segments are left alone).
pub(crate) fn is_bot_token_segment(segment: &str) -> bool {
    let decoded = percent_decoded(segment);
    let looks_like = |rest: &str, min_id: usize, min_secret: usize| {
        rest.split_once(':').is_some_and(|(id, secret)| {
            id.len() >= min_id.max(1)
                && id.bytes().all(|b| b.is_ascii_digit())
                && secret.len() >= min_secret.max(1)
        })
    };
    let prefixed = decoded
        .get(..3)
        .zip(decoded.get(3..))
        .is_some_and(|(prefix, rest)| prefix.eq_ignore_ascii_case("bot") && looks_like(rest, 1, 1));
    prefixed || looks_like(&decoded, 5, 20)
}

/// `text` with `%XX` escapes decoded (invalid escapes and non-UTF-8 results left as they are).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make at most 0xFF.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({})", self.redacted())
    }
}

/// `text` (an error message, a log field) with every URL in it shown as [`RedactedUrl`] shows
/// it. Client libraries put the request's URL in their errors (reqwest's `error sending request
/// for url (…)`), user name, password and query included.
pub fn redact_urls_in(text: &str) -> String {
    // A URL ends where a character that cannot appear in one unescaped begins.
    let ends = |c: char| c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'' | '<' | '>' | '`');
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    // Every index below comes from a search of the same string, so it is a character boundary.
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at);
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = after.find(ends).map_or(rest.len(), |i| at + i);
        let (head, tail) = rest.split_at(end);
        let (kept, candidate) = head.split_at(start);
        shown.push_str(kept);
        match Url::parse(candidate) {
            Ok(url) => shown.push_str(&RedactedUrl::new(url).to_string()),
            // Not a URL after all: hide what would be its userinfo and query.
            Err(_) => shown.push_str(&masked_userinfo_and_query(candidate)),
        }
        rest = tail;
    }
    shown.push_str(rest);
    shown
}

/// A URL-looking text that did not parse, with everything between `://` and the last `@`
/// and everything after `?` replaced by `***`.
pub(crate) fn masked_userinfo_and_query(text: &str) -> String {
    let (text, query) = match text.split_once('?') {
        Some((before, _)) => (before, "?***"),
        None => (text, ""),
    };
    match (text.find("://"), text.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let (scheme, _) = text.split_at(start + "://".len());
            let (_, host) = text.split_at(at);
            masked_tokens(&format!("{scheme}***{host}{query}"))
        }
        _ => masked_tokens(&format!("{text}{query}")),
    }
}

/// `text` with every word shaped like a bot token (see [`is_bot_token_segment`]) between
/// slashes, blanks and `#` shown as `bot***`.
fn masked_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(if is_bot_token_segment(word) {
            "bot***"
        } else {
            word
        });
        word.clear();
    };
    for c in text.chars() {
        if c == '/' || c == '#' || c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Query parameters (and libpq keywords) whose values are settings, never credentials: shown
/// as they are. Every other value is masked.
pub(crate) fn is_public_parameter(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "sslmode"
            | "ssl-mode"
            | "sslrootcert"
            | "connect_timeout"
            | "application_name"
            | "fallback_application_name"
            | "target_session_attrs"
            | "load_balance_hosts"
            | "channel_binding"
            | "gssencmode"
            | "keepalives"
            | "keepalives_idle"
            | "keepalives_interval"
            | "keepalives_count"
            | "host"
            | "hostaddr"
            | "port"
            | "dbname"
            | "mode"
            | "cache"
            | "immutable"
            | "timeout"
            | "protocol"
    )
}

/// `text` with the value of every `name=value` pair masked unless its name is public and the
/// value plainly one setting: libpq's keyword form (`host=db password=… dbname=x`) pasted where
/// a URL belongs. A name is the word before `=` (blanks allowed between); a value runs to the
/// next unescaped blank (libpq's `\ ` is no blank), or is a single-quoted string (`'a b\'c'`).
/// A public name's value holding `=`, `&` or `\` is masked too: it may run into a secret.
pub(crate) fn masked_keyword_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        out.push(c);
        if c != '=' {
            continue;
        }
        // `at` is a character's own index, so a boundary.
        let head = text.get(..at).unwrap_or_default().trim_end();
        let name_len: usize = head
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
            .map(char::len_utf8)
            .sum();
        let name = head.get(head.len() - name_len..).unwrap_or_default();
        while let Some((_, blank)) = chars.next_if(|(_, c)| c.is_whitespace()) {
            out.push(blank);
        }
        let mut value = String::new();
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        if quoted {
            value.push('\'');
        }
        let mut escaped = false;
        while let Some((_, c)) = chars.next_if(|(_, c)| quoted || escaped || !c.is_whitespace()) {
            value.push(c);
            if quoted && c == '\'' && !escaped {
                break;
            }
            escaped = c == '\\' && !escaped;
        }
        let shown_as_is =
            value.is_empty() || (!value.contains(['=', '&', '\\']) && is_public_parameter(name));
        out.push_str(if shown_as_is { &value } else { "***" });
    }
    out
}

/// Where the users and jobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file, created if missing (the embedded default).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres(RedactedUrl),
}

impl DatabaseUrl {
    /// What `DATABASE_URL` accepts, for error messages.
    pub const ALLOWED: &'static str =
        "expected sqlite://PATH (e.g. sqlite://genbot.db) or postgres://USER[:PASSWORD]@HOST[:PORT]/DB";

    /// Parses `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    ///
    /// # Errors
    /// Returns [`DatabaseUrl::ALLOWED`] as the reason when the text is none of those.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if let Some(rest) = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(Self::ALLOWED);
            }
            return Ok(DatabaseUrl::Sqlite {
                path: PathBuf::from(path),
            });
        }
        let url = Url::parse(text).map_err(|_| Self::ALLOWED)?;
        match url.scheme() {
            "postgres" | "postgresql" if url.host_str().is_some() => {
                Ok(DatabaseUrl::Postgres(RedactedUrl::new(url)))
            }
            _ => Err(Self::ALLOWED),
        }
    }

    /// `sqlite` or `postgres`, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite { .. } => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms() {
        for text in [
            "sqlite://genbot.db",
            "sqlite:genbot.db",
            "sqlite://genbot.db?mode=rwc",
        ] {
            assert_eq!(
                DatabaseUrl::parse(text),
                Ok(DatabaseUrl::Sqlite {
                    path: "genbot.db".into()
                }),
                "{text}"
            );
        }
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/genbot/db.sqlite"),
            Ok(DatabaseUrl::Sqlite {
                path: "/var/lib/genbot/db.sqlite".into()
            })
        );
    }

    #[test]
    fn unknown_schemes_are_refused() {
        for text in [
            "mysql://root@localhost/test",
            "genbot.db",
            "sqlite://",
            "postgres:///x",
        ] {
            assert!(DatabaseUrl::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn postgres_password_is_redacted() {
        let url = DatabaseUrl::parse("postgres://bot:hunter2@db.internal:5432/genbot").unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://***:***@db.internal:5432/genbot"),
            "{shown}"
        );
        match url {
            DatabaseUrl::Postgres(inner) => assert!(inner.expose().contains("hunter2")),
            DatabaseUrl::Sqlite { .. } => panic!("parsed as sqlite"),
        }
    }

    #[test]
    fn every_credential_in_a_url_is_redacted() {
        for (text, secret) in [
            ("postgres://u@h/db?password=hunter2", "hunter2"),
            (
                "postgres://u@h/db?sslmode=require&sslpassword=s3cr3t",
                "s3cr3t",
            ),
            ("rediss://TOKEN123@cache.example:6380", "TOKEN123"),
            ("redis://:pw-only@127.0.0.1:6379/0", "pw-only"),
            ("postgres://h/db?user=bot&Password=Mixed", "Mixed"),
            ("redis://h/0?token=abc-def", "abc-def"),
            ("https://h/hook?secret=A&sig=LEAK", "LEAK"),
            ("postgres://h/db?sslcert=/keys/client.pem", "client.pem"),
        ] {
            let url = RedactedUrl::new(Url::parse(text).unwrap());
            let shown = format!("{url} {url:?}");
            assert!(!shown.contains(secret), "{text} shown as {shown}");
            assert!(shown.contains("***"), "{shown}");
            assert!(url.expose().contains(secret));
        }
        let pasted = RedactedUrl::new(
            Url::parse("https://api.telegram.org/bot123456:AAH-secret_9/getMe").unwrap(),
        );
        assert_eq!(pasted.to_string(), "https://api.telegram.org/bot***/getMe");
        let plain = RedactedUrl::new(Url::parse("postgres://h:5432/db?sslmode=require").unwrap());
        assert_eq!(plain.to_string(), "postgres://h:5432/db?sslmode=require");
    }

    #[test]
    fn urls_inside_messages_are_redacted() {
        let message = "A network error: error sending request for url \
                       (http://bot:pw-1@127.0.0.1:9/token:redacted/GetMe?token=t-2): refused; \
                       also redis://:pw-3@cache:6379/0 and at last://u:pw-4@h?key=pw-5";
        let shown = redact_urls_in(message);
        for secret in ["pw-1", "t-2", "pw-3", "pw-4", "pw-5"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        assert!(
            shown.contains("(http://***:***@127.0.0.1:9/token:redacted/GetMe?token=***): refused"),
            "{shown}"
        );
        assert_eq!(redact_urls_in("nothing here"), "nothing here");
        assert_eq!(redact_urls_in("ends with ://"), "ends with ://");
        assert_eq!(redact_urls_in("é://ü@x"), "é://***@x");
    }

    #[test]
    fn only_query_values_known_to_be_settings_are_shown() {
        let url = RedactedUrl::new(
            Url::parse("http://127.0.0.1:1/?k=Hunter2Pass&sslmode=require&x=1").unwrap(),
        );
        assert_eq!(
            url.to_string(),
            "http://127.0.0.1:1/?k=***&sslmode=require&x=***"
        );
    }

    #[test]
    fn keyword_form_secrets_are_masked() {
        for (text, shown) in [
            (
                "host=127.0.0.1 user=bob password=Hunter2Pass dbname=x",
                "host=127.0.0.1 user=*** password=*** dbname=x",
            ),
            (
                "host = db password = 'a b\\'c' port=5432",
                "host = db password = *** port=5432",
            ),
            ("password=", "password="),
            ("a=b&token=T1&mode=ro", "a=***"),
            ("mode=ro&token=T1", "mode=***"),
            ("host=db password=Tr0ub&dor", "host=db password=***"),
            ("password=ab!=xyz port=1", "password=*** port=1"),
            ("password=ab\\ cd port=1", "password=*** port=1"),
            ("password=\tS3cret", "password=\t***"),
            ("password\t=S3cret", "password\t=***"),
            ("= password=S3cret", "= ***"),
            ("no pairs at all", "no pairs at all"),
            ("=lonely", "=***"),
            ("пароль=секрет", "пароль=***"),
        ] {
            assert_eq!(masked_keyword_values(text), shown, "{text}");
        }
    }

    proptest::proptest! {
        /// Whatever the text, a value after `password=` never survives.
        #[test]
        fn a_password_in_any_text_is_masked(
            before in "[^'\\\\]{0,20}",
            blank_before in "[ \t]{0,2}",
            blank_after in "[ \t]{0,2}",
            secret in "[!-&(-\\[\\]-~]{6,20}",
            after in "( [a-z]+=[a-z0-9]+){0,3}",
        ) {
            let text = format!("{before} password{blank_before}={blank_after}{secret}{after}");
            let shown = masked_keyword_values(&text);
            // No four characters of the secret are shown together after its name.
            let tail = shown.rsplit_once("password").map_or("", |(_, tail)| tail);
            let chars: Vec<char> = secret.chars().collect();
            for piece in chars.windows(4) {
                let piece: String = piece.iter().collect();
                proptest::prop_assert!(!tail.contains(&piece), "{} in {}", piece, shown);
            }
        }
    }
}
