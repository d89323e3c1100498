//! Scratch databases never outlive their handle, even when the run holding one fails.

use genbot_config::RedactedUrl;
use genbot_store::scratch::ScratchDatabase;
use sqlx::Connection as _;

use crate::helpers::postgres_server as server;

async fn exists(server: &RedactedUrl, name: &str) -> bool {
    let options: sqlx::postgres::PgConnectOptions = server.expose().parse().unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_scratch_database_is_dropped_when_its_run_panics() {
    let Some(server) = server("a_scratch_database_is_dropped_when_its_run_panics") else {
        return;
    };
    let (named, name) = tokio::sync::oneshot::channel();
    let holder = server.clone();
    // A test that fails while holding its database: the handle is dropped while unwinding.
    let run = tokio::spawn(async move {
        let database = ScratchDatabase::create(&holder)
            .await
            .map_err(|e| e.to_string());
        let held = database
            .as_ref()
            .map(|d| d.name().to_owned())
            .map_err(Clone::clone);
        named.send(held).unwrap();
        if let Ok(database) = database {
            panic!("the run failed while holding {}", database.name());
        }
    });
    let name = name.await.unwrap().expect("create a scratch database");
    assert!(run.await.unwrap_err().is_panic());
    assert!(!exists(&server, &name).await, "{name} was left behind");
}

#[tokio::test]
async fn drop_now_drops_the_database() {
    let Some(server) = server("drop_now_drops_the_database") else {
        return;
    };
    let database = ScratchDatabase::create(&server).await.unwrap();
    let name = database.name().to_owned();
    assert!(exists(&server, &name).await);
    // Debug shows the name, never the connect options (they hold the password).
    let shown = format!("{database:?}");
    assert!(
        shown.contains(&name) && !shown.contains("password"),
        "{shown}"
    );
    database.drop_now().await.unwrap();
    assert!(!exists(&server, &name).await);
}
