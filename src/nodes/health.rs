//! The health loop: one owned task per node probes its daemon every
//! `nodes.health_interval_secs` with a timeout, so a slow or dead node delays
//! nobody else. An unreachable node is probed again sooner (after 1 s, then
//! doubling up to [`DOWN_RETRY_AT_MOST`]), so that it shows online within
//! seconds of its daemon coming back. The supervisor behind it ([`per_node`]) starts tasks for new
//! nodes and stops those of deleted ones; other capabilities use it for their
//! own per-node work. Everything ends when the app's token is cancelled.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::store;
use crate::app::App;
use crate::error::AppError;
use crate::ids::NodeId;

pub async fn run(app: App, cancel: CancellationToken) {
    let interval = Duration::from_secs(app.config.nodes.health_interval_secs);
    per_node(app, cancel, "health", move |app, id, token| {
        node_loop(app, id, token, interval)
    })
    .await;
}

/// Runs `task(app, node_id, token)` once for every node: a supervisor starts
/// a task for each new node (and again when one ended), cancels the task of
/// a deleted node, and on `cancel` stops and joins them all. The node list is
/// read every 2 s at most.
pub async fn per_node<F, Fut>(app: App, cancel: CancellationToken, what: &'static str, task: F)
where
    F: Fn(App, NodeId, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let interval = Duration::from_secs(app.config.nodes.health_interval_secs);
    let mut tasks: HashMap<NodeId, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let mut tick = tokio::time::interval(interval.min(Duration::from_secs(2)));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ids = match app.db.read(|c| store::ids(c).map_err(AppError::from)).await {
            Ok(ids) => ids,
            Err(e) => {
                log::warn!("{what} loop: listing nodes failed: {e}");
                continue;
            }
        };
        tasks.retain(|id, (token, handle)| {
            let keep = ids.contains(id) && !handle.is_finished();
            if !keep {
                token.cancel();
            }
            keep
        });
        for id in ids {
            tasks.entry(id).or_insert_with(|| {
                let token = cancel.child_token();
                (token.clone(), tokio::spawn(task(app.clone(), id, token)))
            });
        }
    }
    for (_, (token, handle)) in tasks {
        token.cancel();
        if let Err(e) = handle.await {
            log::error!("{what} task failed: {e}");
        }
    }
}

/// The longest wait between two probes of a node that is unreachable.
pub const DOWN_RETRY_AT_MOST: Duration = Duration::from_secs(5);

/// The wait before the next probe: the interval while the node answers; 1 s
/// after it stops, then twice the last wait up to [`DOWN_RETRY_AT_MOST`]
/// (never more than the interval).
pub fn next_probe(interval: Duration, online: bool, last: Option<Duration>) -> Duration {
    if online {
        return interval;
    }
    let next = last.map_or(Duration::from_secs(1), |l| l * 2);
    next.min(DOWN_RETRY_AT_MOST).min(interval)
}

async fn node_loop(app: App, id: NodeId, cancel: CancellationToken, interval: Duration) {
    let mut was_online = None;
    let mut wait: Option<Duration> = None;
    // Since when the node has not answered (this loop's first failure).
    let mut down_since: Option<i64> = None;
    loop {
        let check = tokio::select! {
            _ = cancel.cancelled() => return,
            r = super::check(&app, id) => r,
        };
        match check {
            Ok(outcome) => {
                let online = outcome.is_ok();
                if was_online != Some(online) {
                    match &outcome {
                        Ok(_) => log::info!("node {id} is online"),
                        Err(why) => log::warn!("node {id} is unreachable: {why}"),
                    }
                }
                let first = was_online.is_none();
                down_since = report(&app, id, &outcome, down_since, first).await;
                was_online = Some(online);
                wait = (!online).then(|| next_probe(interval, false, wait));
            }
            Err(AppError::NotFound) => return,
            Err(e) => log::warn!("health check of node {id} failed: {e}"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait.unwrap_or(interval)) => {}
        }
    }
}

/// Tells the alerts what a probe found: a node unreachable (with how long
/// it has been), or answering again (its node-unreachable alert resolves;
/// also on the loop's first probe, for an alert left open by a restart).
/// Returns since when the node has been down.
async fn report<T>(
    app: &App,
    id: NodeId,
    outcome: &Result<T, String>,
    down_since: Option<i64>,
    first: bool,
) -> Option<i64> {
    use crate::alerts::{EventKind, Raised, Subject};
    let now = crate::db::now();
    let (result, since) = match outcome {
        Ok(_) if down_since.is_some() || first => (
            crate::alerts::clear_event(app, EventKind::NodeUnreachable, Subject::Node(id))
                .await
                .map(drop),
            None,
        ),
        Ok(_) => (Ok(()), None),
        Err(why) => {
            let since = down_since.unwrap_or(now);
            let secs = now - since;
            let ev = Raised {
                kind: EventKind::NodeUnreachable,
                subject: Subject::Node(id),
                value: Some(secs as f64),
                detail: format!("no answer for {secs} s: {why}"),
            };
            (
                crate::alerts::raise_event(app, ev).await.map(drop),
                Some(since),
            )
        }
    };
    if let Err(e) = result {
        log::warn!("node {id}: reporting to the alerts failed: {e}");
    }
    since
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_is_down_is_probed_again_soon() {
        let every = Duration::from_secs(15);
        assert_eq!(next_probe(every, true, None), every);
        let mut last = None;
        let waits: Vec<u64> = (0..5)
            .map(|_| {
                let w = next_probe(every, false, last);
                last = Some(w);
                w.as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(
            next_probe(Duration::from_secs(2), false, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
