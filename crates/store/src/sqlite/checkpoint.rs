//! WAL checkpoints, off the writer thread.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses `wal_autocheckpoint`
//! pages: that commit copies the WAL into the database file and fsyncs both, and every write
//! queued behind it (an inbox record the poller waits for, say) waits too. Under a flood of
//! small commits that was a stall every second or so. So the writer's own checkpoint is set far
//! out, as a backstop only, and this thread runs a `PASSIVE` checkpoint on its own connection
//! every [`EVERY`]: a passive checkpoint never waits for the writer or the readers, and the
//! writer keeps appending to the WAL meanwhile.
//!
//! Durability is unchanged: a commit is in the WAL when it returns, whoever copies it on.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the WAL is copied into the database file.
const EVERY: Duration = Duration::from_millis(100);
/// The writer's own checkpoint, should this thread fall behind (pages of the WAL: ~400 MB).
pub(super) const WRITER_BACKSTOP_PAGES: u32 = 100_000;

/// Keeps the checkpointing thread alive; it ends once every clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct Checkpointer {
    _alive: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts the thread checkpointing the database at `path`.
    pub(super) fn spawn(
        path: &Path,
        busy_timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let conn = super::connection::open(path, true, busy_timeout)?;
        let (alive, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("genbot-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| StoreError::Connect {
                backend: "sqlite",
                location: "checkpoint thread".into(),
                reason: e.to_string(),
            })?;
        Ok(Checkpointer { _alive: alive })
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
        // A WAL copied already costs a look at its header: no copy, no fsync.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "sqlite checkpoint failed; the next one tries again");
        }
    }
}
