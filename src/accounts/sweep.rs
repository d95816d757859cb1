//! The housekeeping task of account opening (seed §9.3): requests left
//! processing by a server that stopped are failed as interrupted (once, at
//! start); pending requests older than `accounts.pending_expiry_days`
//! expire, and expired ones are deleted `accounts.expired_retention_days`
//! later (hourly). Owned: it ends when the app's token is cancelled.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::store;
use crate::app::App;
use crate::audit::{self, Actor, Event, Source};
use crate::error::AppError;

const EVERY: Duration = Duration::from_secs(3600);
const DAY: i64 = 86_400;

pub const INTERRUPTED: &str = "the server stopped while the account was being opened; the account may or may \
    not exist on the node: check the node, then process the request again";

pub async fn run(app: App, cancel: CancellationToken) {
    if let Err(e) = interrupted(&app).await {
        log::warn!("account openings: marking interrupted ones: {e}");
    }
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        match sweep(&app, crate::db::now()).await {
            Ok((0, 0)) => {}
            Ok((expired, purged)) => {
                log::info!(
                    "account openings: {expired} expired, {purged} old expired ones deleted"
                );
            }
            Err(e) => log::warn!("account openings: sweep failed: {e}"),
        }
    }
}

/// Fails the requests a previous process left in processing.
pub async fn interrupted(app: &App) -> Result<usize, AppError> {
    let generation = app.generation;
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids = store::interrupt_stale(&tx, generation, INTERRUPTED, crate::db::now())?;
            let (actor, src) = (Actor::system(), Source::local());
            for id in &ids {
                audit::append(
                    &tx,
                    &Event::new(&actor, &src, "account_opening.fail", "account_opening")
                        .id(id)
                        .outcome(audit::Outcome::Failure)
                        .detail(json!({"kind": "interrupted"})),
                )?;
            }
            tx.commit()?;
            Ok(ids.len())
        })
        .await
}

/// Expires old pending requests and deletes long-expired ones, as of
/// `now`; returns (expired, deleted).
pub async fn sweep(app: &App, now: i64) -> Result<(usize, usize), AppError> {
    let cfg = &app.config.accounts;
    let expire_before = now - i64::from(cfg.pending_expiry_days) * DAY;
    let purge_before = now - i64::from(cfg.expired_retention_days) * DAY;
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let expired = store::expire_pending(&tx, expire_before, now)?;
            let (actor, src) = (Actor::system(), Source::local());
            for (id, username) in &expired {
                audit::append(
                    &tx,
                    &Event::new(&actor, &src, "account_opening.expire", "account_opening")
                        .id(id)
                        .detail(json!({"username": username})),
                )?;
            }
            let purged = store::purge_expired(&tx, purge_before)?;
            if purged > 0 {
                audit::append(
                    &tx,
                    &Event::new(&actor, &src, "account_opening.purge", "account_opening")
                        .detail(json!({"deleted": purged, "expired_before": purge_before})),
                )?;
            }
            tx.commit()?;
            Ok((expired.len(), purged))
        })
        .await
}
