//! Managing alerts: rules, channels and maintenance windows as the API and
//! pages see them (validated input, views without secrets), the alert list
//! with its filters scoped in the query, and acknowledging or closing an
//! alert (in `list`), maintenance windows (in `windows`). Every change is
//! audited in its own transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::eval::Reason;
use super::events::EventKind;
use super::model::{self, Combine, ConditionInput, Level, RuleId, Scope};
use crate::audit::{self, Actor, Event, Source};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::metrics::model::Kind;

pub use super::list::{AlertFilter, AlertView, Handle, alert, alerts, firing_by_level, handle};
pub use super::windows::{WindowIn, WindowView, delete_window, save_window, window, windows};

/// One condition as the API takes and shows it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ConditionIn {
    pub metric: String,
    pub condition: String,
    pub threshold: Value,
}

/// A metric rule as submitted (`POST` and `PUT` take the whole rule). One
/// condition is given by `metric`, `condition`, `threshold`; several by
/// `conditions` joined by `combine`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuleIn {
    pub name: String,
    pub description: String,
    /// all | nodes | instances
    pub scope: Option<String>,
    pub scope_ids: Vec<i64>,
    /// The kind of target the metric belongs to (node | gpu | instance);
    /// needed only when the metric name exists for several kinds.
    pub target: Option<String>,
    pub metric: Option<String>,
    pub condition: Option<String>,
    pub threshold: Option<Value>,
    pub conditions: Option<Vec<ConditionIn>>,
    pub combine: Option<String>,
    /// Seconds the conditions must hold.
    pub duration: Option<Value>,
    pub level: String,
    pub enabled: Option<Value>,
    pub channels: Vec<i64>,
    /// Users who also get its alerts by e-mail (those they may see).
    pub notify_users: Vec<i64>,
    /// Seconds before a still-firing alert is announced again (0: never).
    pub silence: Option<Value>,
    pub tags: Vec<String>,
    /// An event rule's event (instead of `metric`): `node_unreachable`,
    /// `instance_exited`, ... (see `alerts::EventKind`); `threshold` is then
    /// the event's N where it has one.
    pub event: Option<String>,
}

/// A rule that passed validation.
struct ValidRule {
    name: String,
    description: String,
    scope: Scope,
    kind: Kind,
    combine: Combine,
    conditions: Vec<model::Condition>,
    duration: i64,
    level: Level,
    enabled: bool,
    channels: Vec<i64>,
    notify_users: Vec<i64>,
    silence: i64,
    tags: Vec<String>,
    /// An event rule: its event and threshold (no conditions then).
    event: Option<(EventKind, Option<f64>)>,
}

/// A refused field: what is wrong (an i18n key).
pub(super) fn detail(errors: &mut FieldErrors, f: &'static str, key: &'static str) {
    errors.insert(f, FieldError::new(key));
}

/// A refused field, with the value it concerns (language-neutral).
fn detail_about(errors: &mut FieldErrors, f: &'static str, key: &'static str, about: String) {
    errors.insert(f, FieldError::with_detail(key, about));
}

/// A whole number of seconds from 0 to a week, or the default when absent.
fn seconds(errors: &mut FieldErrors, f: &'static str, v: Option<&Value>, default: i64) -> i64 {
    match v {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_i64().filter(|s| (0..=7 * 86_400).contains(s)) {
            Some(s) => s,
            None => {
                detail(errors, f, "err.alert_seconds");
                default
            }
        },
    }
}

fn threshold(errors: &mut FieldErrors, v: Option<&Value>) -> f64 {
    match v.and_then(Value::as_f64).filter(|x| x.is_finite()) {
        Some(x) => x,
        None => {
            detail(errors, "threshold", "err.alert_number");
            0.0
        }
    }
}

fn parse_kind(s: &str) -> Option<Kind> {
    match s {
        "node" => Some(Kind::Node),
        "gpu" => Some(Kind::Gpu),
        "instance" => Some(Kind::Instance),
        _ => None,
    }
}

/// The kind a metric name belongs to: the one given, or the only kind that
/// has it.
fn kind_for(errors: &mut FieldErrors, given: Option<&str>, metric: &str) -> Option<Kind> {
    if let Some(t) = given {
        let k = parse_kind(t);
        if k.is_none() {
            detail_about(errors, "target", "err.one_of", "node, gpu, instance".into());
        }
        return k;
    }
    let kinds: Vec<Kind> = [Kind::Node, Kind::Gpu, Kind::Instance]
        .into_iter()
        .filter(|k| model::known_metric(*k, metric).is_some())
        .collect();
    match kinds.as_slice() {
        [k] => Some(*k),
        [] => {
            detail_about(
                errors,
                "metric",
                "err.alert_unknown_metric",
                metric.to_string(),
            );
            None
        }
        _ => {
            detail(errors, "target", "err.alert_target_needed");
            None
        }
    }
}

/// The event of an event rule and its threshold (the kind's default when
/// none is given), or field errors; metric fields beside it are refused.
fn validate_event(
    errors: &mut FieldErrors,
    input: &RuleIn,
    event: &str,
) -> Option<(EventKind, Option<f64>)> {
    let kind = EventKind::parse(event.trim());
    if kind.is_none() {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        detail_about(errors, "event", "err.one_of", known.join(", "));
    }
    if input.metric.is_some() || input.conditions.is_some() || input.condition.is_some() {
        detail(errors, "metric", "err.alert_event_no_metric");
    }
    let kind = kind?;
    let threshold = match (kind.default_threshold(), input.threshold.as_ref()) {
        (_, None | Some(Value::Null)) => kind.default_threshold(),
        (None, Some(_)) => {
            detail(errors, "threshold", "err.alert_event_no_threshold");
            None
        }
        (Some(_), Some(v)) => match v.as_f64().filter(|x| x.is_finite() && *x >= 0.0) {
            Some(x) => Some(x),
            None => {
                detail(errors, "threshold", "err.alert_non_negative");
                None
            }
        },
    };
    Some((kind, threshold))
}

fn validate_rule(input: &RuleIn) -> Result<ValidRule, AppError> {
    let mut errors = FieldErrors::new();
    if let Some(event) = &input.event {
        let ev = validate_event(&mut errors, input, event);
        return common(input, errors, |_| {
            ev.map(|e| (Kind::Node, Combine::And, Vec::new(), Some(e)))
        });
    }

    let combine = Combine::parse(input.combine.as_deref().unwrap_or("and"));
    if combine.is_none() {
        detail(&mut errors, "combine", "and or or");
    }
    let conds: Vec<ConditionIn> = match (&input.conditions, &input.metric) {
        (Some(c), None) => c.clone(),
        (None, Some(m)) => vec![ConditionIn {
            metric: m.clone(),
            condition: input.condition.clone().unwrap_or_default(),
            threshold: input.threshold.clone().unwrap_or(Value::Null),
        }],
        (Some(_), Some(_)) => {
            detail(&mut errors, "metric", "give metric or conditions, not both");
            Vec::new()
        }
        (None, None) => {
            detail(&mut errors, "metric", "a metric is needed");
            Vec::new()
        }
    };
    let kind = conds
        .first()
        .and_then(|c| kind_for(&mut errors, input.target.as_deref(), c.metric.trim()));
    let inputs: Vec<ConditionInput> = conds
        .iter()
        .map(|c| ConditionInput {
            kind: kind.map_or("", Kind::as_str).to_string(),
            metric: c.metric.trim().to_string(),
            op: c.condition.clone(),
            threshold: threshold(&mut errors, Some(&c.threshold)),
        })
        .collect();
    common(input, errors, |errors| {
        let scope = scope_of(errors, input)?;
        let (_, combine) = (kind?, combine?);
        match model::validate_conditions(&scope, &inputs) {
            Ok((kind, conditions)) => Some((kind, combine, conditions, None)),
            Err(e) => {
                errors.insert(
                    e.field,
                    match e.detail {
                        Some(d) => FieldError::with_detail(e.key, d),
                        None => FieldError::new(e.key),
                    },
                );
                None
            }
        }
    })
}

type Checked = (
    Kind,
    Combine,
    Vec<model::Condition>,
    Option<(EventKind, Option<f64>)>,
);

fn scope_of(errors: &mut FieldErrors, input: &RuleIn) -> Option<Scope> {
    match input.scope.as_deref().unwrap_or("all") {
        s @ ("all" | "nodes" | "instances") => Scope::from_columns(s, &input.scope_ids),
        _ => {
            detail_about(
                errors,
                "scope",
                "err.one_of",
                "all, nodes, instances".into(),
            );
            None
        }
    }
}

/// The fields metric and event rules share, checked beside what `what`
/// checks (conditions or the event).
fn common(
    input: &RuleIn,
    mut errors: FieldErrors,
    what: impl FnOnce(&mut FieldErrors) -> Option<Checked>,
) -> Result<ValidRule, AppError> {
    let name = crate::validate::required_text(&mut errors, "name", &input.name, 100);
    let description =
        crate::validate::optional_text(&mut errors, "description", &input.description, 500);
    let level = Level::parse(input.level.trim());
    if level.is_none() {
        detail(&mut errors, "level", "one of P0, P1, P2, P3");
    }
    let scope = scope_of(&mut errors, input);
    let duration = seconds(&mut errors, "duration", input.duration.as_ref(), 0);
    let silence = seconds(&mut errors, "silence", input.silence.as_ref(), 3600);
    let enabled = crate::validate::bool_field(&mut errors, "enabled", input.enabled.as_ref(), true);
    let mut tags = Vec::with_capacity(input.tags.len());
    for t in &input.tags {
        tags.push(crate::validate::required_text(&mut errors, "tags", t, 40));
    }
    let checked = what(&mut errors);
    match (errors.is_empty(), checked, scope, level) {
        (true, Some((kind, combine, conditions, event)), Some(scope), Some(level)) => {
            Ok(ValidRule {
                name,
                description,
                scope,
                kind,
                combine,
                conditions,
                duration,
                level,
                enabled,
                channels: input.channels.clone(),
                notify_users: input.notify_users.clone(),
                silence,
                tags,
                event,
            })
        }
        _ => Err(AppError::Validation(errors)),
    }
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    pub id: RuleId,
    pub name: String,
    pub description: String,
    pub scope: String,
    pub scope_ids: Vec<i64>,
    pub target: String,
    pub combine: String,
    pub metric: String,
    pub condition: String,
    pub threshold: f64,
    pub conditions: Vec<CondView>,
    pub duration: i64,
    pub level: Level,
    pub enabled: bool,
    pub channels: Vec<i64>,
    pub notify_users: Vec<i64>,
    pub silence: i64,
    pub tags: Vec<String>,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// An event rule's event (`threshold` is then its N; null without one).
    pub event: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CondView {
    pub metric: String,
    pub condition: String,
    pub threshold: f64,
}

fn rule_views(c: &Connection, only: Option<RuleId>) -> rusqlite::Result<Vec<RuleView>> {
    let mut st = c.prepare(
        "SELECT id, name, description, scope, scope_ids, combine, duration_s, level, enabled,
                silence_s, tags, created_by, created_at, updated_at, event, event_threshold
         FROM alert_rules WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
    )?;
    let mut out: Vec<RuleView> = st
        .query_map([only], |r| {
            let json = |i| -> rusqlite::Result<String> { r.get(i) };
            let event_threshold: Option<f64> = r.get(15)?;
            let view = RuleView {
                id: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                scope: r.get(3)?,
                scope_ids: serde_json::from_str(&json(4)?).unwrap_or_default(),
                target: String::new(),
                combine: r.get(5)?,
                metric: String::new(),
                condition: String::new(),
                threshold: 0.0,
                conditions: Vec::new(),
                duration: r.get(6)?,
                level: r.get(7)?,
                enabled: r.get(8)?,
                channels: Vec::new(),
                notify_users: Vec::new(),
                silence: r.get(9)?,
                tags: serde_json::from_str(&json(10)?).unwrap_or_default(),
                created_by: r.get(11)?,
                created_at: r.get(12)?,
                updated_at: r.get(13)?,
                event: r.get(14)?,
            };
            Ok((view, event_threshold))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(mut v, t)| {
            if let Some(e) = v.event.as_deref().and_then(EventKind::parse) {
                v.target = e.subject_kind().to_string();
                v.threshold = t.unwrap_or(0.0);
            }
            v
        })
        .collect();
    let mut conds = c.prepare_cached(
        "SELECT kind, metric, op, threshold FROM alert_conditions WHERE rule_id = ?1 ORDER BY position",
    )?;
    let mut chans = c.prepare_cached(
        "SELECT channel_id FROM alert_rule_channels WHERE rule_id = ?1 ORDER BY channel_id",
    )?;
    for v in &mut out {
        for row in conds.query_map([v.id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                CondView {
                    metric: r.get(1)?,
                    condition: r.get(2)?,
                    threshold: r.get(3)?,
                },
            ))
        })? {
            let (kind, cond) = row?;
            if v.conditions.is_empty() {
                v.target = kind;
                v.metric = cond.metric.clone();
                v.condition = cond.condition.clone();
                v.threshold = cond.threshold;
            }
            v.conditions.push(cond);
        }
        v.channels = chans
            .query_map([v.id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        v.notify_users = super::recipients::of_rule(c, v.id)?;
    }
    Ok(out)
}

/// Every rule, or one (`None`: no such rule).
pub async fn rules(db: &crate::db::Db) -> Result<Vec<RuleView>, AppError> {
    db.read(|c| rule_views(c, None).map_err(AppError::from))
        .await
}

/// The users a rule may notify (id, name), for the rule form.
pub async fn notify_choices(db: &crate::db::Db) -> Result<Vec<(i64, String)>, AppError> {
    db.read(|c| super::recipients::choices(c).map_err(AppError::from))
        .await
}

pub async fn rule(db: &crate::db::Db, id: RuleId) -> Result<RuleView, AppError> {
    db.read(move |c| rule_views(c, Some(id)).map_err(AppError::from))
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)
}

/// Who changes something, for the audit.
pub struct By {
    pub actor: Actor,
    pub source: Source,
}

pub(super) fn audit(
    tx: &Transaction<'_>,
    by: &By,
    action: &str,
    kind: &str,
    id: i64,
    detail: Value,
) -> Result<(), AppError> {
    audit::append(
        tx,
        &Event::new(&by.actor, &by.source, action, kind)
            .id(id)
            .detail(detail),
    )?;
    Ok(())
}

/// Channels that exist, or a field error naming the first that does not.
fn check_channels(tx: &Transaction<'_>, ids: &[i64]) -> Result<(), AppError> {
    for id in ids {
        let found: Option<i64> = tx
            .query_row(
                "SELECT id FROM notification_channels WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        if found.is_none() {
            return Err(AppError::field("channels", "err.alert_channel"));
        }
    }
    Ok(())
}

fn write_rule_parts(tx: &Transaction<'_>, id: RuleId, r: &ValidRule) -> Result<(), AppError> {
    tx.execute("DELETE FROM alert_conditions WHERE rule_id = ?1", [id])?;
    for (i, c) in r.conditions.iter().enumerate() {
        tx.execute(
            "INSERT INTO alert_conditions (rule_id, position, kind, metric, op, threshold)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, i as i64, r.kind.as_str(), c.metric, c.op, c.threshold],
        )?;
    }
    check_channels(tx, &r.channels)?;
    tx.execute("DELETE FROM alert_rule_channels WHERE rule_id = ?1", [id])?;
    for ch in &r.channels {
        tx.execute(
            "INSERT OR IGNORE INTO alert_rule_channels (rule_id, channel_id) VALUES (?1, ?2)",
            params![id, ch],
        )?;
    }
    super::recipients::write(tx, id, &r.notify_users)
}

fn rule_detail(r: &ValidRule) -> Value {
    if let Some((event, threshold)) = r.event {
        return json!({
            "name": r.name, "level": r.level.as_str(), "enabled": r.enabled,
            "scope": r.scope.as_str(), "scope_ids": r.scope.ids(), "event": event.as_str(),
            "threshold": threshold, "silence": r.silence, "channels": r.channels,
            "notify_users": r.notify_users,
        });
    }
    json!({
        "name": r.name, "level": r.level.as_str(), "enabled": r.enabled,
        "scope": r.scope.as_str(), "scope_ids": r.scope.ids(), "target": r.kind.as_str(),
        "combine": r.combine.as_str(),
        "conditions": r.conditions.iter().map(|c| json!([c.metric, c.op.as_str(), c.threshold])).collect::<Vec<_>>(),
        "duration": r.duration, "silence": r.silence, "channels": r.channels,
        "notify_users": r.notify_users,
    })
}

/// Creates a rule; returns it.
pub async fn create_rule(db: &crate::db::Db, by: By, input: RuleIn) -> Result<RuleView, AppError> {
    let r = validate_rule(&input)?;
    let id = db
        .write(move |c| {
            let tx = c.transaction()?;
            let now = crate::db::now();
            let id: RuleId = tx
                .query_row(
                    "INSERT INTO alert_rules (name, description, scope, scope_ids, combine,
                         duration_s, level, enabled, silence_s, tags, created_by, created_at, updated_at,
                         event, event_threshold)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14) RETURNING id",
                    params![
                        r.name, r.description, r.scope.as_str(), json!(r.scope.ids()).to_string(),
                        r.combine, r.duration, r.level, r.enabled, r.silence,
                        json!(r.tags).to_string(), by.actor.id.map(|u| u.0), now,
                        r.event.map(|e| e.0.as_str()), r.event.and_then(|e| e.1)
                    ],
                    |row| row.get(0),
                )
                .map_err(crate::error::on_unique("name"))?;
            write_rule_parts(&tx, id, &r)?;
            audit(&tx, &by, "alert_rule.create", "alert_rule", id.0, rule_detail(&r))?;
            tx.commit()?;
            Ok::<_, AppError>(id)
        })
        .await?;
    rule(db, id).await
}

/// Replaces a rule; its open alerts resolve (`rule_off`): what they said
/// no longer describes the rule.
pub async fn update_rule(
    db: &crate::db::Db,
    by: By,
    id: RuleId,
    input: RuleIn,
) -> Result<RuleView, AppError> {
    let r = validate_rule(&input)?;
    db.write(move |c| {
        let tx = c.transaction()?;
        let now = crate::db::now();
        let n = tx
            .execute(
                "UPDATE alert_rules SET name = ?2, description = ?3, scope = ?4, scope_ids = ?5,
                     combine = ?6, duration_s = ?7, level = ?8, enabled = ?9, silence_s = ?10,
                     tags = ?11, updated_at = ?12, event = ?13, event_threshold = ?14 WHERE id = ?1",
                params![
                    id,
                    r.name,
                    r.description,
                    r.scope.as_str(),
                    json!(r.scope.ids()).to_string(),
                    r.combine,
                    r.duration,
                    r.level,
                    r.enabled,
                    r.silence,
                    json!(r.tags).to_string(),
                    now,
                    r.event.map(|e| e.0.as_str()),
                    r.event.and_then(|e| e.1)
                ],
            )
            .map_err(crate::error::on_unique("name"))?;
        if n == 0 {
            return Err(AppError::NotFound);
        }
        write_rule_parts(&tx, id, &r)?;
        tx.execute(
            "UPDATE alert_records SET status = 'resolved', resolved_at = ?2, resolved_reason = ?3
             WHERE rule_id = ?1 AND status != 'resolved'",
            params![id, now, Reason::RuleOff],
        )?;
        audit(
            &tx,
            &by,
            "alert_rule.update",
            "alert_rule",
            id.0,
            rule_detail(&r),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    rule(db, id).await
}

/// Deletes a rule (its alerts with it).
pub async fn delete_rule(db: &crate::db::Db, by: By, id: RuleId) -> Result<(), AppError> {
    db.write(move |c| {
        let tx = c.transaction()?;
        let name: String = tx
            .query_row(
                "DELETE FROM alert_rules WHERE id = ?1 RETURNING name",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(AppError::NotFound)?;
        audit(
            &tx,
            &by,
            "alert_rule.delete",
            "alert_rule",
            id.0,
            json!({ "name": name }),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await
}
