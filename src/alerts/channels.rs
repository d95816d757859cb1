//! Notification channels as the API and pages manage them: create, change
//! (the secret kept unless a new one is given), delete, send a test
//! message, read the delivery log. Secrets are sealed before they are
//! stored and never shown.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::manage::By;
use super::model::{Level, RuleId};
use super::notify::{self, Event, Notice};
use super::store::{self, DeliveryRow};
use crate::audit::{self, Event as AuditEvent};
use crate::db::Db;
use crate::error::{AppError, FieldError, FieldErrors};
use crate::secrets::Sealer;

/// A channel as submitted. `kind` is fixed at creation; on a change an
/// absent (or empty) `secret` keeps the stored one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChannelIn {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret: Option<String>,
    pub enabled: Option<Value>,
}

/// A channel as shown: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub enabled: bool,
    pub has_secret: bool,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The kinds that can be sent so far.
pub const KINDS: &[&str] = &["webhook"];

struct Valid {
    name: String,
    url: String,
    secret: Option<String>,
    enabled: bool,
}

fn validate(input: &ChannelIn, creating: bool) -> Result<Valid, AppError> {
    let mut errors = FieldErrors::new();
    let name = crate::validate::required_text(&mut errors, "name", &input.name, 100);
    if !KINDS.contains(&input.kind.trim()) {
        errors.insert(
            "kind",
            FieldError::with_detail("err.alert_field", format!("one of: {}", KINDS.join(", "))),
        );
    }
    let url = crate::validate::required_text(&mut errors, "url", &input.url, 2000);
    if let (false, Err(m)) = (url.is_empty(), notify::valid_url(&url)) {
        errors.insert("url", FieldError::with_detail("err.alert_url", m));
    }
    let secret = input.secret.clone().filter(|s| !s.is_empty());
    match &secret {
        Some(s) if s.chars().count() < 16 || s.chars().any(char::is_control) => {
            errors.insert("secret", FieldError::new("err.alert_secret"));
        }
        None if creating => {
            errors.insert("secret", FieldError::new("err.alert_secret"));
        }
        _ => {}
    }
    let enabled = crate::validate::bool_field(&mut errors, "enabled", input.enabled.as_ref(), true);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    Ok(Valid {
        name,
        url: url.trim().to_string(),
        secret,
        enabled,
    })
}

fn views(c: &Connection, only: Option<i64>) -> rusqlite::Result<Vec<ChannelView>> {
    c.prepare_cached(
        "SELECT id, name, kind, url, enabled, length(secret_sealed) > 0, created_by, created_at,
                updated_at
         FROM notification_channels WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
    )?
    .query_map([only], |r| {
        Ok(ChannelView {
            id: r.get(0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            url: r.get(3)?,
            enabled: r.get(4)?,
            has_secret: r.get(5)?,
            created_by: r.get(6)?,
            created_at: r.get(7)?,
            updated_at: r.get(8)?,
        })
    })?
    .collect()
}

pub async fn list(db: &Db) -> Result<Vec<ChannelView>, AppError> {
    db.read(|c| views(c, None).map_err(AppError::from)).await
}

pub async fn get(db: &Db, id: i64) -> Result<ChannelView, AppError> {
    db.read(move |c| views(c, Some(id)).map_err(AppError::from))
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)
}

fn audit(
    tx: &rusqlite::Transaction<'_>,
    by: &By,
    action: &str,
    id: i64,
    d: Value,
) -> Result<(), AppError> {
    let e = AuditEvent::new(&by.actor, &by.source, action, "notification_channel");
    audit::append(tx, &e.id(id).detail(d))?;
    Ok(())
}

/// Creates a channel; returns it.
pub async fn create(
    db: &Db,
    sealer: &Sealer,
    by: By,
    input: ChannelIn,
) -> Result<ChannelView, AppError> {
    let v = validate(&input, true)?;
    let sealed = sealer.seal(v.secret.as_deref().unwrap_or_default().as_bytes())?;
    let kind = input.kind.trim().to_string();
    let id = db
        .write(move |c| {
            let tx = c.transaction()?;
            let now = crate::db::now();
            let id: i64 = tx
                .query_row(
                    "INSERT INTO notification_channels (name, kind, url, secret_sealed, enabled,
                         created_by, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
                    params![
                        v.name,
                        kind,
                        v.url,
                        sealed,
                        v.enabled,
                        by.actor.id.map(|u| u.0),
                        now
                    ],
                    |r| r.get(0),
                )
                .map_err(crate::error::on_unique("name"))?;
            let d = json!({"name": v.name, "kind": kind, "url": v.url, "enabled": v.enabled});
            audit(&tx, &by, "notification_channel.create", id, d)?;
            tx.commit()?;
            Ok::<_, AppError>(id)
        })
        .await?;
    get(db, id).await
}

/// Changes a channel (its kind stays); a new secret replaces the old one.
pub async fn update(
    db: &Db,
    sealer: &Sealer,
    by: By,
    id: i64,
    input: ChannelIn,
) -> Result<ChannelView, AppError> {
    let cur = get(db, id).await?;
    if input.kind.trim() != cur.kind {
        return Err(AppError::Validation(FieldErrors::from([(
            "kind",
            FieldError::with_detail("err.alert_field", "a channel's kind cannot change"),
        )])));
    }
    let v = validate(&input, false)?;
    let sealed = match &v.secret {
        Some(s) => Some(sealer.seal(s.as_bytes())?),
        None => None,
    };
    db.write(move |c| {
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE notification_channels SET name = ?2, url = ?3, enabled = ?4,
                 secret_sealed = COALESCE(?5, secret_sealed), updated_at = ?6 WHERE id = ?1",
            params![id, v.name, v.url, v.enabled, sealed, crate::db::now()],
        )
        .map_err(crate::error::on_unique("name"))?;
        let d = json!({"name": v.name, "url": v.url, "enabled": v.enabled,
                       "secret_changed": sealed.is_some()});
        audit(&tx, &by, "notification_channel.update", id, d)?;
        tx.commit()?;
        Ok::<_, AppError>(())
    })
    .await?;
    get(db, id).await
}

pub async fn delete(db: &Db, by: By, id: i64) -> Result<(), AppError> {
    db.write(move |c| {
        let tx = c.transaction()?;
        let name: String = tx
            .query_row(
                "DELETE FROM notification_channels WHERE id = ?1 RETURNING name",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(AppError::NotFound)?;
        audit(
            &tx,
            &by,
            "notification_channel.delete",
            id,
            json!({ "name": name }),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await
}

/// The delivery log of a channel, newest first (at most 200 rows).
pub async fn deliveries(db: &Db, id: i64) -> Result<Vec<DeliveryRow>, AppError> {
    get(db, id).await?;
    let mut rows = db
        .read(move |c| store::deliveries(c, id).map_err(AppError::from))
        .await?;
    rows.reverse();
    rows.truncate(200);
    Ok(rows)
}

/// What a test message did.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub sent: bool,
    /// This test's tries, in order.
    pub tries: Vec<DeliveryRow>,
}

/// Sends a test message to a channel now, with the retries and log of a
/// real one (the tries have no alert).
pub async fn test(
    db: &Db,
    sealer: Arc<Sealer>,
    by: By,
    id: i64,
    backoff: Duration,
) -> Result<TestResult, AppError> {
    let ch = get(db, id).await?;
    let (url, sealed): (String, Vec<u8>) = db
        .read(move |c| {
            c.query_row(
                "SELECT url, secret_sealed FROM notification_channels WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(AppError::from)
        })
        .await?;
    let before = db
        .read(move |c| store::deliveries(c, id).map_err(AppError::from))
        .await?
        .len();
    let s = notify::Sender {
        db: db.clone(),
        sealer: sealer.clone(),
        backoff,
    };
    let secret = tokio::task::spawn_blocking(move || sealer.unseal(&sealed))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let target = notify::Target {
        channel_id: id,
        url,
        secret,
    };
    let now = crate::db::now();
    let notice = Notice {
        event: Event::Test,
        alert_id: 0,
        rule_id: RuleId(0),
        rule: String::new(),
        level: Level::P3,
        message: format!("gpudock test message to channel {}", ch.name),
        target: String::new(),
        node_id: None,
        instance_id: None,
        metric: String::new(),
        value: None,
        triggered_at: now,
        resolved_at: None,
        reason: None,
        group: None,
    };
    let body = serde_json::to_vec(&notice).map_err(|e| AppError::Internal(e.to_string()))?;
    let sent = notify::deliver(&s, &target, None, &body).await;
    let tries = db
        .read(move |c| store::deliveries(c, id).map_err(AppError::from))
        .await?
        .split_off(before);
    let d = json!({ "sent": sent, "tries": tries.len() });
    db.write(move |c| {
        let tx = c.transaction()?;
        audit(&tx, &by, "notification_channel.test", id, d)?;
        tx.commit().map_err(AppError::from)
    })
    .await?;
    Ok(TestResult { sent, tries })
}
