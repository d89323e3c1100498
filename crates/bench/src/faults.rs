//! The machinery of the fault tests: the real bot as child processes (`genbot serve`) on a
//! stage of its own — both mocks, a database no deployment uses, Redis under a key prefix of
//! its own, fault proxies in front of the database and Redis — a steady load of simulated
//! users, and the audit that counts what was lost, duplicated or mis-charged.
//!
//! It never starts a bot on the operator's data: on PostgreSQL the stage is a scratch database
//! on the same server (created and dropped here), on the embedded default a temporary SQLite
//! file. The checks themselves are in `checks::faults`.

pub(crate) mod audit;
pub(crate) mod corpus;
pub(crate) mod load;
pub(crate) mod process;
pub(crate) mod stage;

/// Why a fault test could not run (it is then graded NEEDS OPTIMIZATION with this reason).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FaultError {
    #[error("mock server: {0}")]
    Mock(std::io::Error),
    #[error("temporary directory: {0}")]
    TempDir(std::io::Error),
    #[error("database: {0}")]
    Store(#[from] genbot_store::StoreError),
    #[error("cannot start `{program} serve`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "replica {replica} did not become healthy within {waited_s:.0} s; its log ends: {log}"
    )]
    NotHealthy {
        replica: String,
        waited_s: f64,
        log: String,
    },
    #[error("replica {replica} exited on its own ({status}); its log ends: {log}")]
    Exited {
        replica: String,
        status: String,
        log: String,
    },
    #[error("Redis at {0}: {1}")]
    Redis(String, String),
}
