//! The database handle: opens SQLite with the house PRAGMAs, runs the embedded
//! refinery migrations, and runs all rusqlite work on blocking threads. Writes go
//! through one connection (serialized); reads use a small pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

mod memo;

pub use memo::per_request;

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration: {0}")]
    Migration(#[from] refinery::Error),
    #[error("database worker thread failed: {0}")]
    Join(String),
    #[error("database lock poisoned")]
    Poisoned,
    #[error("database file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Cheap to clone; all clones share the writer and the reader pool.
#[derive(Clone)]
pub struct Db {
    path: Option<PathBuf>,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit: a write waits here (not on a blocking thread parked on
    /// the writer's lock), so a burst of writes holds no threads.
    write_turn: Arc<tokio::sync::Semaphore>,
    /// `READERS` permits: at most that many reads run at once, each on a
    /// kept connection. Without the bound, 50 concurrent requests opened
    /// (and parsed the schema of) a new connection per read and parked 200
    /// blocking threads: 200 req/s for the instance list (issue 11).
    read_turn: Arc<tokio::sync::Semaphore>,
    /// Answers of repeated reads, kept until the next commit (see
    /// [`Db::cached`]).
    memo: Arc<memo::Memo>,
}

/// Read connections kept open, and reads running at once.
const READERS: usize = 4;

/// Waits for a permit of `sem` (the write or read turn), held by the
/// blocking task it is moved into.
async fn turn(
    sem: &Arc<tokio::sync::Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, DbError> {
    sem.clone()
        .acquire_owned()
        .await
        .map_err(|_| DbError::Poisoned)
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // A signed-in page alone runs about ten cached statements (session,
    // user, permission decisions, banners, its list and count); rusqlite's
    // default of 16 per connection made the background loops' statements
    // push them out.
    conn.set_prepared_statement_cache_capacity(48);
    Ok(())
}

/// Applies the embedded migrations to `conn`; used by `Db::open` and store tests.
pub fn migrate(conn: &mut Connection) -> Result<usize, DbError> {
    migrate_to(conn, refinery::Target::Latest)
}

/// Applies the migrations up to `target`. Foreign-key enforcement is off
/// while they run (it cannot change inside their transactions), so that a
/// migration may rebuild a table others reference, as SQLite's procedure
/// for schema changes asks; afterwards every key is checked and the
/// connection's setting is restored.
pub fn migrate_to(conn: &mut Connection, target: refinery::Target) -> Result<usize, DbError> {
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let report = embedded::migrations::runner().set_target(target).run(conn);
    let broken = foreign_key_violations(conn);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    let report = report?;
    let broken = broken?;
    if let Some(first) = broken.first() {
        return Err(DbError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!(
                "after migrating, {} row(s) break a foreign key (first: {first})",
                broken.len()
            )),
        )));
    }
    Ok(report.applied_migrations().len())
}

/// `PRAGMA foreign_key_check`: each violation as `table rowid -> parent`.
fn foreign_key_violations(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "{} {} -> {}",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?.unwrap_or_default(),
            r.get::<_, String>(2)?
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A fresh in-memory database with every migration applied (store tests).
pub fn memory() -> Result<Connection, DbError> {
    let mut conn = Connection::open_in_memory()?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// The side files SQLite keeps beside a database in WAL mode (and the
/// rollback journal of a migration).
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Makes the database at `path` private (0600), creating it so if absent:
/// it holds password hashes, sessions and sealed secrets. SQLite creates
/// its side files with the database file's mode; those an older version
/// left readable are tightened too.
fn make_private(path: &Path) -> Result<(), DbError> {
    let io = |p: &Path| {
        let path = p.to_owned();
        move |source| DbError::File { path, source }
    };
    match crate::fsutil::create_private(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(path)(e)),
    }
    #[cfg(unix)]
    for suffix in std::iter::once("").chain(SIDE_FILES) {
        use std::os::unix::fs::PermissionsExt;
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let p = PathBuf::from(name);
        match std::fs::metadata(&p) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .map_err(io(&p))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    Ok(())
}

impl Db {
    /// Opens (creating, private) the database file and migrates it to the
    /// latest schema.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        make_private(path)?;
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let watcher = open_reader(path)?;
        Ok(Self {
            path: Some(path.to_owned()),
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            write_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            read_turn: Arc::new(tokio::sync::Semaphore::new(READERS)),
            memo: Arc::new(memo::Memo::new(Some(watcher))),
        })
    }

    /// One migrated in-memory connection serving reads and writes (tests).
    pub fn open_memory() -> Result<Self, DbError> {
        Ok(Self {
            path: None,
            writer: Arc::new(Mutex::new(memory()?)),
            readers: Arc::new(Mutex::new(Vec::new())),
            write_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            read_turn: Arc::new(tokio::sync::Semaphore::new(READERS)),
            memo: Arc::new(memo::Memo::new(None)),
        })
    }

    /// Runs `f` on the writer connection on a blocking thread. Callers that read
    /// then modify open `BEGIN IMMEDIATE` transactions inside `f`.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        self.on_writer(true, f).await
    }

    /// Runs `f` on the writer connection in its turn; `writes`: whether `f`
    /// may write (then kept answers are dropped after it).
    async fn on_writer<T, E, F>(&self, writes: bool, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let (writer, memo) = (self.writer.clone(), self.memo.clone());
        let turn = turn(&self.write_turn).await.map_err(E::from)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut conn = writer.lock().map_err(|_| E::from(DbError::Poisoned))?;
            let before = conn.total_changes();
            let out = f(&mut conn);
            if writes {
                memo.wrote(conn.total_changes() != before);
            }
            out
        })
        .await
        .map_err(|e| E::from(DbError::Join(e.to_string())))?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let Some(path) = self.path.clone() else {
            // In-memory databases cannot be shared across connections.
            return self.on_writer(false, move |c| f(c)).await;
        };
        let readers = self.readers.clone();
        let turn = turn(&self.read_turn).await.map_err(E::from)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let pooled = readers
                .lock()
                .map_err(|_| E::from(DbError::Poisoned))?
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&path).map_err(E::from)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < READERS
            {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| E::from(DbError::Join(e.to_string())))?
    }

    /// [`Db::read`] for an answer that `key` names entirely (with every
    /// input of `f`: who asks, their scope, filters, page...), kept in
    /// memory until anything is committed to the database, by this process
    /// or another, or the second of [`now`] changes (see `memo`). Never
    /// staler than a read: a commit is seen by the next lookup.
    pub async fn cached<T, E, F>(&self, key: String, f: F) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let Some(slot) = self
            .memo
            .slot(std::any::TypeId::of::<T>(), key)
            .map_err(E::from)?
        else {
            return self.read(f).await.map(Arc::new);
        };
        let v = slot
            .get_or_try_init(|| async {
                let v: Arc<dyn std::any::Any + Send + Sync> = Arc::new(self.read(f).await?);
                Ok::<_, E>(v)
            })
            .await?;
        memo::typed(v).map_err(E::from)
    }

    /// Closes the database at shutdown: drops the idle readers, checkpoints the
    /// WAL into the main file (so the file at rest holds everything) and closes
    /// the writer when this is the last handle. Returns whether it was the last
    /// (if not, SQLite closes the connection when the other handles drop).
    pub async fn close(self) -> Result<bool, DbError> {
        let Db {
            writer, readers, ..
        } = self;
        tokio::task::spawn_blocking(move || {
            readers.lock().map_err(|_| DbError::Poisoned)?.clear();
            let busy: i64 = writer.lock().map_err(|_| DbError::Poisoned)?.query_row(
                "PRAGMA wal_checkpoint(TRUNCATE)",
                [],
                |r| r.get(0),
            )?;
            if busy != 0 {
                log::warn!("database: WAL checkpoint incomplete (a reader is still active)");
            }
            let Ok(writer) = Arc::try_unwrap(writer) else {
                return Ok(false);
            };
            let conn = writer.into_inner().map_err(|_| DbError::Poisoned)?;
            conn.close().map_err(|(_, e)| DbError::from(e))?;
            Ok(true)
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }
}

fn open_reader(path: &Path) -> Result<Connection, DbError> {
    let c = Connection::open(path)?;
    configure(&c)?;
    Ok(c)
}

/// Seconds since the Unix epoch; the one clock the stores use.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether `e` is a UNIQUE constraint violation (turned into a field error by
/// `error::on_unique`).
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// Whether `e` is a schema trigger's `RAISE(ABORT, 'raised')` (a rule the
/// schema keeps, such as an instance's tenant being its user's).
pub fn is_raised(e: &rusqlite::Error, raised: &str) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, Some(m))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER && m == raised
    )
}

/// Whether `e` is a FOREIGN KEY violation (a row still in use).
pub fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    )
}

/// Gives a fieldless enum its text form, one literal per variant, used alike
/// in a TEXT column (`ToSql`/`FromSql`), in JSON (`Serialize`) and in logs
/// (`Display`): `as_str`, `parse` and `ALL`. A text outside the set read
/// from the database is an error, or the `else` variant when one is named
/// (for values that come from outside, such as Docker's container states).
#[macro_export]
macro_rules! text_enum {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        $crate::text_enum!(@common $t { $($v => $s),+ });
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $t::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {s:?}", stringify!($t)).into(),
                    )
                })
            }
        }
    };
    ($t:ident else $fallback:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        $crate::text_enum!(@common $t { $($v => $s),+ });
        impl $t {
            /// The variant for `s`, or the fallback for a text outside the set.
            pub fn parse_or_fallback(s: &str) -> Self {
                $t::parse(s).unwrap_or($t::$fallback)
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str().map($t::parse_or_fallback)
            }
        }
    };
    (@common $t:ident { $($v:ident => $s:literal),+ }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s),+
                }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($t::$v),)+
                    _ => None,
                }
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables whose ids name things (URLs, Docker objects, the audit).
    const NEVER_REUSED: [&str; 9] = [
        "tenants",
        "users",
        "api_tokens",
        "images",
        "specs",
        "nodes",
        "instances",
        "ssh_keys",
        "remote_sessions",
    ];

    fn schema_of(c: &Connection, what: &str) -> Vec<String> {
        let mut stmt = c
            .prepare(&format!(
                "SELECT name || ': ' || sql FROM sqlite_master WHERE type = '{what}' AND sql IS NOT NULL ORDER BY name"
            ))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn foreign_keys(c: &Connection, table: &str) -> Vec<(String, String, String, String)> {
        let mut stmt = c
            .prepare(&format!("PRAGMA foreign_key_list({table})"))
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(2)?, r.get(3)?, r.get(4)?, r.get(6)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// V12 rebuilds the tables with AUTOINCREMENT: rows (and what cascades
    /// from them) survive, keys, indexes and triggers are as before, and a
    /// deleted highest id never comes back.
    #[test]
    fn ids_are_never_reused_and_the_rebuild_keeps_rows_keys_and_indexes() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate_to(&mut c, refinery::Target::Version(11)).unwrap();
        let keys_before: Vec<_> = NEVER_REUSED.iter().map(|t| foreign_keys(&c, t)).collect();
        let indexes_before = schema_of(&c, "index");
        let triggers_before = schema_of(&c, "trigger");
        c.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at) VALUES (1, 'A', 'A', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at)
               VALUES (1, 'root', 'admin', NULL, 'h', 0, 0), (2, 'a', 'customer_member', 1, 'h', 0, 0);
             INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) VALUES (2, 't', 'x', 'p', 0);
             INSERT INTO ssh_keys (user_id, name, algorithm, public_key, fingerprint, created_at)
               VALUES (2, 'k', 'ssh-ed25519', 'ssh-ed25519 AAAA', 'SHA256:x', 0);
             INSERT INTO images (name, address, created_at, updated_at) VALUES ('i', 'busybox', 0, 0);
             INSERT INTO specs (name, gpu_model, created_at, updated_at) VALUES ('s', 'm', 0, 0);
             INSERT INTO nodes (name, public_ip, private_ip, created_at, updated_at) VALUES ('n', '1', '1', 0, 0);
             INSERT INTO orphan_containers VALUES (1, 'c', 'n', '9', 'exited', 0, 0);
             INSERT INTO instances (name, image_id, spec_id, node_id, user_id, tenant_id, status, gpu_count, cpu_cores,
               memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at)
               VALUES ('x', 1, 1, 1, 2, 1, 'running', 0, 1, 1, 0, 0, 0, 0);
             INSERT INTO remote_sessions (user_id, username, instance_id, instance_name, node_id, node_name,
               container_id, protocol, source_ip, status, started_at, last_activity_at, ended_at, end_reason)
               VALUES (2, 'a', 1, 'x', 1, 'n', 'c', 'ssh', 'ip', 'closed', 0, 0, 5, 'user_close'),
                      (2, 'a', 1, 'x', 1, 'n', 'c', 'ssh', 'ip', 'active', 0, 0, NULL, NULL);",
        )
        .unwrap();
        migrate_to(&mut c, refinery::Target::Version(12)).unwrap();
        let on: bool = c
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(on, "enforcement is back on after migrating");
        let count = |t: &str| -> i64 {
            c.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        for (t, n) in [
            ("users", 2),
            ("ssh_keys", 1),
            ("orphan_containers", 1),
            ("instances", 1),
        ] {
            assert_eq!(count(t), n, "{t} kept its rows (nothing cascaded)");
        }
        for (t, before) in NEVER_REUSED.iter().zip(&keys_before) {
            assert_eq!(&foreign_keys(&c, t), before, "{t}: the same foreign keys");
            let sql: String = c
                .query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [t], |r| {
                    r.get(0)
                })
                .unwrap();
            assert!(sql.contains("AUTOINCREMENT"), "{t}: {sql}");
        }
        let indexes_after = schema_of(&c, "index");
        for i in &indexes_before {
            assert!(indexes_after.contains(i), "index lost or changed: {i}");
        }
        assert_eq!(schema_of(&c, "trigger"), triggers_before);
        assert!(
            c.execute(
                "UPDATE users SET tenant_id = NULL, role = 'admin' WHERE id = 2",
                []
            )
            .is_err(),
            "V11's rule still holds: a user with instances keeps their tenant"
        );
        // Names and tags of the rows from before are the ones used then.
        let install: String = c
            .query_row("SELECT value FROM meta WHERE key = 'install_id'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let (cn, vn): (String, String) = c
            .query_row(
                "SELECT container_name, volume_name FROM instances",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (cn, vn),
            (
                format!("gpudock-{install}-1"),
                format!("gpudock-{install}-1-data")
            )
        );
        let swept: Vec<(String, Option<i64>)> = c
            .prepare("SELECT exec_tag, swept_at FROM remote_sessions ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            swept,
            [
                (format!("{install}-s1"), Some(5)),
                (format!("{install}-s2"), None)
            ]
        );
        // The highest id deleted is not given again.
        c.execute("DELETE FROM instances WHERE id = 1", []).unwrap();
        c.execute(
            "INSERT INTO instances (name, image_id, spec_id, node_id, user_id, tenant_id, status, gpu_count, \
             cpu_cores, memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at) \
             VALUES ('y', 1, 1, 1, 2, 1, 'creating', 0, 1, 1, 0, 0, 0, 0)",
            [],
        )
        .unwrap();
        assert_eq!(c.last_insert_rowid(), 2);
        c.execute("DELETE FROM ssh_keys", []).unwrap();
        c.execute(
            "INSERT INTO ssh_keys (user_id, name, algorithm, public_key, fingerprint, created_at) \
             VALUES (2, 'k', 'ssh-ed25519', 'ssh-ed25519 AAAA', 'SHA256:x', 0)",
            [],
        )
        .unwrap();
        assert_eq!(c.last_insert_rowid(), 2);
        // Keys are enforced again.
        assert!(is_foreign_key_violation(
            &c.execute("DELETE FROM users WHERE id = 2", []).unwrap_err()
        ));
        migrate(&mut c).unwrap();
        // V14 (after the rebuild) gives the tokens from before the `api` scope.
        let scope: String = c
            .query_row("SELECT scope FROM api_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(scope, "api");
        // V15 counts what the instances there are hold, per node and tenant.
        let usage = |sql: &str| -> (i64, i64) {
            c.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
        };
        assert_eq!(
            usage("SELECT instances, cpu_cores FROM node_usage WHERE node_id = 1"),
            (1, 1)
        );
        assert_eq!(
            usage("SELECT instances, memory_gb FROM tenant_usage WHERE tenant_id = 1"),
            (1, 1)
        );
    }

    fn columns(c: &Connection, table: &str) -> Vec<String> {
        c.prepare(&format!("PRAGMA table_info({table})"))
            .unwrap()
            .query_map([], |r| r.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// V16 (files) and V17 (reach) both rebuild `remote_sessions` for its
    /// protocol CHECK: after both, the rows from before are kept, every
    /// column of V16 is there (then V17's `target_port`), the indexes are
    /// made again, and the CHECK takes `sftp` and `port_forward` (the
    /// latter only with its port) and nothing else.
    #[test]
    fn remote_sessions_take_sftp_and_port_forward_after_both_rebuilds() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate_to(&mut c, refinery::Target::Version(16)).unwrap();
        let before = columns(&c, "remote_sessions");
        let indexes_before = schema_of(&c, "index");
        c.execute_batch(
            "INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at)
               VALUES (2, 'a', 'admin', NULL, 'h', 0, 0);
             INSERT INTO remote_sessions (user_id, username, instance_id, instance_name, node_id, node_name,
               container_id, protocol, source_ip, status, started_at, last_activity_at)
               VALUES (2, 'a', 1, 'x', 1, 'n', 'c', 'sftp', 'ip', 'active', 0, 0),
                      (2, 'a', 1, 'x', 1, 'n', 'c', 'ssh', 'ip', 'active', 0, 0);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let mut want = before;
        want.push("target_port".into());
        assert_eq!(columns(&c, "remote_sessions"), want);
        let indexes_after = schema_of(&c, "index");
        for i in indexes_before
            .iter()
            .filter(|i| i.starts_with("remote_sessions"))
        {
            assert!(indexes_after.contains(i), "index lost or changed: {i}");
        }
        let kept: Vec<(String, Option<i64>)> = c
            .prepare("SELECT protocol, target_port FROM remote_sessions ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [("sftp".into(), None), ("ssh".into(), None)]);
        let insert = |protocol: &str, port: Option<i64>| {
            c.execute(
                "INSERT INTO remote_sessions (user_id, username, instance_id, instance_name, node_id, \
                 node_name, container_id, protocol, source_ip, status, started_at, last_activity_at, \
                 target_port) VALUES (2, 'a', 1, 'x', 1, 'n', 'c', ?1, 'ip', 'active', 0, 0, ?2)",
                rusqlite::params![protocol, port],
            )
        };
        insert("sftp", None).unwrap();
        insert("web_terminal", None).unwrap();
        insert("port_forward", Some(8888)).unwrap();
        assert!(
            insert("port_forward", None).is_err(),
            "a tunnel names its port"
        );
        assert!(insert("ssh", Some(22)).is_err(), "only tunnels have a port");
        assert!(insert("telnet", None).is_err());
    }

    /// The rows of `meta`, as an answer kept under one key; `asked` counts
    /// the reads that answered it.
    async fn kept_count(db: Db, asked: Arc<std::sync::atomic::AtomicUsize>) -> i64 {
        *db.cached("metas".to_string(), move |c| {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            c.query_row("SELECT COUNT(*) FROM meta", [], |r| r.get::<_, i64>(0))
                .map_err(DbError::from)
        })
        .await
        .unwrap()
    }

    /// A kept answer is served until a commit, by this process's writer or
    /// by another connection (another process), and never after it.
    #[tokio::test]
    async fn kept_answers_end_with_any_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = |db: &Db| kept_count(db.clone(), asked.clone());
        // Within one second and no commit, the second lookup is kept (the
        // loop retries when the second changed in between).
        let base = loop {
            let at = now();
            let (a, b) = (count(&db).await, count(&db).await);
            let before = asked.swap(0, std::sync::atomic::Ordering::SeqCst);
            if now() == at {
                assert_eq!(a, b);
                assert_eq!(before, 1, "the second lookup is a memory hit");
                break a;
            }
        };
        db.write(|c| {
            c.execute("INSERT INTO meta (key, value) VALUES ('w', x'00')", [])
                .map_err(DbError::from)
        })
        .await
        .unwrap();
        assert_eq!(count(&db).await, base + 1, "this process's write");
        let other = Connection::open(&path).unwrap();
        other
            .execute("INSERT INTO meta (key, value) VALUES ('o', x'00')", [])
            .unwrap();
        assert_eq!(count(&db).await, base + 2, "another connection's commit");
        other
            .execute("DELETE FROM meta WHERE key = 'o'", [])
            .unwrap();
        assert_eq!(count(&db).await, base + 1);
    }

    /// Within one request, the database's version is read once: another
    /// process's commit is seen from the next request on, this process's
    /// own writes at once; a request that read the version before the kept
    /// answers' stamp reads instead of dropping them.
    #[tokio::test]
    async fn a_request_reads_the_version_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = |db: &Db| kept_count(db.clone(), asked.clone());
        let reads = || asked.swap(0, std::sync::atomic::Ordering::SeqCst);
        let other = Connection::open(&path).unwrap();
        let insert = |c: &Connection, k: &str| {
            c.execute("INSERT INTO meta (key, value) VALUES (?1, x'00')", [k])
                .unwrap();
        };
        // Retried when the second changes in between (answers are kept
        // within one second).
        loop {
            let at = now();
            let (base, in_request, own, next) = per_request(async {
                let base = count(&db).await;
                insert(&other, &format!("o{at}"));
                let in_request = count(&db).await;
                db.write(move |c| {
                    c.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, x'00')",
                        [format!("w{at}")],
                    )
                    .map_err(DbError::from)
                })
                .await
                .unwrap();
                let own = count(&db).await;
                // A later request, while this one still runs.
                let next = per_request(count(&db)).await;
                (base, in_request, own, next)
            })
            .await;
            if now() != at {
                continue;
            }
            assert_eq!(in_request, base, "another process's commit: next request");
            assert_eq!(
                own,
                base + 2,
                "this process's write, at once (with what it reads)"
            );
            assert_eq!(next, base + 2);
            break;
        }
        // An older request reads instead of dropping newer kept answers.
        loop {
            let at = now();
            let (first, older, newer) = per_request(async {
                let first = count(&db).await;
                insert(&other, &format!("p{at}"));
                reads();
                let newer = per_request(count(&db)).await;
                let older = count(&db).await;
                assert_eq!(reads(), 2, "the older request reads");
                assert_eq!(per_request(count(&db)).await, newer);
                (first, older, newer)
            })
            .await;
            if now() != at {
                continue;
            }
            assert_eq!(reads(), 0, "the newer answer stayed kept");
            assert_eq!(newer, first + 1);
            assert_eq!(older, newer, "a read is never older than the database");
            break;
        }
    }

    #[tokio::test]
    async fn close_checkpoints_and_closes_the_last_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        db.write(|c| {
            c.execute("INSERT INTO meta (key, value) VALUES ('k', x'00')", [])
                .map_err(DbError::from)
        })
        .await
        .unwrap();
        let n: i64 = db
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM meta WHERE key = 'k'", [], |r| {
                    r.get(0)
                })
                .map_err(DbError::from)
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
        let other = db.clone();
        assert!(!other.close().await.unwrap(), "another handle is alive");
        assert!(db.close().await.unwrap());
        let wal = dir.path().join("t.db-wal");
        assert!(!wal.exists(), "the last close removes the WAL");
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM meta WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
    }
}
