//! Backup and restore of a data directory. A backup is one archive (see
//! `archive`) holding a consistent copy of the database, taken with SQLite's
//! online backup while the server runs, and the age identity, plus the TLS pair
//! and the initial admin password when the data dir has them. Both sides check
//! what they copy: integrity_check, the identity against the sealed canary, and
//! (on restore) the audit chain. Blocking code: call it off the async threads.

mod archive;
mod restore;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use restore::{Restored, restore};

use crate::auth::INITIAL_PASSWORD_FILE;
use crate::datadir::LockError;
use crate::secrets::{Sealer, SecretError};

const DB: &str = "gpudock.db";
const IDENTITY: &str = "age.key";
/// Always in an archive.
const REQUIRED: [&str; 2] = [DB, IDENTITY];
/// In an archive when the data dir has them: the generated TLS pair (so that
/// clients that trust the self-signed certificate keep trusting it) and the
/// initial admin password (present only until the admin changes it). A pair
/// configured with tls.cert/tls.key lives outside the data dir and is not
/// included.
const OPTIONAL: [&str; 3] = ["tls/cert.pem", "tls/key.pem", INITIAL_PASSWORD_FILE];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no database at {0} (is --data-dir right?)")]
    NoDatabase(PathBuf),
    #[error("{0} already exists; choose another file name")]
    Exists(PathBuf),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database stayed locked for 30 s; try again")]
    Busy,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the archive {path} is damaged or not a gpudock backup: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error("the database copy fails PRAGMA integrity_check: {0}")]
    Integrity(String),
    #[error("the audit chain in the archive is broken at record {id}: {why}")]
    AuditBroken { id: i64, why: String },
    #[error(
        "{0} is not empty; pass --force to move it aside (nothing is deleted) and restore in its place"
    )]
    NotEmpty(PathBuf),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// What `create` wrote.
#[derive(Debug)]
pub struct Created {
    pub path: PathBuf,
    pub archive_bytes: u64,
    pub db_bytes: u64,
    /// Names inside the archive.
    pub files: Vec<String>,
    pub audit_records: u64,
    /// The first broken audit record, when the live chain is broken (the
    /// backup is still written: it is evidence; restore will refuse it).
    pub audit_broken: Option<(i64, String)>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Removes the files it holds when dropped (temporary files of a backup).
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A name next to `to` for temporary files (same filesystem, so the final
/// rename is atomic).
fn sibling(to: &Path, suffix: &str) -> PathBuf {
    let name = to.file_name().map_or_else(
        || "gpudock-backup".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    to.with_file_name(format!(".{name}.{}.{suffix}", std::process::id()))
}

/// Writes a backup of `data_dir` to the new file `to` (mode 0600). Safe while
/// the server runs: the copy is one read transaction (WAL readers do not block
/// the writer, and the writer does not disturb the copy).
pub fn create(data_dir: &Path, to: &Path) -> Result<Created, BackupError> {
    let db = data_dir.join(DB);
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db));
    }
    if to.exists() {
        return Err(BackupError::Exists(to.to_owned()));
    }
    let (copy, partial) = (sibling(to, "db"), sibling(to, "partial"));
    let mut cleanup = Cleanup(vec![copy.clone(), partial.clone()]);
    online_copy(&db, &copy)?;
    let conn = open_copy(&copy)?;
    check_integrity(&conn)?;
    Sealer::check(&data_dir.join(IDENTITY), &conn)?;
    let report = crate::audit::verify(&conn)?;
    drop(conn);
    let mut files = vec![(DB, copy.clone()), (IDENTITY, data_dir.join(IDENTITY))];
    files.extend(
        OPTIONAL
            .iter()
            .map(|n| (*n, data_dir.join(n)))
            .filter(|(_, p)| p.is_file()),
    );
    let out = crate::fsutil::create_private(&partial).map_err(io_at(&partial))?;
    let out = archive::write(out, &files, crate::db::now())?;
    out.sync_all().map_err(io_at(&partial))?;
    drop(out);
    if to.exists() {
        return Err(BackupError::Exists(to.to_owned()));
    }
    std::fs::rename(&partial, to).map_err(io_at(to))?;
    cleanup.0.retain(|p| p != &partial);
    Ok(Created {
        path: to.to_owned(),
        archive_bytes: file_len(to)?,
        db_bytes: file_len(&copy)?,
        files: files.iter().map(|(n, _)| (*n).to_string()).collect(),
        audit_records: report.checked,
        audit_broken: report.first_broken,
    })
}

/// Copies the live database at `db` into the new file `to` with SQLite's
/// online backup, all pages in one step: one read transaction, so the copy is
/// one consistent snapshot even while the server writes (in WAL mode a reader
/// does not block the writer; a multi-step copy would restart on every write). The source is opened
/// read-write (without create): a read-only connection could leave WAL side
/// files behind; SQLite gives any side files it creates the database file's
/// owner when run as root.
fn online_copy(db: &Path, to: &Path) -> Result<(), BackupError> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(10))?;
    drop(crate::fsutil::create_private(to).map_err(io_at(to))?);
    let mut dst = Connection::open(to)?;
    {
        use rusqlite::backup::StepResult;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // -1: every page in one step. Busy/Locked (the source briefly locked)
        // are retried until the deadline.
        while !matches!(backup.step(-1)?, StepResult::Done) {
            if std::time::Instant::now() > deadline {
                return Err(BackupError::Busy);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    dst.close().map_err(|(_, e)| BackupError::Sqlite(e))?;
    Ok(())
}

/// `PRAGMA integrity_check` must answer exactly one row, `ok`.
fn check_integrity(conn: &Connection) -> Result<(), BackupError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(BackupError::Integrity(rows.join("; ")))
    }
}

/// Opens a database copy (never creating one) for the checks.
fn open_copy(path: &Path) -> Result<Connection, BackupError> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE,
    )?)
}

/// Size of a file, for reports.
fn file_len(path: &Path) -> Result<u64, BackupError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_at(path))
}
