//! The single SQLite writer: one thread, one connection, group commit.
//!
//! SQLite allows one writer at a time; many connections racing for the write lock would sleep
//! in the busy handler. Instead every write is sent to this thread, which takes all pending
//! writes, runs each inside its own savepoint (so one failing write does not undo the others)
//! and commits them together. A caller's future resolves only after its batch committed, so a
//! returned write is as durable as the `synchronous` setting makes any commit.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StoreError;

/// Most writes committed in one transaction; bounds the latency one batch adds to the next.
const MAX_BATCH: usize = 512;

/// Called with the batch's commit outcome once the batch is done.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs one write inside a savepoint, or (given an error) reports that it could not run; says
/// whether it succeeded and how to report back.
type WriteOp = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Completion) + Send>;

/// Handle to the writer thread. Dropping every handle ends the thread after pending writes.
#[derive(Clone)]
pub(super) struct Writer {
    sender: mpsc::Sender<WriteOp>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer thread owning `conn`.
    pub(super) fn spawn(conn: Connection) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel::<WriteOp>();
        thread::Builder::new()
            .name("genbot-sqlite-writer".into())
            .spawn(move || run(conn, receiver))
            .map_err(|e| StoreError::Connect {
                backend: "sqlite",
                location: "writer thread".into(),
                reason: e.to_string(),
            })?;
        Ok(Writer { sender })
    }

    /// Runs `write` on the writer connection and resolves after its batch committed.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let op: WriteOp = Box::new(move |conn| {
            let result = conn.and_then(write);
            let succeeded = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                // The caller may have gone away (canceled future); nothing to report then.
                let _ = reply.send(commit.and(result));
            });
            (succeeded, completion)
        });
        self.sender
            .send(op)
            .map_err(|_| StoreError::WriterStopped)?;
        outcome.await.map_err(|_| StoreError::WriterStopped)?
    }
}

fn run(conn: Connection, receiver: mpsc::Receiver<WriteOp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut completions = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = receiver.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Err(e) = execute(&conn, "BEGIN IMMEDIATE") {
            let reason = e.to_string();
            tracing::error!(error = %reason, "sqlite writer could not begin a transaction");
            for op in batch.drain(..) {
                let (_, completion) = op(Err(StoreError::Commit(reason.clone())));
                completion(Ok(()));
            }
            continue;
        }
        for op in batch.drain(..) {
            completions.push(run_in_savepoint(&conn, op));
        }
        let commit = execute(&conn, "COMMIT").map_err(|e| {
            let reason = e.to_string();
            tracing::error!(error = %reason, "sqlite writer commit failed");
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "sqlite writer rollback failed");
            }
            reason
        });
        for completion in completions.drain(..) {
            completion(commit.clone().map_err(StoreError::Commit));
        }
    }
}

fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_in_savepoint(conn: &Connection, op: WriteOp) -> Completion {
    if let Err(e) = execute(conn, "SAVEPOINT write_op") {
        let (_, completion) = op(Err(StoreError::Sqlite(e)));
        return completion;
    }
    let (succeeded, completion) = op(Ok(conn));
    let closed = if succeeded {
        execute(conn, "RELEASE write_op")
    } else {
        execute(conn, "ROLLBACK TO write_op").and_then(|()| execute(conn, "RELEASE write_op"))
    };
    if let Err(e) = closed {
        tracing::error!(error = %e, "sqlite writer could not close a savepoint");
    }
    completion
}
