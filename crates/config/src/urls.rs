//! URL newtypes that cannot leak the passwords they carry.

use std::fmt;
use std::path::PathBuf;

use url::Url;

/// A URL that may carry a password. `Display` and `Debug` print it with the password (and a
/// token-like user name without password) replaced by `***`; [`RedactedUrl::expose`] gives the
/// real one to the code that connects.
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
        if shown.password().is_some() {
            // set_password only fails for URLs that cannot have credentials, and this one has.
            let _ = shown.set_password(Some("***"));
        }
        shown.to_string()
    }
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
            shown.contains("postgres://bot:***@db.internal:5432/genbot"),
            "{shown}"
        );
        match url {
            DatabaseUrl::Postgres(inner) => assert!(inner.expose().contains("hunter2")),
            DatabaseUrl::Sqlite { .. } => panic!("parsed as sqlite"),
        }
    }
}
