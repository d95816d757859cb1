//! Background jobs: long work (an image pull, creating a container) that
//! must not die with the HTTP request that asked for it, with progress a
//! page can poll and an outcome kept for a while after it ends. Every job
//! runs on an owned task set that shutdown waits for, and sees the
//! shutdown through [`JobHandle::cancelled`], so that it can stop early and
//! undo what it made. Jobs know nothing of what they do: a capability
//! reports progress as an i18n key plus detail.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::AppError;

/// How long a finished job stays visible.
const KEEP_FINISHED: Duration = Duration::from_secs(600);

/// What a job is doing now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// An i18n key, e.g. `instances.p_pulling`.
    pub key: &'static str,
    /// Untranslated detail, e.g. `3/7 layers`.
    pub detail: String,
    pub percent: Option<u8>,
}

/// A job as its owner sees it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub id: u64,
    pub owner: i64,
    pub progress: Progress,
    /// `None` while running; the page to go to, or the error.
    pub outcome: Option<Result<String, AppError>>,
}

struct Entry {
    view: JobView,
    finished: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct Jobs {
    next: Arc<AtomicU64>,
    map: Arc<Mutex<HashMap<u64, Entry>>>,
    tracker: TaskTracker,
    /// Cancelled when the server stops (a child of the app's token).
    cancel: CancellationToken,
}

/// Given to the job's work to report progress.
#[derive(Clone)]
pub struct JobHandle {
    id: u64,
    map: Arc<Mutex<HashMap<u64, Entry>>>,
    cancel: CancellationToken,
}

impl JobHandle {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Resolves when the server stops: the job should stop what it does,
    /// undo what it made, and end (within seconds: shutdown waits only so
    /// long, see [`Jobs::shutdown`]).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// The token behind [`Self::cancelled`], for calls that take one.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn progress(&self, key: &'static str, detail: impl Into<String>, percent: Option<u8>) {
        if let Ok(mut m) = self.map.lock()
            && let Some(e) = m.get_mut(&self.id)
        {
            e.view.progress = Progress {
                key,
                detail: detail.into(),
                percent,
            };
        }
    }

    fn finish(&self, outcome: Result<String, AppError>) {
        if let Ok(mut m) = self.map.lock()
            && let Some(e) = m.get_mut(&self.id)
        {
            e.view.outcome = Some(outcome);
            e.finished = Some(Instant::now());
        }
    }
}

impl Jobs {
    /// Jobs that see `cancel` (the server stopping).
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            cancel,
            ..Self::default()
        }
    }

    /// Starts `work` for `owner` (a user id). The job's outcome is the page
    /// `href` gives for a success, or the error; the returned handle yields
    /// the work's own result to a caller that waits (the API).
    pub fn spawn<T, W, F>(
        &self,
        owner: i64,
        first: Progress,
        href: impl FnOnce(&T) -> String + Send + 'static,
        work: W,
    ) -> (u64, JoinHandle<Result<T, AppError>>)
    where
        T: Send + 'static,
        W: FnOnce(JobHandle) -> F,
        F: Future<Output = Result<T, AppError>> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, e| e.finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
            let view = JobView {
                id,
                owner,
                progress: first,
                outcome: None,
            };
            m.insert(
                id,
                Entry {
                    view,
                    finished: None,
                },
            );
        }
        let handle = JobHandle {
            id,
            map: self.map.clone(),
            cancel: self.cancel.clone(),
        };
        let fut = work(handle.clone());
        let task = self.tracker.spawn(async move {
            let result = fut.await;
            handle.finish(match &result {
                Ok(t) => Ok(href(t)),
                Err(e) => Err(e.clone()),
            });
            result
        });
        (id, task)
    }

    /// The job if `viewer` may see it: its owner, or anyone when `all`.
    /// Jobs still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    pub fn get(&self, id: u64, viewer: i64, all: bool) -> Option<JobView> {
        let m = self.map.lock().ok()?;
        m.get(&id)
            .map(|e| e.view.clone())
            .filter(|v| all || v.owner == viewer)
    }

    /// Stops taking jobs, tells the running ones to stop, and waits for
    /// them, at most `within`; whether they all ended. A job still running
    /// then is left (what it reserved is cleaned up at the next start).
    pub async fn shutdown(&self, within: Duration) -> bool {
        self.tracker.close();
        self.cancel.cancel();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_job_reports_progress_then_its_outcome_to_its_owner_only() {
        let jobs = Jobs::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (id, task) = jobs.spawn(
            7,
            Progress::default(),
            |n: &i64| format!("/things/{n}"),
            |h| async move {
                h.progress("k.pulling", "1/2", Some(50));
                let _ = rx.await;
                Ok(42)
            },
        );
        tokio::task::yield_now().await;
        while jobs.get(id, 7, false).unwrap().progress.key != "k.pulling" {
            tokio::task::yield_now().await;
        }
        let v = jobs.get(id, 7, false).unwrap();
        assert_eq!(v.progress.percent, Some(50));
        assert!(v.outcome.is_none());
        assert!(jobs.get(id, 8, false).is_none(), "another user's job");
        assert!(jobs.get(id, 8, true).is_some(), "an admin sees all");
        tx.send(()).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), 42);
        let v = jobs.get(id, 7, false).unwrap();
        assert_eq!(v.outcome.unwrap().unwrap(), "/things/42");

        let (id, task) = jobs.spawn(
            7,
            Progress::default(),
            |_: &i64| String::new(),
            |_| async { Err(AppError::Docker("boom".into())) },
        );
        assert!(task.await.unwrap().is_err());
        assert!(matches!(
            jobs.get(id, 7, false).unwrap().outcome,
            Some(Err(AppError::Docker(m))) if m == "boom"
        ));
        assert!(jobs.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn shutdown_tells_running_jobs_and_waits_only_so_long() {
        let jobs = Jobs::new(CancellationToken::new());
        let (_, stops) = jobs.spawn(
            1,
            Progress::default(),
            |_: &()| String::new(),
            |h| async move {
                h.cancelled().await;
                Err(AppError::ShuttingDown)
            },
        );
        let (_, stuck) = jobs.spawn(
            1,
            Progress::default(),
            |_: &()| String::new(),
            |_| std::future::pending::<Result<(), AppError>>(),
        );
        assert!(!jobs.shutdown(Duration::from_millis(200)).await);
        assert!(matches!(stops.await.unwrap(), Err(AppError::ShuttingDown)));
        assert!(!stuck.is_finished());
        stuck.abort();
    }
}
