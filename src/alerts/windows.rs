//! Maintenance windows (维护模式): per node, a start and an end during
//! which its alerts neither fire nor are announced; saved and deleted with
//! an audit record.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::manage::{By, audit, detail};
use crate::error::{AppError, FieldErrors};
use crate::ids::NodeId;

/// A maintenance window as submitted and shown.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WindowIn {
    pub node_id: Option<i64>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    pub id: i64,
    pub node_id: NodeId,
    pub node: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub reason: String,
    /// On now.
    pub active: bool,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

fn window_views(
    c: &Connection,
    only: Option<i64>,
    node: Option<NodeId>,
    now: i64,
) -> rusqlite::Result<Vec<WindowView>> {
    c.prepare_cached(
        "SELECT w.id, w.node_id, n.name, w.starts_at, w.ends_at, w.reason, w.created_by,
                w.created_at
         FROM maintenance_windows w JOIN nodes n ON n.id = w.node_id
         WHERE (?1 IS NULL OR w.id = ?1) AND (?2 IS NULL OR w.node_id = ?2)
         ORDER BY w.starts_at DESC, w.id DESC",
    )?
    .query_map(params![only, node], |r| {
        let (starts_at, ends_at): (i64, i64) = (r.get(3)?, r.get(4)?);
        Ok(WindowView {
            id: r.get(0)?,
            node_id: r.get(1)?,
            node: r.get(2)?,
            starts_at,
            ends_at,
            reason: r.get(5)?,
            active: starts_at <= now && now < ends_at,
            created_by: r.get(6)?,
            created_at: r.get(7)?,
        })
    })?
    .collect()
}

pub async fn windows(
    db: &crate::db::Db,
    node: Option<NodeId>,
) -> Result<Vec<WindowView>, AppError> {
    db.read(move |c| window_views(c, None, node, crate::db::now()).map_err(AppError::from))
        .await
}

pub async fn window(db: &crate::db::Db, id: i64) -> Result<WindowView, AppError> {
    db.read(move |c| window_views(c, Some(id), None, crate::db::now()).map_err(AppError::from))
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)
}

fn validate_window(c: &Connection, w: &WindowIn) -> Result<(NodeId, i64, i64, String), AppError> {
    let mut errors = FieldErrors::new();
    let reason = crate::validate::optional_text(&mut errors, "reason", &w.reason, 500);
    let node = w.node_id.map(NodeId);
    let found: Option<i64> = match node {
        Some(n) => c
            .query_row("SELECT id FROM nodes WHERE id = ?1", [n], |r| r.get(0))
            .optional()?,
        None => None,
    };
    if found.is_none() {
        detail(&mut errors, "node_id", "choose a node");
    }
    if w.starts_at.is_none() {
        detail(&mut errors, "starts_at", "a start time is needed");
    }
    match (w.starts_at, w.ends_at) {
        (_, None) => detail(&mut errors, "ends_at", "an end time is needed"),
        (Some(s), Some(e)) if e <= s => detail(&mut errors, "ends_at", "must be after the start"),
        _ => {}
    }
    match (errors.is_empty(), node, w.starts_at, w.ends_at) {
        (true, Some(n), Some(s), Some(e)) => Ok((n, s, e, reason)),
        _ => Err(AppError::Validation(errors)),
    }
}

/// Creates (`id` none) or replaces a maintenance window; returns it.
pub async fn save_window(
    db: &crate::db::Db,
    by: By,
    id: Option<i64>,
    input: WindowIn,
) -> Result<WindowView, AppError> {
    let id = db
        .write(move |c| {
            let (node, starts, ends, reason) = validate_window(c, &input)?;
            let tx = c.transaction()?;
            let now = crate::db::now();
            let action = match id {
                None => "maintenance_window.create",
                Some(_) => "maintenance_window.update",
            };
            let id = match id {
                None => tx.query_row(
                    "INSERT INTO maintenance_windows (node_id, starts_at, ends_at, reason,
                         created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    params![node, starts, ends, reason, by.actor.id.map(|u| u.0), now],
                    |r| r.get(0),
                )?,
                Some(id) => {
                    let n = tx.execute(
                        "UPDATE maintenance_windows SET node_id = ?2, starts_at = ?3,
                             ends_at = ?4, reason = ?5 WHERE id = ?1",
                        params![id, node, starts, ends, reason],
                    )?;
                    if n == 0 {
                        return Err(AppError::NotFound);
                    }
                    id
                }
            };
            let d =
                json!({"node_id": node, "starts_at": starts, "ends_at": ends, "reason": reason});
            audit(&tx, &by, action, "maintenance_window", id, d)?;
            tx.commit()?;
            Ok::<_, AppError>(id)
        })
        .await?;
    window(db, id).await
}

pub async fn delete_window(db: &crate::db::Db, by: By, id: i64) -> Result<(), AppError> {
    db.write(move |c| {
        let tx = c.transaction()?;
        let node: i64 = tx
            .query_row(
                "DELETE FROM maintenance_windows WHERE id = ?1 RETURNING node_id",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(AppError::NotFound)?;
        let d = json!({ "node_id": node });
        audit(
            &tx,
            &by,
            "maintenance_window.delete",
            "maintenance_window",
            id,
            d,
        )?;
        tx.commit()?;
        Ok(())
    })
    .await
}
