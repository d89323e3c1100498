//! The database, looked at read-only: reachable, schema version against this build's, the
//! PostgreSQL role's CREATEDB right, and for SQLite the disk under the file (local, not a
//! network or memory file system, with room to grow).

use std::path::Path;

use genbot_config::{DatabaseUrl, Settings};
use genbot_store::inspect::{inspect, Inspection};

use super::clock::{judge_offset, Offset};
use super::Check;

/// Free space below which SQLite's next checkpoint or VACUUM may fail.
const FREE_FAIL_BYTES: u64 = 100 << 20;
/// Free space below which an operator should act before it runs out.
const FREE_WARN_BYTES: u64 = 1 << 30;

pub(super) struct StorageChecks {
    pub(super) checks: Vec<Check>,
    /// PostgreSQL's clock against ours (leases compare the two), reported with the clocks.
    pub(super) clock: Option<Check>,
}

pub(super) async fn checks(settings: &Settings) -> StorageChecks {
    let mut checks = Vec::new();
    if let DatabaseUrl::Sqlite { path } = &settings.database_url {
        checks.push(disk(path));
    }
    let found = match inspect(&settings.database_url).await {
        Ok(found) => found,
        Err(e) => {
            checks.push(Check::fail(
                "database.reachable",
                e.to_string(),
                match settings.database_url {
                    DatabaseUrl::Postgres(_) => "check that PostgreSQL runs, DATABASE_URL's host, port, user and password, and pg_hba.conf for this host",
                    DatabaseUrl::Sqlite { .. } => "check DATABASE_URL's path and its permissions for the user genbot runs as",
                },
            ));
            return StorageChecks {
                checks,
                clock: None,
            };
        }
    };
    checks.push(Check::ok(
        "database.reachable",
        format!("{} at {}", found.backend, settings.database_url),
    ));
    checks.push(schema(&found));
    if let Some(can_create) = found.can_create_databases {
        checks.push(if can_create {
            Check::ok("database.rights", "the role may create databases (the fault tests' scratch databases)")
        } else {
            Check::warn(
                "database.rights",
                "the role lacks CREATEDB: `genbot bench faults --database-url` cannot create its scratch databases (the bot itself does not need it)",
                "ALTER ROLE <role> CREATEDB, or run the fault tests with another role",
            )
        });
    }
    let clock = found.server_clock.map(|(server, asked)| {
        let offset = Offset {
            seconds: (server - asked).num_milliseconds() as f64 / 1000.0,
            // now() has microseconds; the round trip is the uncertainty, taken as 0.5 s at most.
            uncertainty: 0.5,
        };
        judge_offset("clock.database", "PostgreSQL's now()", offset)
    });
    StorageChecks { checks, clock }
}

fn schema(found: &Inspection) -> Check {
    const NAME: &str = "database.schema";
    let (have, want) = (found.schema_version, found.latest_version);
    if found.missing_file {
        return Check::ok(NAME, format!("the SQLite file does not exist yet: the first start creates it at schema version {want}"));
    }
    if have > want {
        return Check::fail(
            NAME,
            format!("schema version {have} is newer than this build's {want}: a newer genbot migrated it"),
            "run the newer genbot, or restore a backup taken before its migration",
        );
    }
    if have < want {
        return Check::warn(
            NAME,
            format!("schema version {have}, this build migrates to {want} at start"),
            "expected before an upgrade's first start; back the database up first",
        );
    }
    Check::ok(NAME, format!("schema version {have}, current"))
}

/// File systems whose locking SQLite cannot rely on (its docs: do not use it over a network
/// file system), or which lose the file at reboot.
fn unsuitable_file_system(magic: i64) -> Option<&'static str> {
    Some(match magic {
        0x6969 => "NFS",
        0x517B | 0xFF53_4D42 | 0xFE53_4D42 => "SMB/CIFS",
        0x6573_5546 => "FUSE (sshfs, a cloud bucket…)",
        0x0102_1997 => "9p",
        0x00C3_6400 => "CephFS",
        0x0116_1970 => "GFS2",
        0x5346_414F => "AFS",
        0x0102_1994 => "tmpfs (lost at reboot)",
        _ => return None,
    })
}

fn disk(path: &Path) -> Check {
    const NAME: &str = "sqlite.disk";
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let (vfs, fs) = match (rustix::fs::statvfs(&dir), rustix::fs::statfs(&dir)) {
        (Ok(vfs), Ok(fs)) => (vfs, fs),
        (Err(e), _) | (_, Err(e)) => {
            return Check::fail(
                NAME,
                format!("cannot look at {}: {e}", dir.display()),
                "create the directory and let the user genbot runs as write to it (systemd: StateDirectory=)",
            )
        }
    };
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let found = format!(
        "{} on {}: {} free, database {}",
        path.display(),
        dir.display(),
        megabytes(free),
        megabytes(size)
    );
    #[allow(clippy::useless_conversion)] // f_type's width differs between targets
    let magic = i64::from(fs.f_type);
    if let Some(kind) = unsuitable_file_system(magic) {
        return Check::fail(
            NAME,
            format!("{found}; the file system is {kind}"),
            "put the SQLite file on a local disk, or use PostgreSQL (DATABASE_URL=postgres://…)",
        );
    }
    if free < FREE_FAIL_BYTES {
        return Check::fail(
            NAME,
            found,
            "free disk space: SQLite's writes and checkpoints fail when it runs out",
        );
    }
    if free < FREE_WARN_BYTES {
        return Check::warn(
            NAME,
            found,
            "free disk space before it runs out (less than 1 GB left)",
        );
    }
    Check::ok(NAME, format!("{found}; local file system"))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn a_temporary_directory_is_a_local_disk() {
        let dir = tempfile::tempdir().unwrap();
        let check = disk(&dir.path().join("genbot.db"));
        // /tmp may be tmpfs on some machines: then it is refused, as it should be.
        assert!(
            check.status == Status::Ok || check.detail.contains("tmpfs"),
            "{check:?}"
        );
        assert!(check.detail.contains("free"), "{check:?}");
    }

    #[test]
    fn a_missing_directory_fails() {
        let check = disk(Path::new("/nonexistent-genbot-dir/genbot.db"));
        assert_eq!(check.status, Status::Fail, "{check:?}");
    }

    #[test]
    fn network_file_systems_are_named() {
        assert_eq!(unsuitable_file_system(0x6969), Some("NFS"));
        assert_eq!(unsuitable_file_system(0xEF53), None); // ext4
    }

    #[test]
    fn schema_versions_are_compared() {
        let at = |have, missing| Inspection {
            backend: "sqlite",
            schema_version: have,
            latest_version: 13,
            missing_file: missing,
            can_create_databases: None,
            server_clock: None,
        };
        assert_eq!(schema(&at(13, false)).status, Status::Ok);
        assert_eq!(schema(&at(12, false)).status, Status::Warn);
        assert_eq!(schema(&at(14, false)).status, Status::Fail);
        assert_eq!(schema(&at(0, true)).status, Status::Ok);
    }
}
