//! Live connections (a web terminal, an SSH shell): who holds each, how many
//! bytes went through, when something last happened, and a way to end one
//! with a reason that the connection's own loop observes. Capabilities
//! register their connections here; this knows nothing of what they carry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

/// Counters of one connection, updated from its I/O loop without locks.
#[derive(Debug, Default)]
pub struct Activity {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Unix milliseconds of the last byte either way.
    last_ms: AtomicI64,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Activity {
    pub fn input(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }
    pub fn output(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }
    pub fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
    /// Milliseconds since the last byte.
    pub fn idle_ms(&self) -> i64 {
        now_ms() - self.last_ms.load(Ordering::Relaxed)
    }
    /// Unix seconds of the last byte.
    pub fn last_secs(&self) -> i64 {
        self.last_ms.load(Ordering::Relaxed) / 1000
    }
}

#[derive(Clone)]
struct Entry {
    owner: i64,
    activity: Arc<Activity>,
    stop: CancellationToken,
    reason: Arc<OnceLock<&'static str>>,
    /// Ended for its user, still finishing (e.g. cleaning up after itself):
    /// listed as live, no longer counted toward its owner's limit.
    ending: Arc<AtomicBool>,
}

/// One live connection as the registry lists it.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub id: i64,
    pub owner: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub last_secs: i64,
}

#[derive(Clone, Default)]
pub struct Live {
    map: Arc<Mutex<HashMap<i64, Entry>>>,
}

/// The owner already holds the most connections allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtLimit {
    pub held: usize,
}

/// What a connection's watchdog needs: its stop signal, reason and
/// counters, owned (no borrow of the registration).
#[derive(Clone)]
pub struct Watcher {
    entry: Entry,
}

impl Watcher {
    pub async fn stopped(&self) {
        self.entry.stop.cancelled().await;
    }
    pub fn reason(&self) -> Option<&'static str> {
        self.entry.reason.get().copied()
    }
    pub fn activity(&self) -> &Arc<Activity> {
        &self.entry.activity
    }
}

/// A registered connection; dropping it removes the registration.
pub struct Registration {
    id: i64,
    live: Live,
    entry: Entry,
}

impl Registration {
    pub fn activity(&self) -> &Arc<Activity> {
        &self.entry.activity
    }
    pub fn watcher(&self) -> Watcher {
        Watcher {
            entry: self.entry.clone(),
        }
    }
    /// The connection has ended for its owner; it stays registered (live)
    /// while it finishes, but no longer counts toward the owner's limit.
    pub fn ending(&self) {
        self.entry.ending.store(true, Ordering::Relaxed);
    }

    /// Moves the registration to another id (a provisional key replaced by
    /// the record's id once it exists).
    pub fn rekey(&mut self, id: i64) {
        if let Ok(mut m) = self.live.map.lock()
            && let Some(e) = m.remove(&self.id)
        {
            m.insert(id, e);
        }
        self.id = id;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.live.map.lock() {
            m.remove(&self.id);
        }
    }
}

impl Live {
    /// Registers connection `id` for `owner` unless the owner already holds
    /// `max_per_owner` (0: no limit); the count and the insert are atomic.
    pub fn register(
        &self,
        id: i64,
        owner: i64,
        max_per_owner: usize,
    ) -> Result<Registration, AtLimit> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let held = m
            .values()
            .filter(|e| e.owner == owner && !e.ending.load(Ordering::Relaxed))
            .count();
        if max_per_owner > 0 && held >= max_per_owner {
            return Err(AtLimit { held });
        }
        let entry = Entry {
            owner,
            activity: Arc::new(Activity::default()),
            stop: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
            ending: Arc::new(AtomicBool::new(false)),
        };
        entry.activity.touch();
        m.insert(id, entry.clone());
        Ok(Registration {
            id,
            live: self.clone(),
            entry,
        })
    }

    /// Ends connection `id` with `reason`; false when it is not live.
    pub fn stop(&self, id: i64, reason: &'static str) -> bool {
        let entry = self.map.lock().ok().and_then(|m| m.get(&id).cloned());
        match entry {
            Some(e) => {
                let _ = e.reason.set(reason);
                e.stop.cancel();
                true
            }
            None => false,
        }
    }

    pub fn is_live(&self, id: i64) -> bool {
        self.map.lock().is_ok_and(|m| m.contains_key(&id))
    }

    pub fn snapshot(&self) -> Vec<Snapshot> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|(id, e)| Snapshot {
                id: *id,
                owner: e.owner,
                bytes_in: e.activity.bytes_in(),
                bytes_out: e.activity.bytes_out(),
                last_secs: e.activity.last_secs(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn limits_per_owner_stop_with_a_reason_and_drop_unregisters() {
        let live = Live::default();
        let a = live.register(1, 7, 2).unwrap();
        let _b = live.register(2, 7, 2).unwrap();
        assert_eq!(live.register(3, 7, 2).err(), Some(AtLimit { held: 2 }));
        let _c = live.register(4, 8, 2).unwrap();
        a.activity().input(5);
        a.activity().output(7);
        let s = live.snapshot();
        let one = s.iter().find(|s| s.id == 1).unwrap();
        assert_eq!((one.bytes_in, one.bytes_out, one.owner), (5, 7, 7));
        assert!(live.stop(1, "admin_force"));
        let w = a.watcher();
        w.stopped().await;
        assert_eq!(w.reason(), Some("admin_force"));
        assert!(!live.stop(99, "x"));
        drop(a);
        assert!(!live.is_live(1));
        let c = live.register(3, 7, 2).unwrap();
        assert!(live.register(5, 7, 2).is_err());
        c.ending();
        assert!(live.is_live(3), "still live while it finishes");
        assert!(
            live.register(5, 7, 2).is_ok(),
            "room again once one is ending"
        );
    }
}
