//! Test stores: a fresh SQLite file per test, and — when `DATABASE_URL` names a PostgreSQL
//! server — a fresh schema per test, dropped afterwards.

use std::io::Write;

use genbot_config::{DatabaseUrl, RedactedUrl};
use genbot_store::{NewUser, PgStore, SqliteStore, Store, UserId};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

/// Registers user `id` with `credits` (no username, no language).
pub(crate) async fn register(store: &Store, id: i64, credits: i64) -> UserId {
    store
        .upsert_user(NewUser {
            id: UserId(id),
            username: None,
            language: None,
            initial_credits: credits,
        })
        .await
        .expect("register a user");
    UserId(id)
}

/// A store for one test, with whatever it needs to clean up after itself.
pub(crate) struct TestStore {
    pub(crate) store: Store,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(PgConnectOptions, String)>,
}

pub(crate) fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("test.db"), 4).expect("open sqlite");
    TestStore {
        store: Store::Sqlite(store),
        _dir: Some(dir),
        schema: None,
    }
}

/// Prints to the real stderr, which libtest does not capture, so a skip is always visible.
pub(crate) fn say_skipped(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// The PostgreSQL server `DATABASE_URL` names, or `None` (with a visible note) when it names
/// none. Under CI (`CI` set) a missing server is a failure, not a skip.
pub(crate) fn postgres_server(test: &str) -> Option<RedactedUrl> {
    match std::env::var("DATABASE_URL")
        .ok()
        .map(|u| DatabaseUrl::parse(&u))
    {
        Some(Ok(DatabaseUrl::Postgres(url))) => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but DATABASE_URL does not name a PostgreSQL server"
            );
            say_skipped(
                test,
                "set DATABASE_URL=postgres://… to run the PostgreSQL variant",
            );
            None
        }
    }
}

/// A PostgreSQL store in a fresh schema on [`postgres_server`], or `None` when there is none.
pub(crate) async fn postgres(test: &str) -> Option<TestStore> {
    let url = postgres_server(test)?;
    let base: PgConnectOptions = url.expose().parse().expect("postgres url");
    let schema = format!("genbot_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect_with(&base)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("create schema");
    let options = base.clone().options([("search_path", schema.as_str())]);
    let store = PgStore::connect_with(options, 8, "test")
        .await
        .expect("connect test store");
    Some(TestStore {
        store: Store::Postgres(store),
        _dir: None,
        schema: Some((base, schema)),
    })
}

impl TestStore {
    /// The PostgreSQL options selecting this test's schema (`None` on SQLite).
    pub(crate) fn pg_options(&self) -> Option<PgConnectOptions> {
        self.schema
            .as_ref()
            .map(|(base, schema)| base.clone().options([("search_path", schema.as_str())]))
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some((options, schema)) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect_with(&options).await?;
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            say_skipped("cleanup", "could not drop a test schema");
        }
    }
}

/// Defines each listed async test twice: once on SQLite, once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = crate::helpers::sqlite();
                    super::$name(&test.store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(test) = crate::helpers::postgres(stringify!($name)).await {
                        super::$name(&test.store).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
