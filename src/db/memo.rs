//! Answers of repeated reads (a request's session, its caller and their
//! permission decision, the pages the navigation shows, a list page) kept
//! in memory while they cannot differ from what the database would answer.
//!
//! Each answer is kept under a stamp of the database: SQLite's `PRAGMA
//! data_version` on a connection kept for that alone (it never writes, so
//! its value changes with every commit by any other connection: this
//! process's writer and readers, and other processes such as `gpudock
//! admin` commands on the same data dir; an in-memory database, which no
//! other connection reaches, counts its writes instead), and the current
//! second (answers that compare times, such as a lock or a
//! lease ending, are the same within one second of `db::now`). When the
//! stamp changes, everything kept is dropped; a commit is seen by the very
//! next lookup. Reading the stamp costs a few microseconds (the WAL
//! index's header, under a lock on the database file taken and released:
//! two `fcntl` calls), against a round trip to a reader of hundreds.
//!
//! Within one request ([`per_request`]) the version is read once, at its
//! first lookup: an HTTP request makes about ten lookups (session, caller,
//! permission decisions, banners, its list).
//! Such a request sees other processes' commits as they stood at its
//! first lookup, and this process's own as they happen (a count of the
//! writes that changed rows is part of the stamp). A lookup whose request
//! read the version before the kept answers' stamp was read is not kept
//! (it reads), so an older request never drops newer answers.
//!
//! Lookups of the same answer at once share one read (the first asks, the
//! others wait for its answer). Errors are not kept.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::DbError;

type Value = Arc<dyn Any + Send + Sync>;
pub(super) type Slot = Arc<tokio::sync::OnceCell<Value>>;

/// The most answers kept for one stamp; past it, reads are not kept.
const MOST: usize = 4096;

tokio::task_local! {
    /// The database version one request read at its first lookup.
    static REQUEST: std::cell::Cell<Option<Version>>;
}

/// Runs `f` (a request) reading the database's version once, at its first
/// lookup of a kept answer (see the module's documentation).
pub async fn per_request<F: Future>(f: F) -> F::Output {
    REQUEST.scope(std::cell::Cell::new(None), f).await
}

/// A reading of `PRAGMA data_version`, and its place among all readings.
#[derive(Debug, Clone, Copy)]
struct Version {
    seq: u64,
    data_version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    writes: u64,
    data_version: i64,
    now: i64,
}

#[derive(Default)]
struct Kept {
    stamp: Option<Stamp>,
    /// The place of the reading `stamp` holds (see [`Version::seq`]).
    seq: u64,
    slots: HashMap<(TypeId, String), Slot>,
}

pub(super) struct Memo {
    /// Reads `PRAGMA data_version` only (none for an in-memory database,
    /// which no other connection can change).
    watcher: Option<Mutex<Connection>>,
    /// Writes through [`super::Db::write`] so far (with a watcher: those
    /// that changed rows), part of the stamp.
    writes: AtomicU64,
    /// Readings of the version so far (taken under the watcher's lock, so
    /// a later reading never sees an older database).
    readings: AtomicU64,
    kept: Mutex<Kept>,
}

impl Memo {
    pub(super) fn new(watcher: Option<Connection>) -> Self {
        Memo {
            watcher: watcher.map(Mutex::new),
            writes: AtomicU64::new(0),
            readings: AtomicU64::new(0),
            kept: Mutex::new(Kept::default()),
        }
    }

    /// Called after each write (committed or not): `changed`, whether it
    /// changed rows (with a watcher, other writes, such as a token's use
    /// noted at most once a minute, keep what is kept).
    pub(super) fn wrote(&self, changed: bool) {
        if changed || self.watcher.is_none() {
            self.writes.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The database's version now (0 for an in-memory database, whose
    /// writes are counted instead).
    fn version(&self) -> Result<Version, DbError> {
        let Some(w) = &self.watcher else {
            return Ok(Version {
                seq: self.readings.fetch_add(1, Ordering::AcqRel),
                data_version: 0,
            });
        };
        let w = w.lock().map_err(|_| DbError::Poisoned)?;
        let data_version = w
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        Ok(Version {
            seq: self.readings.fetch_add(1, Ordering::AcqRel),
            data_version,
        })
    }

    /// The version this lookup goes by: its request's (read now when this
    /// is the request's first lookup), or now outside a request.
    fn version_for_lookup(&self) -> Result<Version, DbError> {
        match REQUEST.try_with(std::cell::Cell::get) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => {
                let v = self.version()?;
                let _ = REQUEST.try_with(|c| c.set(Some(v)));
                Ok(v)
            }
            Err(_) => self.version(),
        }
    }

    /// The slot of the answer of type `ty` named `key` under the stamp of
    /// this lookup, or none when too many are kept already or the kept
    /// answers are newer than this lookup's request. The stamp is compared
    /// under the same lock as the slots, so kept stamps only move forward.
    pub(super) fn slot(&self, ty: TypeId, key: String) -> Result<Option<Slot>, DbError> {
        let mut kept = self.kept.lock().map_err(|_| DbError::Poisoned)?;
        let version = self.version_for_lookup()?;
        let stamp = Stamp {
            writes: self.writes.load(Ordering::Acquire),
            data_version: version.data_version,
            now: super::now(),
        };
        if kept.stamp != Some(stamp) {
            if kept.stamp.is_some() && version.seq < kept.seq {
                return Ok(None);
            }
            kept.slots.clear();
            kept.stamp = Some(stamp);
            kept.seq = version.seq;
        }
        let full = kept.slots.len() >= MOST;
        Ok(match kept.slots.entry((ty, key)) {
            std::collections::hash_map::Entry::Occupied(o) => Some(o.get().clone()),
            std::collections::hash_map::Entry::Vacant(_) if full => None,
            std::collections::hash_map::Entry::Vacant(v) => Some(v.insert(Slot::default()).clone()),
        })
    }
}

/// Gives the kept value its type back.
pub(super) fn typed<T: Send + Sync + 'static>(v: &Value) -> Result<Arc<T>, DbError> {
    v.clone().downcast::<T>().map_err(|_| DbError::Poisoned)
}
