//! The alert list (告警列表) with its filters, scoped in the query (a
//! customer reaches their tenant's or their own instances' alerts), the
//! firing counts of the dashboard, and acknowledging or closing an alert
//! with a note (audited).

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::manage::{By, audit, detail};
use super::model::{Level, RuleId};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::ids::{InstanceId, NodeId};

/// Filters of the alert list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AlertFilter {
    pub level: Option<String>,
    pub status: Option<String>,
    pub node: Option<i64>,
    /// triggered at or after (unix seconds)
    pub since: Option<i64>,
    /// triggered before (unix seconds)
    pub until: Option<i64>,
    pub limit: Option<i64>,
}

/// One alert as the list and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: i64,
    pub rule_id: RuleId,
    pub rule: String,
    pub target: String,
    pub node_id: Option<NodeId>,
    pub node: Option<String>,
    pub instance_id: Option<InstanceId>,
    pub instance: Option<String>,
    pub metric: String,
    pub value: Option<f64>,
    pub level: Level,
    pub message: String,
    pub status: String,
    pub triggered_at: i64,
    pub resolved_at: Option<i64>,
    pub resolved_reason: Option<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub note: String,
    /// Recorded but not announced: `node_down` (its node was unreachable).
    pub suppressed: Option<String>,
    /// The event of an event rule's alert (null for a metric rule's).
    pub event: Option<String>,
}

/// `(tenant, user)` filters of a scope: customers reach the instance
/// alerts of their tenant (owners) or of their own instances (members).
fn scope_filters(scope: crate::ids::Scope) -> (bool, Option<i64>, Option<i64>) {
    use crate::ids::Scope as S;
    match scope {
        S::All => (false, None, None),
        S::Tenant(t) => (true, Some(t.0), None),
        S::User(u, _) => (true, None, Some(u.0)),
    }
}

fn validate_filter(f: &AlertFilter) -> Result<(), AppError> {
    let mut errors = FieldErrors::new();
    if f.level
        .as_deref()
        .is_some_and(|l| Level::parse(l).is_none())
    {
        detail(&mut errors, "level", "one of P0, P1, P2, P3");
    }
    if f.status
        .as_deref()
        .is_some_and(|s| !matches!(s, "firing" | "acknowledged" | "resolved" | "open"))
    {
        detail(
            &mut errors,
            "status",
            "one of firing, acknowledged, resolved, open",
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

fn alert_views(
    c: &Connection,
    scope: crate::ids::Scope,
    f: &AlertFilter,
    only: Option<i64>,
) -> rusqlite::Result<Vec<AlertView>> {
    let (customer, tenant, user) = scope_filters(scope);
    let mut st = c.prepare_cached(
        "SELECT a.id, a.rule_id, r.name, a.target, a.node_id, n.name, a.instance_id, i.name,
                a.metric, a.value, a.level, a.message, a.status, a.triggered_at, a.resolved_at,
                a.resolved_reason, u.username, a.acknowledged_at, a.note, a.suppressed, r.event
         FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id
         LEFT JOIN nodes n ON n.id = a.node_id
         LEFT JOIN instances i ON i.id = a.instance_id
         LEFT JOIN users u ON u.id = a.acknowledged_by
         WHERE (?1 = 0 OR a.instance_id IS NOT NULL)
           AND (?2 IS NULL OR a.tenant_id = ?2)
           AND (?3 IS NULL OR i.user_id = ?3)
           AND (?4 IS NULL OR a.id = ?4)
           AND (?5 IS NULL OR a.level = ?5)
           AND (?6 IS NULL OR a.status = ?6 OR (?6 = 'open' AND a.status != 'resolved'))
           AND (?7 IS NULL OR a.node_id = ?7)
           AND (?8 IS NULL OR a.triggered_at >= ?8)
           AND (?9 IS NULL OR a.triggered_at < ?9)
         ORDER BY a.id DESC LIMIT ?10",
    )?;
    let limit = f.limit.unwrap_or(200).clamp(1, 1000);
    st.query_map(
        params![
            customer, tenant, user, only, f.level, f.status, f.node, f.since, f.until, limit
        ],
        |r| {
            Ok(AlertView {
                id: r.get(0)?,
                rule_id: r.get(1)?,
                rule: r.get(2)?,
                target: r.get(3)?,
                node_id: r.get(4)?,
                node: r.get(5)?,
                instance_id: r.get(6)?,
                instance: r.get(7)?,
                metric: r.get(8)?,
                value: r.get(9)?,
                level: r.get(10)?,
                message: r.get(11)?,
                status: r.get(12)?,
                triggered_at: r.get(13)?,
                resolved_at: r.get(14)?,
                resolved_reason: r.get(15)?,
                acknowledged_by: r.get(16)?,
                acknowledged_at: r.get(17)?,
                note: r.get(18)?,
                suppressed: r.get(19)?,
                event: r.get(20)?,
            })
        },
    )?
    .collect()
}

/// The alerts `scope` reaches that pass `filter`, newest first.
pub async fn alerts(
    db: &crate::db::Db,
    scope: crate::ids::Scope,
    filter: AlertFilter,
) -> Result<Vec<AlertView>, AppError> {
    validate_filter(&filter)?;
    db.read(move |c| alert_views(c, scope, &filter, None).map_err(AppError::from))
        .await
}

/// One alert `scope` reaches.
pub async fn alert(
    db: &crate::db::Db,
    scope: crate::ids::Scope,
    id: i64,
) -> Result<AlertView, AppError> {
    db.read(move |c| {
        alert_views(c, scope, &AlertFilter::default(), Some(id)).map_err(AppError::from)
    })
    .await?
    .into_iter()
    .next()
    .ok_or(AppError::NotFound)
}

/// Counts of firing (unacknowledged) alerts `scope` reaches, by level, P0
/// first: counted in the query (scoped like the list), however many.
pub async fn firing_by_level(
    db: &crate::db::Db,
    scope: crate::ids::Scope,
) -> Result<[(Level, i64); 4], AppError> {
    let (customer, tenant, user) = scope_filters(scope);
    let counts: Vec<(Level, i64)> = db
        .read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT a.level, COUNT(*)
                 FROM alert_records a LEFT JOIN instances i ON i.id = a.instance_id
                 WHERE a.status = 'firing'
                   AND (?1 = 0 OR a.instance_id IS NOT NULL)
                   AND (?2 IS NULL OR a.tenant_id = ?2)
                   AND (?3 IS NULL OR i.user_id = ?3)
                 GROUP BY a.level",
            )?;
            st.query_map(params![customer, tenant, user], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(AppError::from)
        })
        .await?;
    let mut out = [
        (Level::P0, 0),
        (Level::P1, 0),
        (Level::P2, 0),
        (Level::P3, 0),
    ];
    for (level, n) in counts {
        if let Some(slot) = out.iter_mut().find(|(l, _)| *l == level) {
            slot.1 = n;
        }
    }
    Ok(out)
}

/// Acknowledge (the alert stays open, is not announced again) or close
/// (resolved by hand) an open alert, with a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    Ack,
    Close,
}

pub async fn handle(
    db: &crate::db::Db,
    by: By,
    id: i64,
    how: Handle,
    note: &str,
) -> Result<AlertView, AppError> {
    let mut errors = FieldErrors::new();
    let note = crate::validate::multiline_text(&mut errors, "note", note, 2000);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    db.write(move |c| {
        let tx = c.transaction()?;
        let now = crate::db::now();
        let user = by.actor.id.map(|u| u.0);
        let n = match how {
            Handle::Ack => tx.execute(
                "UPDATE alert_records SET status = 'acknowledged', acknowledged_by = ?2,
                     acknowledged_at = ?3, note = ?4 WHERE id = ?1 AND status = 'firing'",
                params![id, user, now, note],
            )?,
            Handle::Close => tx.execute(
                "UPDATE alert_records SET status = 'resolved', resolved_at = ?2,
                     resolved_reason = 'closed', note = ?3,
                     acknowledged_by = COALESCE(acknowledged_by, ?4),
                     acknowledged_at = COALESCE(acknowledged_at, ?2)
                 WHERE id = ?1 AND status != 'resolved'",
                params![id, now, note, user],
            )?,
        };
        if n == 0 {
            let exists: Option<String> = tx
                .query_row(
                    "SELECT status FROM alert_records WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            return Err(match exists {
                None => AppError::NotFound,
                Some(_) => AppError::Conflict(FieldErrors::from([(
                    "status",
                    FieldError::new("err.alert_state"),
                )])),
            });
        }
        let action = match how {
            Handle::Ack => "alert.ack",
            Handle::Close => "alert.close",
        };
        audit(&tx, &by, action, "alert", id, json!({ "note": note }))?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    alert(db, crate::ids::Scope::All, id).await
}
