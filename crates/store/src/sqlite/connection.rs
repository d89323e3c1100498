//! Opening SQLite connections and lending the read connections out.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::waiting::Waiting;
use crate::{PoolStats, StoreError};

/// Opens a connection with genbot's pragmas. `writer` selects the read-write role; a lock held
/// by another is waited for up to `busy_timeout`.
pub(super) fn open(
    path: &Path,
    writer: bool,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let connect_error = |e: rusqlite::Error| StoreError::Connect {
        backend: "sqlite",
        location: path.display().to_string(),
        reason: e.to_string(),
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(connect_error)?;
    conn.busy_timeout(busy_timeout).map_err(connect_error)?;
    // WAL: readers never block the writer nor each other. synchronous=NORMAL in WAL mode keeps
    // every commit safe from a process crash and fsyncs at checkpoints; a power loss can drop the
    // last commits but never corrupts the file. See `SqliteStore::durability`.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32000;
         PRAGMA mmap_size = 268435456;",
    )
    .map_err(connect_error)?;
    if !writer {
        // No memory map for readers: SQLite drops a connection's whole map (a munmap, with its
        // TLB shootdown, then page faults to map it again) at every read that follows another
        // connection's commit, which under the writer's steady commits is nearly every read.
        // Reading pages with pread costs less (measured: ~5 % of the process's CPU under the
        // 10,000-user crowd). The writer, whose own commits do not unmap it, keeps its map.
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA mmap_size = 0;")
            .map_err(connect_error)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A fixed set of read-only connections. A task first takes a permit (waiting if all are
/// lent), then a connection, which it uses without awaiting and gives back at once.
pub(super) struct ReadPool {
    connections: Mutex<Vec<Connection>>,
    permits: Semaphore,
    size: u32,
    waiting: AtomicU32,
}

impl ReadPool {
    pub(super) fn open(path: &Path, size: u32, busy_timeout: Duration) -> Result<Self, StoreError> {
        let connections = (0..size)
            .map(|_| open(path, false, busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReadPool {
            connections: Mutex::new(connections),
            permits: Semaphore::new(size as usize),
            size,
            waiting: AtomicU32::new(0),
        })
    }

    /// Runs `read` on a pooled connection.
    ///
    /// The query runs on the calling task's thread: a point read from SQLite's page cache takes
    /// a microsecond or two, far less than handing it to another thread would cost, and WAL
    /// readers never wait on locks. Long scans do not belong here.
    ///
    /// Because such a read never returns `Pending`, a task looping over reads would never give
    /// its thread back (starving timers and other tasks); `consume_budget` makes it yield once
    /// its cooperative budget is spent, as tokio's own resources do.
    pub(super) async fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        tokio::task::consume_budget().await;
        let permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = Waiting::enter(&self.waiting);
                self.permits
                    .acquire()
                    .await
                    .map_err(|_| StoreError::WriterStopped)?
            }
        };
        // The permit guarantees a connection is in the vector.
        let conn = self
            .connections
            .lock()
            .pop()
            .ok_or(StoreError::WriterStopped)?;
        let result = read(&conn);
        self.connections.lock().push(conn);
        drop(permit);
        result
    }

    pub(super) fn stats(&self) -> PoolStats {
        let available = self.permits.available_permits() as u32;
        PoolStats {
            size: self.size,
            open: self.size,
            in_use: self.size.saturating_sub(available),
            waiting: Some(self.waiting.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    /// `.cargo/config.toml` builds the bundled SQLite without the global page-cache and
    /// allocation mutexes; a build that lost those flags is caught here.
    #[test]
    fn sqlite_is_built_without_global_mutexes_on_the_page_cache_and_allocations() {
        let conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
        let mut stmt = conn.prepare("PRAGMA compile_options").expect("pragma");
        let options: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .expect("options")
            .collect::<Result<_, _>>()
            .expect("option text");
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }
}
