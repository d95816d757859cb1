//! Live connections (a web terminal, an SSH shell): who holds each, how many
//! bytes went through, when something last happened, and a way to end one
//! with a reason that the connection's own loop observes. Beside these
//! listed sessions, a user may *hold* other live things bound to their
//! access (a followed log, a jumpbox connection at its menu): unlisted and
//! not counted, but ended with the sessions when the user's access is
//! revoked. The tasks serving connections that no other owner joins (a
//! WebSocket body) are tracked here, and shutdown waits for them.
//! Capabilities register here; this knows nothing of what they carry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// The reason everything a user holds ends with when their access changes
/// (disabled, their tenant disabled, password, role or tenant changed).
pub const ACCESS_REVOKED: &str = "access_revoked";

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
    /// The owner's access generation when it was granted (their session
    /// epoch): a later one means the grant is gone.
    epoch: i64,
    /// A session (listed, counted against the per-owner limit) or a hold.
    listed: bool,
    /// The instance a hold reaches (ended with it: [`Live::stop_instance`]).
    instance: Option<i64>,
    activity: Arc<Activity>,
    stop: CancellationToken,
    reason: Arc<OnceLock<&'static str>>,
    /// Ended for its user, still finishing (e.g. cleaning up after itself):
    /// live, no longer counted toward its owner's limit.
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

/// Who holds something live, and since which access generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub owner: i64,
    pub epoch: i64,
}

#[derive(Clone, Default)]
pub struct Live {
    map: Arc<Mutex<HashMap<i64, Entry>>>,
    /// Keys of registrations without a record id yet (negative, so they
    /// never meet a record's id).
    next_key: Arc<AtomicI64>,
    tasks: TaskTracker,
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
    fn key(&self) -> i64 {
        -1 - self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(
        &self,
        m: &mut HashMap<i64, Entry>,
        holder: Holder,
        listed: bool,
        instance: Option<i64>,
    ) -> Registration {
        let entry = Entry {
            owner: holder.owner,
            epoch: holder.epoch,
            listed,
            instance,
            activity: Arc::new(Activity::default()),
            stop: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
            ending: Arc::new(AtomicBool::new(false)),
        };
        entry.activity.touch();
        let id = self.key();
        m.insert(id, entry.clone());
        Registration {
            id,
            live: self.clone(),
            entry,
        }
    }

    /// Registers a session of `holder` under a provisional key (see
    /// [`Registration::rekey`]) unless the owner already holds
    /// `max_per_owner` sessions (0: no limit); the count and the insert are
    /// atomic.
    pub fn register(&self, holder: Holder, max_per_owner: usize) -> Result<Registration, AtLimit> {
        let mut m = self.lock();
        let held = m
            .values()
            .filter(|e| e.listed && e.owner == holder.owner && !e.ending.load(Ordering::Relaxed))
            .count();
        if max_per_owner > 0 && held >= max_per_owner {
            return Err(AtLimit { held });
        }
        Ok(self.insert(&mut m, holder, true, None))
    }

    /// Something live bound to `holder`'s access that is not a session: not
    /// listed, not counted, ended by [`Live::stop_owner`] like a session.
    pub fn hold(&self, holder: Holder) -> Registration {
        let mut m = self.lock();
        self.insert(&mut m, holder, false, None)
    }

    /// A hold that reaches instance `instance` (a proxied request or
    /// WebSocket): ended by [`Live::stop_instance`] as well.
    pub fn hold_on(&self, holder: Holder, instance: i64) -> Registration {
        let mut m = self.lock();
        self.insert(&mut m, holder, false, Some(instance))
    }

    /// Ends the holds that reach instance `instance` (it stopped or was
    /// deleted) with `reason`; how many.
    pub fn stop_instance(&self, instance: i64, reason: &'static str) -> usize {
        self.stop_where(reason, |_, e| e.instance == Some(instance))
    }

    /// Ends everything `owner` holds (sessions and holds) with `reason`;
    /// how many.
    pub fn stop_owner(&self, owner: i64, reason: &'static str) -> usize {
        self.stop_where(reason, |_, e| e.owner == owner)
    }

    fn stop_where(&self, reason: &'static str, pick: impl Fn(i64, &Entry) -> bool) -> usize {
        let entries: Vec<Entry> = self
            .lock()
            .iter()
            .filter(|(id, e)| pick(**id, e))
            .map(|(_, e)| e.clone())
            .collect();
        for e in &entries {
            let _ = e.reason.set(reason);
            e.stop.cancel();
        }
        entries.len()
    }

    /// Every distinct holder of something live.
    pub fn holders(&self) -> Vec<Holder> {
        let mut v: Vec<Holder> = self
            .lock()
            .values()
            .map(|e| Holder {
                owner: e.owner,
                epoch: e.epoch,
            })
            .collect();
        v.sort_by_key(|h| (h.owner, h.epoch));
        v.dedup();
        v
    }

    /// Ends what `holder.owner` holds under `holder.epoch` (an access
    /// generation found out of date); how many.
    pub fn stop_generation(&self, holder: Holder, reason: &'static str) -> usize {
        self.stop_where(reason, |_, e| {
            e.owner == holder.owner && e.epoch == holder.epoch
        })
    }

    /// Counts a connection's task from now until the token is dropped:
    /// taken before the task exists (a WebSocket's upgrade), moved into it.
    pub fn track(&self) -> TaskTrackerToken {
        self.tasks.token()
    }

    /// The tracker that counts connections' tasks, to spawn such a task on
    /// (joined at shutdown like the tracked ones).
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }

    /// Waits, at most `within`, for the tracked tasks to end (they observe
    /// shutdown themselves); false when some were still running.
    pub async fn join(&self, within: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok()
    }

    /// Ends connection `id` with `reason`; false when it is not live.
    pub fn stop(&self, id: i64, reason: &'static str) -> bool {
        self.stop_where(reason, |k, _| k == id) > 0
    }

    pub fn is_live(&self, id: i64) -> bool {
        self.map.lock().is_ok_and(|m| m.contains_key(&id))
    }

    /// The sessions (holds are not listed).
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let m = self.lock();
        m.iter()
            .filter(|(_, e)| e.listed)
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

    fn h(owner: i64) -> Holder {
        Holder { owner, epoch: 0 }
    }

    #[tokio::test]
    async fn limits_per_owner_stop_with_a_reason_and_drop_unregisters() {
        let live = Live::default();
        let mut a = live.register(h(7), 2).unwrap();
        a.rekey(1);
        let _b = live.register(h(7), 2).unwrap();
        assert_eq!(live.register(h(7), 2).err(), Some(AtLimit { held: 2 }));
        let _c = live.register(h(8), 2).unwrap();
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
        let c = live.register(h(7), 2).unwrap();
        assert!(live.register(h(7), 2).is_err());
        c.ending();
        assert!(live.is_live(c.id), "still live while it finishes");
        assert!(
            live.register(h(7), 2).is_ok(),
            "room again once one is ending"
        );
    }

    #[tokio::test]
    async fn holds_are_unlisted_uncounted_and_end_with_the_owner() {
        let live = Live::default();
        let held = live.hold(Holder { owner: 7, epoch: 3 });
        let s1 = live.register(h(7), 1).unwrap();
        let other = live.register(h(8), 1).unwrap();
        assert_eq!(live.snapshot().len(), 2, "the hold is not listed");
        assert_eq!(live.holders(), [h(7), Holder { owner: 7, epoch: 3 }, h(8)]);
        assert_eq!(live.stop_generation(Holder { owner: 7, epoch: 3 }, "x"), 1);
        held.watcher().stopped().await;
        assert_eq!(live.stop_owner(7, ACCESS_REVOKED), 2);
        s1.watcher().stopped().await;
        assert_eq!(s1.watcher().reason(), Some(ACCESS_REVOKED));
        assert_eq!(
            other.watcher().reason(),
            None,
            "another owner's is untouched"
        );
    }

    #[tokio::test]
    async fn tracked_tasks_are_joined_within_a_deadline() {
        let live = Live::default();
        let token = live.track();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(token);
        });
        assert!(live.join(Duration::from_secs(5)).await);
        t.await.unwrap();
        let stuck = live.track();
        assert!(!live.join(Duration::from_millis(50)).await);
        drop(stuck);
    }
}
