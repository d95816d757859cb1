//! Keeps every instance's status true without anyone refreshing: one task
//! per node follows the daemon's container events (a container stopped with
//! the docker CLI shows `exited` within a second) and reconciles the node's
//! containers with the instances on connect and every
//! `instances.reconcile_interval_secs`: a container removed behind gpudock's
//! back shows as `missing`, a reservation left `creating` by a process that
//! is gone (an older generation) is cleaned up, and a container labelled for
//! an instance that does not exist is reported (logged, audited, listed for
//! admins), never kept silently nor removed; the id sequence moves past its
//! label so that no new instance takes that id.
//!
//! The follower is also the first to notice a daemon that dies or comes
//! back (its event stream breaks, a connection succeeds again): it has the
//! node probed at once, so the node's status (and with it what its
//! instances show) follows within a second or so.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::lifecycle::{LABEL_INSTALL, LABEL_INSTANCE, LABEL_NODE};
use super::model::InstanceStatus;
use super::store::{self, Orphan, Tracked};
use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::docker::containers::{self, Listed};
use crate::docker::watch::{self, ContainerEvent};
use crate::error::AppError;
use crate::ids::{InstanceId, NodeId};
use crate::nodes::client;

/// Runs until `cancel`: one follower per node.
pub async fn run(app: App, cancel: CancellationToken) {
    check_usage(&app).await;
    crate::nodes::per_node(app, cancel, "instance sync", follow).await;
}

/// Recounts what instances hold per node and per tenant and corrects the
/// usage tables where they differ (they never should: the schema's
/// triggers keep them; a difference is logged).
async fn check_usage(app: &App) {
    let r = app
        .db
        .write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut drift = store::recount_usage(&tx)?;
            let (closed, opened) = crate::usage::reconcile(&tx, crate::db::now())?;
            if closed + opened > 0 {
                drift.push(format!(
                    "metering: {closed} interval(s) closed, {opened} opened"
                ));
            }
            tx.commit()?;
            Ok::<_, AppError>(drift)
        })
        .await;
    match r {
        Ok(drift) if drift.is_empty() => {}
        Ok(drift) => log::warn!(
            "usage tables differed from a recount of the instances and were corrected: {}",
            drift.join(", ")
        ),
        Err(e) => log::error!("recounting the usage of nodes and tenants: {e}"),
    }
}

/// Events that can change a container's state; exec, attach, resize and the
/// like cannot.
fn changes_state(action: &str) -> bool {
    matches!(
        action,
        "create"
            | "start"
            | "restart"
            | "die"
            | "stop"
            | "kill"
            | "pause"
            | "unpause"
            | "oom"
            | "destroy"
    )
}

/// Orphans' labels above this do not move the id sequence.
const MAX_SKIPPED_ID: i64 = 1 << 40;

/// The longest wait between two tries to reach a node that is down.
const RETRY_AT_MOST: Duration = Duration::from_secs(5);

async fn follow(app: App, node: NodeId, cancel: CancellationToken) {
    let every = Duration::from_secs(app.config.instances.reconcile_interval_secs);
    let mut retry = Duration::from_millis(500);
    // Whether the daemon was lost (or never reached) since the last
    // connection: it is probed as soon as it answers again.
    let mut lost = false;
    loop {
        let d = tokio::select! {
            _ = cancel.cancelled() => return,
            d = client(&app, node) => d,
        };
        let d = match d {
            Ok(d) => d,
            Err(AppError::NotFound) => return,
            Err(e) => {
                if !lost {
                    log::info!("instance sync: node {node} not reachable yet: {e}");
                    lost = true;
                }
                if sleep_or_cancel(&cancel, retry).await {
                    return;
                }
                retry = (retry * 2).min(RETRY_AT_MOST);
                continue;
            }
        };
        if lost {
            // Back: the node's status follows now, not at the next probe.
            probe_now(&app, node).await;
        }
        retry = Duration::from_millis(500);
        let mut events = Box::pin(watch::container_events(&d, LABEL_INSTALL, &app.install_id));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    // A slow daemon never holds up a stop.
                    let r = tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = reconcile(&app, &d, node) => r,
                    };
                    if let Err(e) = r {
                        log::warn!("instance sync: reconciling node {node} failed: {e}");
                    }
                }
                ev = events.next() => match ev {
                    Some(Ok(ev)) if changes_state(&ev.action) => {
                        let r = tokio::select! {
                            _ = cancel.cancelled() => return,
                            r = on_event(&app, &d, &ev) => r,
                        };
                        if let Err(e) = r {
                            log::warn!("instance sync: node {node}: {e}");
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        log::warn!("instance sync: node {node}: event stream failed: {e}");
                        break;
                    }
                    None => {
                        log::info!("instance sync: node {node}: event stream ended");
                        break;
                    }
                },
            }
        }
        // The daemon may be gone: its status (and its instances') says so
        // now rather than at the next health probe.
        probe_now(&app, node).await;
        lost = true;
        if sleep_or_cancel(&cancel, retry).await {
            return;
        }
    }
}

/// Probes the node and records its status (see `nodes::check`).
async fn probe_now(app: &App, node: NodeId) {
    match crate::nodes::check(app, node).await {
        Ok(Ok(_)) => log::info!("instance sync: node {node} answers"),
        Ok(Err(why)) => log::warn!("instance sync: node {node} is unreachable: {why}"),
        Err(e) => log::warn!("instance sync: probing node {node}: {e}"),
    }
}

/// Sleeps; true when cancelled meanwhile.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// One event: the instance named by the container's label takes the
/// container's state now (`missing` once it is destroyed).
async fn on_event(app: &App, d: &Docker, ev: &ContainerEvent) -> Result<(), AppError> {
    let Some(id) = ev
        .labels
        .get(LABEL_INSTANCE)
        .and_then(|v| v.parse::<i64>().ok().map(InstanceId))
    else {
        return Ok(());
    };
    let state = if ev.action == "destroy" {
        None
    } else {
        containers::state(d, &ev.id)
            .await
            .map_err(crate::error::docker_error)?
    };
    let status = InstanceStatus::of_container(state.as_deref());
    set_status(app, id, &ev.id, status, &format!("event {}", ev.action)).await?;
    if matches!(ev.action.as_str(), "die" | "start" | "restart") {
        alert_on(app, d, id, &ev.id, &ev.action).await?;
    }
    Ok(())
}

/// How long after gpudock asked a container to stop its death is still
/// ours: the stop's grace and a margin for a slow daemon.
fn expected_for(app: &App) -> i64 {
    i64::from(app.config.instances.stop_timeout_secs) + 60
}

/// What a container's death or start means for the alerts: killed for
/// lack of memory, exited without anyone stopping it (`stopped_by_us`:
/// gpudock asked it to stop), or restarted by Docker (the rule's threshold
/// says how often is a loop).
pub fn alert_for(
    action: &str,
    f: &containers::ExitFacts,
    stopped_by_us: bool,
) -> Option<(crate::alerts::EventKind, Option<f64>, String)> {
    use crate::alerts::EventKind;
    match action {
        "die" if f.oom_killed => Some((
            EventKind::InstanceOom,
            None,
            format!("killed for lack of memory (exit code {})", f.exit_code),
        )),
        "die" if stopped_by_us => None,
        "die" => Some((
            EventKind::InstanceExited,
            Some(f.exit_code as f64),
            format!("exited with code {} without being stopped", f.exit_code),
        )),
        "start" | "restart" if f.restarts > 0 => Some((
            EventKind::InstanceRestartLoop,
            Some(f.restarts as f64),
            format!("restarted {} times by Docker", f.restarts),
        )),
        _ => None,
    }
}

/// Raises the alert a container event (`action`: die, start, restart)
/// calls for, if any.
async fn alert_on(
    app: &App,
    d: &Docker,
    id: InstanceId,
    container: &str,
    action: &str,
) -> Result<(), AppError> {
    let Some(facts) = containers::exit_facts(d, container)
        .await
        .map_err(crate::error::docker_error)?
    else {
        return Ok(());
    };
    let row = app
        .db
        .read(move |c| store::stop_requested(c, id).map_err(AppError::from))
        .await?;
    let Some((requested, node)) = row else {
        return Ok(());
    };
    let now = crate::db::now();
    let ours = requested.is_some_and(|at| now - at <= expected_for(app));
    let Some((kind, value, detail)) = alert_for(action, &facts, ours) else {
        return Ok(());
    };
    let raised = crate::alerts::Raised {
        kind,
        subject: crate::alerts::Subject::Instance(node, id),
        value,
        detail,
    };
    crate::alerts::raise_event(app, raised).await.map(drop)
}

async fn set_status(
    app: &App,
    id: InstanceId,
    container: &str,
    status: InstanceStatus,
    why: &str,
) -> Result<(), AppError> {
    let c = container.to_string();
    let changed = app
        .db
        .write(move |conn| {
            store::set_status(conn, id, &c, status, crate::db::now()).map_err(AppError::from)
        })
        .await?;
    if changed {
        log::info!("instance {id}: status {status} ({why})");
        if status == InstanceStatus::Missing {
            let detail = json!({"container_id": container, "why": why});
            system_audit(
                app,
                Outcome::Success,
                "instance.missing",
                "instance",
                id.to_string(),
                detail,
            )
            .await?;
        }
    }
    Ok(())
}

async fn system_audit(
    app: &App,
    outcome: Outcome,
    action: &'static str,
    kind: &'static str,
    id: String,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    audit::record(&app.db, Actor::system(), Source::local(), move |a, s| {
        Event::new(a, s, action, kind)
            .id(id)
            .outcome(outcome)
            .detail(detail)
    })
    .await
    .map_err(AppError::from)
}

/// Compares the node's containers with its instances (see the module doc).
pub async fn reconcile(app: &App, d: &Docker, node: NodeId) -> Result<(), AppError> {
    let listed = containers::list_labelled(d, LABEL_INSTALL, &app.install_id)
        .await
        .map_err(crate::error::docker_error)?;
    let mine: Vec<Listed> = listed
        .into_iter()
        .filter(|c| c.labels.get(LABEL_NODE).map(String::as_str) == Some(&node.to_string()))
        .collect();
    let rows = app
        .db
        .read(move |c| store::on_node(c, node).map_err(AppError::from))
        .await?;
    let by_id: HashMap<&str, &Listed> = mine.iter().map(|c| (c.id.as_str(), c)).collect();
    for row in &rows {
        if matches!(
            row.status,
            InstanceStatus::Creating | InstanceStatus::Deleting
        ) {
            if abandoned(row, app.generation) {
                abandon(app, d, row).await?;
            }
            continue;
        }
        let Some(cid) = &row.container_id else {
            continue;
        };
        let status =
            InstanceStatus::of_container(by_id.get(cid.as_str()).map(|c| c.state.as_str()));
        set_status(app, row.id, cid, status, "reconcile").await?;
        // A death the event stream missed (not followed yet, or broken).
        let died = matches!(status, InstanceStatus::Exited | InstanceStatus::Dead);
        if row.status == InstanceStatus::Running && died {
            alert_on(app, d, row.id, cid, "die").await?;
        }
    }
    report_orphans(app, node, &mine, &rows).await
}

/// Whether a row is a reservation whose creating process is gone, or a
/// deletion whose deleting process is gone: one that an older generation (a
/// previous start) made or began. Within this process a `creating` row
/// always has its job and a `deleting` row its request (each cleans up
/// after itself).
pub fn abandoned(row: &Tracked, generation: i64) -> bool {
    matches!(
        row.status,
        InstanceStatus::Creating | InstanceStatus::Deleting
    ) && row.generation < generation
}

/// A reservation whose creating process is gone, or a deletion that a
/// restart interrupted (the row stayed `deleting`): the container and data
/// volume go (absent ones are no error; a reservation's names are its own,
/// see `lifecycle::object_names`), then the row, audited as the system's.
/// A node that cannot be reached leaves it for the next round.
async fn abandon(app: &App, d: &Docker, row: &Tracked) -> Result<(), AppError> {
    let target = row
        .container_id
        .clone()
        .unwrap_or_else(|| row.objects.container.clone());
    containers::remove(d, &target, Some(&row.objects.volume))
        .await
        .map_err(crate::error::docker_error)?;
    let id = row.id;
    let gone = app
        .db
        .write(move |c| store::delete(c, id).map_err(AppError::from))
        .await?;
    let (outcome, action, detail) = if row.status == InstanceStatus::Deleting {
        if !gone {
            return Ok(());
        }
        log::warn!(
            "instance {id} ({}): its deletion was interrupted by a restart; finished",
            row.name
        );
        let detail = json!({"name": row.name, "container_id": row.container_id,
            "note": "finished after a restart interrupted it"});
        (Outcome::Success, "instance.delete", detail)
    } else {
        log::warn!(
            "instance {id} ({}): creation was interrupted by a restart; removed",
            row.name
        );
        let detail =
            json!({"name": row.name, "error": "interrupted: gpudock stopped while creating it"});
        (Outcome::Failure, "instance.create", detail)
    };
    system_audit(app, outcome, action, "instance", id.to_string(), detail).await
}

async fn report_orphans(
    app: &App,
    node: NodeId,
    mine: &[Listed],
    rows: &[Tracked],
) -> Result<(), AppError> {
    let now = crate::db::now();
    let orphans: Vec<Orphan> = mine
        .iter()
        .filter(|c| {
            let label = c
                .labels
                .get(LABEL_INSTANCE)
                .and_then(|v| v.parse::<i64>().ok().map(InstanceId));
            !rows.iter().any(|r| {
                Some(r.id) == label
                    && (r.container_id.as_deref() == Some(c.id.as_str())
                        || r.status == InstanceStatus::Creating)
            })
        })
        .map(|c| Orphan {
            node_id: node,
            container_id: c.id.clone(),
            name: c.name.clone(),
            instance_label: c.labels.get(LABEL_INSTANCE).cloned().unwrap_or_default(),
            state: c.state.clone(),
            first_seen: now,
            last_seen: now,
        })
        .collect();
    // Ids plausible for this installation only: a label set by hand to a
    // huge number must not exhaust the sequence.
    let highest = orphans
        .iter()
        .filter_map(|o| o.instance_label.parse::<i64>().ok())
        .filter(|id| (1..MAX_SKIPPED_ID).contains(id))
        .max();
    let fresh = app
        .db
        .write(move |c| {
            if let Some(seen) = highest {
                store::skip_ids_through(c, seen)?;
            }
            store::replace_orphans(c, node, &orphans, now).map_err(AppError::from)
        })
        .await?;
    for o in fresh {
        log::warn!(
            "node {node}: container {} ({}) is labelled for instance {}, which does not exist here; \
             it is kept and listed on the instances page",
            o.name,
            o.container_id,
            o.instance_label
        );
        let detail = json!({"node_id": node, "name": o.name, "instance_label": o.instance_label, "state": o.state});
        system_audit(
            app,
            Outcome::Success,
            "instance.orphan_found",
            "container",
            o.container_id.clone(),
            detail,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instances::store::ObjectNames;

    fn row(status: InstanceStatus, generation: i64) -> Tracked {
        Tracked {
            id: InstanceId(1),
            name: "x".into(),
            container_id: None,
            status,
            objects: ObjectNames::default(),
            generation,
        }
    }

    /// A restart in the same second as a crash: only the generation says
    /// whose a reservation is.
    #[test]
    fn container_deaths_and_restarts_become_the_right_alerts() {
        use crate::alerts::EventKind;
        let f = |exit_code, oom_killed, restarts| containers::ExitFacts {
            exit_code,
            oom_killed,
            restarts,
        };
        let kind = |a, facts, ours| alert_for(a, &facts, ours).map(|x| x.0);
        assert_eq!(
            kind("die", f(137, true, 0), true),
            Some(EventKind::InstanceOom)
        );
        assert_eq!(
            kind("die", f(137, false, 0), false),
            Some(EventKind::InstanceExited)
        );
        assert_eq!(
            kind("die", f(143, false, 0), true),
            None,
            "stopped by gpudock"
        );
        assert_eq!(kind("start", f(0, false, 0), false), None);
        let r = alert_for("restart", &f(1, false, 6), false).unwrap();
        assert_eq!((r.0, r.1), (EventKind::InstanceRestartLoop, Some(6.0)));
        assert_eq!(kind("stop", f(0, false, 9), false), None);
    }

    #[test]
    fn reservations_of_an_older_generation_are_abandoned_whatever_the_clock() {
        assert!(abandoned(&row(InstanceStatus::Creating, 6), 7));
        assert!(!abandoned(&row(InstanceStatus::Creating, 7), 7));
        assert!(!abandoned(&row(InstanceStatus::Running, 6), 7));
        assert!(abandoned(&row(InstanceStatus::Deleting, 6), 7));
        assert!(!abandoned(&row(InstanceStatus::Deleting, 7), 7));
    }
}
