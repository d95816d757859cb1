//! SQL of alerts: the enabled metric rules with their conditions, the open
//! alerts, and the records the engine's transitions write.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::eval::{Key, Open, Reason};
use super::model::{Combine, Condition, Level, Op, Rule, RuleId, Scope, known_metric};
use super::notify::{Event, Notice};
use crate::ids::{InstanceId, NodeId};
use crate::metrics::model::{Kind, Target, TargetRef};

fn kind_of(s: &str) -> Option<Kind> {
    match s {
        "node" => Some(Kind::Node),
        "gpu" => Some(Kind::Gpu),
        "instance" => Some(Kind::Instance),
        _ => None,
    }
}

/// The enabled rules, each with its conditions in order. A rule whose
/// stored conditions no longer make sense (a metric dropped from the
/// catalogue, mixed kinds) is left out and named in the second list.
pub fn enabled_rules(c: &Connection) -> rusqlite::Result<(Vec<Rule>, Vec<String>)> {
    let mut st = c.prepare(
        "SELECT r.id, r.name, r.level, r.scope, r.scope_ids, r.combine, r.duration_s,
                r.silence_s, a.kind, a.metric, a.op, a.threshold
         FROM alert_rules r JOIN alert_conditions a ON a.rule_id = r.id
         WHERE r.enabled = 1 ORDER BY r.id, a.position",
    )?;
    let mut rows = st.query([])?;
    let mut rules: Vec<Rule> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    let mut broken_ids: Vec<RuleId> = Vec::new();
    while let Some(r) = rows.next()? {
        let id: RuleId = r.get(0)?;
        let name: String = r.get(1)?;
        let kind = kind_of(&r.get::<_, String>(8)?);
        let metric_text: String = r.get(9)?;
        let metric = kind.and_then(|k| known_metric(k, &metric_text));
        let op = Op::parse(&r.get::<_, String>(10)?);
        let ids: Vec<i64> = serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default();
        let scope = Scope::from_columns(&r.get::<_, String>(3)?, &ids);
        let combine = Combine::parse(&r.get::<_, String>(5)?);
        let (Some(kind), Some(metric), Some(op), Some(scope), Some(combine)) =
            (kind, metric, op, scope, combine)
        else {
            broken_ids.push(id);
            broken.push(name);
            continue;
        };
        let cond = Condition {
            metric,
            op,
            threshold: r.get(11)?,
        };
        match rules.last_mut() {
            Some(last) if last.id == id => {
                if last.kind != kind {
                    broken_ids.push(id);
                    broken.push(name);
                }
                last.conditions.push(cond);
            }
            _ => rules.push(Rule {
                id,
                name,
                level: r.get(2)?,
                scope,
                kind,
                combine,
                conditions: vec![cond],
                duration_s: r.get(6)?,
                silence_s: r.get(7)?,
            }),
        }
    }
    rules.retain(|r| !broken_ids.contains(&r.id));
    broken.dedup();
    Ok((rules, broken))
}

/// The open alerts (firing or acknowledged) of metric rules, by (rule,
/// target).
pub fn open_alerts(c: &Connection) -> rusqlite::Result<HashMap<Key, Open>> {
    let mut st = c.prepare(
        "SELECT id, rule_id, target, node_id, status, notified_at
         FROM alert_records WHERE status != 'resolved'
           AND rule_id IN (SELECT id FROM alert_rules WHERE event IS NULL)",
    )?;
    let mut rows = st.query([])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        let target: String = r.get(2)?;
        let node: Option<NodeId> = r.get(3)?;
        let Some(target) = resolve_target(&target, node) else {
            continue;
        };
        let status: String = r.get(4)?;
        out.insert(
            (r.get(1)?, target),
            Open {
                record: r.get(0)?,
                acknowledged: status == "acknowledged",
                notified_at: r.get(5)?,
            },
        );
    }
    Ok(out)
}

/// The stored target text back into a target (an instance's node is kept
/// in its own column).
fn resolve_target(text: &str, node: Option<NodeId>) -> Option<Target> {
    Some(match TargetRef::parse(text)? {
        TargetRef::Node(node) => Target::Node { node },
        TargetRef::Gpu(node, gpu) => Target::Gpu { node, gpu },
        TargetRef::Instance(instance) => Target::Instance {
            node: node?,
            instance,
        },
    })
}

/// The stored text of a target.
pub fn target_text(t: &Target) -> String {
    match *t {
        Target::Node { node } => TargetRef::Node(node),
        Target::Gpu { node, gpu } => TargetRef::Gpu(node, gpu),
        Target::Instance { instance, .. } => TargetRef::Instance(instance),
    }
    .to_string()
}

/// A new alert.
pub struct NewAlert<'a> {
    pub rule: RuleId,
    pub target: Target,
    pub metric: &'a str,
    pub value: f64,
    pub level: Level,
    pub message: &'a str,
    /// The message's language-neutral facts (JSON, see `facts`).
    pub facts: &'a str,
    pub now: i64,
}

/// Inserts a firing alert; returns its id. The partial unique index keeps
/// one open alert per (rule, target): a second is `None`.
pub fn insert_alert(tx: &Transaction<'_>, a: &NewAlert<'_>) -> rusqlite::Result<Option<i64>> {
    let instance = match a.target {
        Target::Instance { instance, .. } => Some(instance),
        _ => None,
    };
    tx.query_row(
        "INSERT INTO alert_records (rule_id, target, node_id, instance_id, metric, value,
             level, message, status, triggered_at, notified_at,
             tenant_id, facts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'firing', ?9, ?9,
                 (SELECT tenant_id FROM instances WHERE id = ?4), ?10)
         ON CONFLICT DO NOTHING RETURNING id",
        params![
            a.rule,
            target_text(&a.target),
            a.target.node(),
            instance,
            a.metric,
            a.value,
            a.level,
            a.message,
            a.now,
            a.facts
        ],
        |r| r.get(0),
    )
    .optional()
}

/// The nodes with a maintenance window on at `now`: their alerts neither
/// fire nor repeat.
pub fn nodes_in_maintenance(
    c: &Connection,
    now: i64,
) -> rusqlite::Result<std::collections::HashSet<NodeId>> {
    c.prepare_cached(
        "SELECT DISTINCT node_id FROM maintenance_windows WHERE starts_at <= ?1 AND ends_at > ?1",
    )?
    .query_map([now], |r| r.get(0))?
    .collect()
}

/// Marks a new alert suppressed: its node is down.
pub fn suppress(tx: &Transaction<'_>, record: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE alert_records SET suppressed = 'node_down' WHERE id = ?1",
        [record],
    )?;
    Ok(())
}

/// Open alerts suppressed while their node was down, whose node is back
/// (no open node-unreachable alert) and not in a maintenance window at
/// `now`: no longer suppressed. Returns those still firing (not
/// acknowledged), which are owed their first announcement.
pub fn unsuppress_returned(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<Vec<i64>> {
    let rows: Vec<(i64, String)> = tx
        .prepare_cached(
            "UPDATE alert_records SET suppressed = NULL, notified_at = ?1
             WHERE status != 'resolved' AND suppressed = 'node_down'
               AND NOT EXISTS (SELECT 1 FROM alert_records d JOIN alert_rules r ON r.id = d.rule_id
                               WHERE r.event = 'node_unreachable' AND d.status != 'resolved'
                                 AND d.target = 'node:' || alert_records.node_id)
               AND NOT EXISTS (SELECT 1 FROM maintenance_windows w
                               WHERE w.node_id = alert_records.node_id
                                 AND w.starts_at <= ?1 AND w.ends_at > ?1)
             RETURNING id, status",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut firing: Vec<i64> = rows
        .into_iter()
        .filter(|(_, s)| s == "firing")
        .map(|(id, _)| id)
        .collect();
    firing.sort_unstable();
    Ok(firing)
}

/// Whether an alert was recorded as suppressed (never announced).
pub fn is_suppressed(tx: &Transaction<'_>, record: i64) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT suppressed IS NOT NULL FROM alert_records WHERE id = ?1",
        [record],
        |r| r.get(0),
    )
    .optional()
    .map(|x| x.unwrap_or(false))
}

/// Marks an open alert announced again at `now` with its latest value.
pub fn renotify(tx: &Transaction<'_>, record: i64, value: f64, now: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE alert_records SET notified_at = ?2, value = ?3
         WHERE id = ?1 AND status = 'firing'",
        params![record, now, value],
    )?;
    Ok(())
}

/// Resolves an open alert; false when it was no longer open.
pub fn resolve(
    tx: &Transaction<'_>,
    record: i64,
    reason: Reason,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE alert_records SET status = 'resolved', resolved_at = ?2, resolved_reason = ?3
         WHERE id = ?1 AND status != 'resolved'",
        params![record, now, reason],
    )?;
    Ok(n == 1)
}

/// Names of nodes and instances, for messages that name what they are
/// about (a name no longer there is shown by id).
pub fn names(
    c: &Connection,
) -> rusqlite::Result<(HashMap<NodeId, String>, HashMap<InstanceId, String>)> {
    let nodes = c
        .prepare("SELECT id, name FROM nodes")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let instances = c
        .prepare("SELECT id, name FROM instances")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((nodes, instances))
}

/// One alert as a list shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub rule_id: RuleId,
    pub rule: String,
    pub target: String,
    pub node_id: Option<NodeId>,
    pub instance_id: Option<InstanceId>,
    pub metric: String,
    pub value: Option<f64>,
    pub level: Level,
    pub message: String,
    pub status: String,
    pub triggered_at: i64,
    pub resolved_at: Option<i64>,
    pub resolved_reason: Option<String>,
}

/// The newest `limit` alerts, newest first.
pub fn recent(c: &Connection, limit: i64) -> rusqlite::Result<Vec<AlertRow>> {
    let mut st = c.prepare(
        "SELECT a.id, a.rule_id, r.name, a.target, a.node_id, a.instance_id, a.metric,
                a.value, a.level, a.message, a.status, a.triggered_at, a.resolved_at,
                a.resolved_reason
         FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id
         ORDER BY a.id DESC LIMIT ?1",
    )?;
    st.query_map([limit], |r| {
        Ok(AlertRow {
            id: r.get(0)?,
            rule_id: r.get(1)?,
            rule: r.get(2)?,
            target: r.get(3)?,
            node_id: r.get(4)?,
            instance_id: r.get(5)?,
            metric: r.get(6)?,
            value: r.get(7)?,
            level: r.get(8)?,
            message: r.get(9)?,
            status: r.get(10)?,
            triggered_at: r.get(11)?,
            resolved_at: r.get(12)?,
            resolved_reason: r.get(13)?,
        })
    })?
    .collect()
}

/// A channel as stored: its secrets still sealed.
pub struct SealedChannel {
    pub id: i64,
    pub kind: super::send::Kind,
    pub url: String,
    pub url_sealed: Option<Vec<u8>>,
    pub secret_sealed: Vec<u8>,
    pub settings: String,
    pub proxy: String,
    /// The full proxy URL, sealed (`proxy` is its masked form).
    pub proxy_sealed: Option<Vec<u8>>,
}

impl SealedChannel {
    /// The channel with its secrets unsealed (blocking: age work).
    pub fn unseal(
        self,
        sealer: &crate::secrets::Sealer,
    ) -> Result<super::send::Channel, crate::secrets::SecretError> {
        let url = match &self.url_sealed {
            Some(u) => String::from_utf8_lossy(sealer.unseal(u)?.expose()).into_owned(),
            None => self.url,
        };
        Ok(super::send::Channel {
            id: self.id,
            kind: self.kind,
            url,
            secret: sealer.unseal(&self.secret_sealed)?,
            // written by us from a validated struct; a bad one sends nothing useful
            settings: serde_json::from_str(&self.settings).unwrap_or_default(),
            proxy: match &self.proxy_sealed {
                Some(p) => String::from_utf8_lossy(sealer.unseal(p)?.expose()).into_owned(),
                None => self.proxy,
            },
        })
    }
}

pub(super) const SEALED_COLUMNS: &str =
    "n.id, n.kind, n.url, n.url_sealed, n.secret_sealed, n.settings, n.proxy, n.proxy_sealed";

pub(super) fn sealed_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SealedChannel> {
    Ok(SealedChannel {
        id: r.get(0)?,
        kind: r.get(1)?,
        url: r.get(2)?,
        url_sealed: r.get(3)?,
        secret_sealed: r.get(4)?,
        settings: r.get(5)?,
        proxy: r.get(6)?,
        proxy_sealed: r.get(7)?,
    })
}

/// The enabled channels an alert goes to, secrets sealed: its rule's
/// (a customer's own channel only when the alert is of its tenant), and
/// every own channel of the tenant of the instance it is about.
pub fn channels_of(
    c: &Connection,
    rule: RuleId,
    alert: i64,
) -> rusqlite::Result<Vec<SealedChannel>> {
    c.prepare(&format!(
        "SELECT {SEALED_COLUMNS} FROM notification_channels n
         WHERE n.enabled = 1 AND (
             (n.id IN (SELECT channel_id FROM alert_rule_channels WHERE rule_id = ?1)
              AND (n.tenant_id IS NULL
                   OR n.tenant_id = (SELECT tenant_id FROM alert_records WHERE id = ?2)))
             OR n.tenant_id = (SELECT tenant_id FROM alert_records
                               WHERE id = ?2 AND instance_id IS NOT NULL))
         ORDER BY n.id"
    ))?
    .query_map(params![rule, alert], sealed_row)?
    .collect()
}

/// One channel, secrets sealed.
pub fn sealed_channel(c: &Connection, id: i64) -> rusqlite::Result<Option<SealedChannel>> {
    c.query_row(
        &format!("SELECT {SEALED_COLUMNS} FROM notification_channels n WHERE n.id = ?1"),
        [id],
        sealed_row,
    )
    .optional()
}

/// A new webhook channel (its secret already sealed); returns its id.
pub fn insert_webhook(
    c: &Connection,
    name: &str,
    url: &str,
    secret_sealed: &[u8],
    now: i64,
) -> rusqlite::Result<i64> {
    c.query_row(
        "INSERT INTO notification_channels (name, kind, url, secret_sealed, created_at, updated_at)
         VALUES (?1, 'webhook', ?2, ?3, ?4, ?4) RETURNING id",
        params![name, url, secret_sealed, now],
        |r| r.get(0),
    )
}

/// Sends a rule's alerts to a channel as well.
pub fn route(c: &Connection, rule: RuleId, channel: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO alert_rule_channels (rule_id, channel_id) VALUES (?1, ?2)",
        params![rule, channel],
    )?;
    Ok(())
}

/// One try of a delivery, in the log.
pub fn log_delivery(
    c: &Connection,
    channel: i64,
    alert: Option<i64>,
    attempt: u32,
    http_status: Option<u16>,
    error: Option<&str>,
    at: i64,
) -> rusqlite::Result<()> {
    let status = if error.is_none() { "sent" } else { "failed" };
    c.execute(
        "INSERT INTO alert_deliveries (channel_id, alert_id, attempt, status, http_status, error, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![channel, alert, attempt, status, http_status, error.unwrap_or(""), at],
    )?;
    Ok(())
}

/// One row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRow {
    pub channel_id: i64,
    pub alert_id: Option<i64>,
    pub attempt: u32,
    pub status: String,
    pub http_status: Option<u16>,
    pub error: String,
    pub at: i64,
}

/// A channel's delivery log, oldest first.
pub fn deliveries(c: &Connection, channel: i64) -> rusqlite::Result<Vec<DeliveryRow>> {
    c.prepare(
        "SELECT channel_id, alert_id, attempt, status, http_status, error, at
         FROM alert_deliveries WHERE channel_id = ?1 ORDER BY id",
    )?
    .query_map([channel], |r| {
        Ok(DeliveryRow {
            channel_id: r.get(0)?,
            alert_id: r.get(1)?,
            attempt: r.get(2)?,
            status: r.get(3)?,
            http_status: r.get(4)?,
            error: r.get(5)?,
            at: r.get(6)?,
        })
    })?
    .collect()
}

/// What channels are told of an alert, read back after it was written.
pub fn notice(c: &Connection, record: i64, event: Event) -> rusqlite::Result<Option<Notice>> {
    c.query_row(
        "SELECT a.id, a.rule_id, r.name, a.level, a.message, a.target, a.node_id,
                a.instance_id, a.metric, a.value, a.triggered_at, a.resolved_at,
                a.resolved_reason, a.tenant_id, a.facts
         FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id WHERE a.id = ?1",
        [record],
        |r| {
            Ok(Notice {
                event,
                alert_id: r.get(0)?,
                rule_id: r.get(1)?,
                rule: r.get(2)?,
                level: r.get(3)?,
                message: r.get(4)?,
                target: r.get(5)?,
                node_id: r.get(6)?,
                instance_id: r.get(7)?,
                metric: r.get(8)?,
                value: r.get(9)?,
                triggered_at: r.get(10)?,
                resolved_at: r.get(11)?,
                reason: r.get(12)?,
                group: None,
                tenant_id: r.get(13)?,
                facts: super::facts::Facts::parse(&r.get::<_, String>(14)?),
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An alert goes to its rule's lab channels, to the own channels of the
    /// tenant of its instance (of any rule), and never to another tenant's
    /// channel, even one an admin put on the rule.
    #[test]
    fn alerts_reach_their_rules_channels_and_their_tenants_own() {
        let c = crate::db::memory().unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at)
                 VALUES (1, 'A', 'A', 0, 0), (2, 'B', 'B', 0, 0);
             INSERT INTO notification_channels (id, name, kind, url, secret_sealed, created_at,
                 updated_at, tenant_id) VALUES
                 (1, 'lab', 'webhook', 'http://h/', x'', 0, 0, NULL),
                 (2, 'a-own', 'email', '', x'', 0, 0, 1),
                 (3, 'b-own', 'webhook', 'http://h/', x'', 0, 0, 2),
                 (4, 'lab-off', 'webhook', 'http://h/', x'', 0, 0, NULL);
             UPDATE notification_channels SET enabled = 0 WHERE id = 4;
             INSERT INTO alert_rule_channels (rule_id, channel_id) VALUES (1, 1), (1, 3), (1, 4);
             INSERT INTO alert_records (id, rule_id, target, node_id, instance_id, tenant_id,
                 level, message, triggered_at, notified_at) VALUES
                 (1, 1, 'instance:5', 1, 5, 1, 'P1', 'm', 0, 0),
                 (2, 1, 'gpu:1:0', 1, NULL, NULL, 'P1', 'm', 0, 0),
                 (3, 2, 'instance:6', 1, 6, 2, 'P1', 'm', 0, 0);",
        )
        .unwrap();
        let ids = |rule: i64, alert: i64| -> Vec<i64> {
            channels_of(&c, RuleId(rule), alert)
                .unwrap()
                .iter()
                .map(|x| x.id)
                .collect()
        };
        assert_eq!(
            ids(1, 1),
            [1, 2],
            "tenant A's instance: lab channel and A's own"
        );
        assert_eq!(ids(1, 2), [1], "a GPU alert: no customer's channel");
        assert_eq!(
            ids(2, 3),
            [3],
            "tenant B's instance under a rule without channels"
        );
        // same name in two tenants and the lab is allowed; twice in one is not
        c.execute("INSERT INTO notification_channels (name, kind, url, secret_sealed, created_at, updated_at, tenant_id) VALUES ('lab', 'webhook', 'u', x'', 0, 0, 2)", []).unwrap();
        assert!(c.execute("INSERT INTO notification_channels (name, kind, url, secret_sealed, created_at, updated_at, tenant_id) VALUES ('lab', 'webhook', 'u', x'', 0, 0, 2)", []).is_err());
    }

    #[test]
    fn built_in_rules_load_and_one_open_alert_per_rule_and_target() {
        let mut c = crate::db::memory().unwrap();
        let (rules, broken) = enabled_rules(&c).unwrap();
        assert!(broken.is_empty(), "{broken:?}");
        let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
        // The ECC rule ships disabled.
        assert_eq!(names, ["GPU temperature", "Data disk almost full"]);
        assert_eq!(rules[0].kind, Kind::Gpu);
        assert_eq!(rules[1].conditions[0].metric, "disk_data_used_pct");

        let target = Target::Instance {
            node: NodeId(3),
            instance: InstanceId(9),
        };
        let alert = |now| NewAlert {
            rule: rules[0].id,
            target,
            metric: "temp_c",
            value: 91.0,
            level: Level::P1,
            message: "hot",
            facts: "",
            now,
        };
        let tx = c.transaction().unwrap();
        let id = insert_alert(&tx, &alert(10)).unwrap().unwrap();
        assert_eq!(insert_alert(&tx, &alert(11)).unwrap(), None);
        tx.commit().unwrap();
        let open = open_alerts(&c).unwrap();
        assert_eq!(open[&(rules[0].id, target)].record, id);

        let tx = c.transaction().unwrap();
        assert!(resolve(&tx, id, Reason::Cleared, 20).unwrap());
        assert!(!resolve(&tx, id, Reason::Cleared, 21).unwrap());
        // Once resolved, the same (rule, target) may fire again.
        let again = insert_alert(&tx, &alert(30)).unwrap().unwrap();
        assert!(again > id);
        tx.commit().unwrap();
        let rows = recent(&c, 10).unwrap();
        assert_eq!(rows[1].resolved_reason.as_deref(), Some("cleared"));
        assert_eq!(rows[0].target, "instance:9");
        assert_eq!(rows[0].node_id, Some(NodeId(3)));
    }
}
