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
//! next lookup. Reading the stamp costs about a microsecond (the WAL
//! index's header), against a round trip to a reader of hundreds.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    writes: u64,
    data_version: i64,
    now: i64,
}

#[derive(Default)]
struct Kept {
    stamp: Option<Stamp>,
    slots: HashMap<(TypeId, String), Slot>,
}

pub(super) struct Memo {
    /// Reads `PRAGMA data_version` only (none for an in-memory database,
    /// which no other connection can change).
    watcher: Option<Mutex<Connection>>,
    /// Writes through [`super::Db::write`] so far: the stamp of an
    /// in-memory database, which has no watcher.
    writes: AtomicU64,
    kept: Mutex<Kept>,
}

impl Memo {
    pub(super) fn new(watcher: Option<Connection>) -> Self {
        Memo {
            watcher: watcher.map(Mutex::new),
            writes: AtomicU64::new(0),
            kept: Mutex::new(Kept::default()),
        }
    }

    /// Called after each write (committed or not).
    pub(super) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }

    /// The slot of the answer of type `ty` named `key` under the stamp of
    /// now, or none when too many are kept already. The stamp is read under
    /// the same lock as the slots, so stamps only move forward.
    pub(super) fn slot(&self, ty: TypeId, key: String) -> Result<Option<Slot>, DbError> {
        let mut kept = self.kept.lock().map_err(|_| DbError::Poisoned)?;
        let data_version = match &self.watcher {
            Some(w) => w
                .lock()
                .map_err(|_| DbError::Poisoned)?
                .prepare_cached("PRAGMA data_version")?
                .query_row([], |r| r.get(0))?,
            None => 0,
        };
        let stamp = Stamp {
            // With a watcher, its version alone moves with every commit
            // (and not with writes that changed nothing, such as a token's
            // use noted at most once a minute).
            writes: match &self.watcher {
                Some(_) => 0,
                None => self.writes.load(Ordering::Acquire),
            },
            data_version,
            now: super::now(),
        };
        if kept.stamp != Some(stamp) {
            kept.slots.clear();
            kept.stamp = Some(stamp);
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
