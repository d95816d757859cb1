//! Event rules (事件告警): alerts raised by something that happened rather
//! than by a metric. Every event, wherever it happens (the node health
//! loop, the instance sync's Docker events, the sign-in lockout, the GPU
//! collectors, backups, leases), goes through [`record`]: it finds the
//! enabled rules of the event's kind that cover its subject and whose
//! threshold it reaches, and writes (or repeats after the silence) one open
//! alert per (rule, subject), following the rule's level, channels,
//! silence duration and the node's maintenance windows, like metric rules.
//! An alert about a GPU, an instance or a session of a node that is down is
//! recorded as suppressed (`node_down`) and not announced. What is to be
//! announced is written with the alert (`pending`); the engine sends it.

use rusqlite::{Connection, OptionalExtension, params};

use super::eval::Reason;
use super::facts::About;
use super::model::{Level, RuleId, Scope};
use crate::ids::{InstanceId, NodeId, SessionId, UserId};
use crate::metrics::model::Target;

/// What can happen (the `event` of a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A node's daemon has not answered for N seconds (value: seconds).
    NodeUnreachable,
    /// An instance's container stopped without anyone stopping it.
    InstanceExited,
    /// An instance's container was killed for lack of memory.
    InstanceOom,
    /// An instance's container restarted N times (value: restarts).
    InstanceRestartLoop,
    /// An account was locked by failed sign-ins.
    AccountLocked,
    /// A GPU reported an XID error (value: the XID).
    GpuXid,
    /// The disk of the data directory is N % full or more (value: the
    /// percentage; resolves when it falls below).
    DiskFull,
    /// A remote session moved N bytes or more (value: bytes in and out).
    SessionBytes,
    /// A lease ends within N seconds (value: seconds left).
    LeaseExpiring,
    /// A backup failed.
    BackupFailed,
}
crate::text_enum!(EventKind {
    NodeUnreachable => "node_unreachable",
    InstanceExited => "instance_exited",
    InstanceOom => "instance_oom",
    InstanceRestartLoop => "instance_restart_loop",
    AccountLocked => "account_locked",
    GpuXid => "gpu_xid",
    DiskFull => "disk_full",
    SessionBytes => "session_bytes",
    LeaseExpiring => "lease_expiring",
    BackupFailed => "backup_failed"
});

impl EventKind {
    /// The threshold a new rule of this kind gets when none is given
    /// (`None`: the kind has none).
    pub fn default_threshold(self) -> Option<f64> {
        match self {
            EventKind::NodeUnreachable => Some(60.0),
            EventKind::InstanceRestartLoop => Some(5.0),
            EventKind::DiskFull => Some(90.0),
            EventKind::SessionBytes => Some(10_737_418_240.0),
            EventKind::LeaseExpiring => Some(86_400.0),
            _ => None,
        }
    }

    /// What its alerts are about: node, gpu, instance, user, lease,
    /// appliance.
    pub fn subject_kind(self) -> &'static str {
        match self {
            EventKind::NodeUnreachable | EventKind::DiskFull => "node",
            EventKind::GpuXid => "gpu",
            EventKind::InstanceExited | EventKind::InstanceOom | EventKind::InstanceRestartLoop => {
                "instance"
            }
            EventKind::AccountLocked => "user",
            EventKind::SessionBytes => "session",
            EventKind::LeaseExpiring => "lease",
            EventKind::BackupFailed => "appliance",
        }
    }

    /// Whether an event with `value` reaches a rule's `threshold`: seconds
    /// left must be at most the threshold, anything else at least.
    pub fn reaches(self, value: Option<f64>, threshold: Option<f64>) -> bool {
        match (threshold, value) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(t), Some(v)) if self == EventKind::LeaseExpiring => v <= t,
            (Some(t), Some(v)) => v >= t,
        }
    }
}

/// The text key of an event's name (pages), for a stored event text.
pub fn event_key<S: AsRef<str>>(event: S) -> &'static str {
    match EventKind::parse(event.as_ref()) {
        Some(EventKind::NodeUnreachable) => "alerts.event_node_unreachable",
        Some(EventKind::InstanceExited) => "alerts.event_instance_exited",
        Some(EventKind::InstanceOom) => "alerts.event_instance_oom",
        Some(EventKind::InstanceRestartLoop) => "alerts.event_instance_restart_loop",
        Some(EventKind::AccountLocked) => "alerts.event_account_locked",
        Some(EventKind::GpuXid) => "alerts.event_gpu_xid",
        Some(EventKind::DiskFull) => "alerts.event_disk_full",
        Some(EventKind::SessionBytes) => "alerts.event_session_bytes",
        Some(EventKind::LeaseExpiring) => "alerts.event_lease_expiring",
        Some(EventKind::BackupFailed) => "alerts.event_backup_failed",
        None => "alerts.event",
    }
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Node(NodeId),
    Gpu(NodeId, i64),
    Instance(NodeId, InstanceId),
    User(UserId),
    /// A remote session (terminal, SSH, tunnel, SFTP).
    Session(SessionId),
    /// A lease (its id), on a node where it has one.
    Lease(i64),
    /// The appliance itself (a backup).
    Appliance,
}

impl Subject {
    /// The node it belongs to, if any.
    pub fn node(&self) -> Option<NodeId> {
        self.metric_target().map(|t| t.node())
    }

    fn metric_target(&self) -> Option<Target> {
        match *self {
            Subject::Node(node) => Some(Target::Node { node }),
            Subject::Gpu(node, gpu) => Some(Target::Gpu { node, gpu }),
            Subject::Instance(node, instance) => Some(Target::Instance { node, instance }),
            _ => None,
        }
    }

    /// The stored target text: `node:1`, `gpu:1:0`, `instance:5`, `user:3`,
    /// `lease:9`, `appliance`.
    pub fn text(&self) -> String {
        match self {
            Subject::User(u) => format!("user:{}", u.0),
            Subject::Session(x) => format!("session:{}", x.0),
            Subject::Lease(l) => format!("lease:{l}"),
            Subject::Appliance => "appliance".into(),
            s => s
                .metric_target()
                .map(|t| super::store::target_text(&t))
                .unwrap_or_default(),
        }
    }

    /// Whether a rule's scope covers it: subjects without a node only under
    /// `all`.
    fn covered_by(&self, scope: &Scope) -> bool {
        match (scope, self.metric_target()) {
            (Scope::All, _) => true,
            (s, Some(t)) => s.covers(&t),
            (_, None) => false,
        }
    }
}

/// One event as its source reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub kind: EventKind,
    pub subject: Subject,
    /// The figure compared with the rule's threshold (seconds, restarts,
    /// the XID ...), where the kind has one.
    pub value: Option<f64>,
    /// What happened, in a few words (the alert's message after the rule's
    /// name and what it is about).
    pub detail: String,
}

struct EventRule {
    id: RuleId,
    name: String,
    level: Level,
    scope: Scope,
    silence_s: i64,
    threshold: Option<f64>,
}

fn rules_of(c: &Connection, kind: EventKind) -> rusqlite::Result<Vec<EventRule>> {
    let mut st = c.prepare_cached(
        "SELECT id, name, level, scope, scope_ids, silence_s, event_threshold
         FROM alert_rules WHERE enabled = 1 AND event = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([kind.as_str()], |r| {
        let ids: Vec<i64> = serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default();
        Ok((
            r.get::<_, String>(3)?,
            ids,
            EventRule {
                id: r.get(0)?,
                name: r.get(1)?,
                level: r.get(2)?,
                scope: Scope::All,
                silence_s: r.get(5)?,
                threshold: r.get(6)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (scope, ids, mut rule) = row?;
        // A scope text outside the set covers nothing (the CHECK keeps it in).
        let Some(s) = Scope::from_columns(&scope, &ids) else {
            continue;
        };
        rule.scope = s;
        out.push(rule);
    }
    Ok(out)
}

/// Whether `node` has an open node-unreachable alert: its GPUs', instances'
/// and sessions' alerts are suppressed meanwhile.
pub fn node_down(c: &Connection, node: NodeId) -> rusqlite::Result<bool> {
    c.prepare_cached(
        "SELECT 1 FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id
         WHERE r.event = 'node_unreachable' AND a.status != 'resolved' AND a.target = ?1
         LIMIT 1",
    )?
    .query_row([format!("node:{}", node.0)], |_| Ok(()))
    .optional()
    .map(|x| x.is_some())
}

/// What [`record`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// New alerts (announced or suppressed).
    pub fired: usize,
    /// Open alerts announced again after their silence.
    pub repeated: usize,
    /// New alerts recorded as suppressed (their node is down).
    pub suppressed: usize,
    /// Open alerts resolved: the figure fell below their rule's N.
    pub resolved: usize,
}

impl Recorded {
    /// Whether the engine has something to send.
    pub fn announces(&self) -> bool {
        self.fired > self.suppressed || self.repeated > 0 || self.resolved > 0
    }
}

/// Records an event at `now` on `c` (the caller's transaction where it has
/// one, so the alert is written with what caused it).
pub fn record(c: &Connection, ev: &Raised, now: i64) -> rusqlite::Result<Recorded> {
    let mut done = Recorded::default();
    let node = ev.subject.node();
    if let Some(n) = node
        && super::store::nodes_in_maintenance(c, now)?.contains(&n)
    {
        return Ok(done);
    }
    let target = ev.subject.text();
    let (rules, below): (Vec<EventRule>, Vec<EventRule>) = rules_of(c, ev.kind)?
        .into_iter()
        .filter(|r| ev.subject.covered_by(&r.scope))
        .partition(|r| ev.kind.reaches(ev.value, r.threshold));
    // A figure back under a rule's N: that rule's alert resolves.
    for r in &below {
        done.resolved += c.execute(
            "UPDATE alert_records SET status = 'resolved', resolved_at = ?3, resolved_reason = ?4,
                 pending = CASE WHEN suppressed IS NOT NULL THEN NULL
                            WHEN pending = 'fired' THEN 'fired' ELSE 'resolved' END
             WHERE rule_id = ?1 AND target = ?2 AND status != 'resolved'",
            params![r.id, target, now, Reason::Cleared],
        )?;
    }
    if rules.is_empty() {
        return Ok(done);
    }
    let (about, tenant) = about(c, &ev.subject)?;
    let what = super::facts::about(&about, crate::i18n::Tr::english());
    let suppress = match (ev.subject, node) {
        (Subject::Node(_), _) | (_, None) => false,
        (_, Some(n)) => node_down(c, n)?,
    };
    for rule in &rules {
        let message = format!("{}: {what}: {}", rule.name, ev.detail);
        let facts = super::facts::Facts {
            about: about.clone(),
            measured: None,
            event: Some((ev.kind.as_str().to_string(), ev.detail.clone())),
        }
        .json();
        let open: Option<(i64, String, i64)> = c
            .prepare_cached(
                "SELECT id, status, notified_at FROM alert_records
                 WHERE rule_id = ?1 AND target = ?2 AND status != 'resolved'",
            )?
            .query_row(params![rule.id, target], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((id, status, notified_at)) = open {
            let due = rule.silence_s > 0 && now - notified_at >= rule.silence_s;
            if due && status == "firing" {
                c.execute(
                    "UPDATE alert_records SET notified_at = ?2, value = ?3, message = ?4, facts = ?5,
                         pending = CASE WHEN suppressed IS NOT NULL THEN NULL
                            WHEN pending = 'fired' THEN 'fired' ELSE 'repeated' END
                     WHERE id = ?1",
                    params![id, now, ev.value, message, facts],
                )?;
                done.repeated += 1;
            }
            continue;
        }
        let instance = match ev.subject {
            Subject::Instance(_, i) => Some(i),
            _ => None,
        };
        c.execute(
            "INSERT INTO alert_records (rule_id, target, node_id, instance_id, tenant_id, metric,
                 value, level, message, status, triggered_at, notified_at, suppressed, pending, facts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'firing', ?10, ?10, ?11, ?12, ?13)",
            params![
                rule.id,
                target,
                node,
                instance,
                tenant,
                ev.kind.as_str(),
                ev.value,
                rule.level,
                message,
                now,
                suppress.then_some("node_down"),
                (!suppress).then_some("fired"),
                facts,
            ],
        )?;
        log::warn!("alert ({}): {message}", rule.level);
        done.fired += 1;
        done.suppressed += usize::from(suppress);
    }
    Ok(done)
}

/// Resolves the open alerts of `kind` about `subject` (the condition
/// cleared: the node answers again, ...); returns how many.
pub fn clear(
    c: &Connection,
    kind: EventKind,
    subject: &Subject,
    now: i64,
) -> rusqlite::Result<usize> {
    c.execute(
        "UPDATE alert_records SET status = 'resolved', resolved_at = ?3, resolved_reason = ?4,
             pending = CASE WHEN suppressed IS NOT NULL THEN NULL
                            WHEN pending = 'fired' THEN 'fired' ELSE 'resolved' END
         WHERE target = ?2 AND status != 'resolved'
           AND rule_id IN (SELECT id FROM alert_rules WHERE event = ?1)",
        params![kind.as_str(), subject.text(), now, Reason::Cleared],
    )
}

// An announcement still owed when another comes: a `fired` one stays
// (it is read back at sending, so it carries the resolve too).

/// What an alert names (node and instance by name, an account by its
/// login) and the tenant whose customers may see it (an instance's).
fn about(c: &Connection, s: &Subject) -> rusqlite::Result<(About, Option<i64>)> {
    let name = |sql: &str, id: i64| -> rusqlite::Result<Option<String>> {
        c.prepare_cached(sql)?
            .query_row([id], |r| r.get(0))
            .optional()
    };
    let node = |n: NodeId| -> rusqlite::Result<String> {
        Ok(name("SELECT name FROM nodes WHERE id = ?1", n.0)?.unwrap_or_else(|| n.to_string()))
    };
    Ok(match *s {
        Subject::Node(n) => (About::Node { node: node(n)? }, None),
        Subject::Gpu(n, gpu) => (
            About::Gpu {
                gpu,
                node: node(n)?,
            },
            None,
        ),
        Subject::Instance(n, i) => {
            let row: Option<(String, Option<i64>)> = c
                .prepare_cached("SELECT name, tenant_id FROM instances WHERE id = ?1")?
                .query_row([i.0], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (instance, tenant) = row.unwrap_or_else(|| (format!("#{i}"), None));
            let node = node(n)?;
            (About::Instance { instance, node }, tenant)
        }
        Subject::User(u) => {
            let user = name("SELECT username FROM users WHERE id = ?1", u.0)?
                .unwrap_or_else(|| format!("#{}", u.0));
            (About::Account { user }, None)
        }
        Subject::Session(x) => {
            let user = name(
                "SELECT u.username FROM remote_sessions r JOIN users u ON u.id = r.user_id
                 WHERE r.id = ?1",
                x.0,
            )?;
            (About::Session { session: x.0, user }, None)
        }
        Subject::Lease(lease) => (About::Lease { lease }, None),
        Subject::Appliance => (About::Appliance, None),
    })
}

/// The announcements event alerts still owe, marked as taken: (alert,
/// event), oldest first.
pub fn take_pending(c: &Connection) -> rusqlite::Result<Vec<(i64, super::notify::Event)>> {
    use super::notify::Event;
    let rows: Vec<(i64, String)> = c
        .prepare_cached(
            "SELECT id, pending FROM alert_records WHERE pending IS NOT NULL ORDER BY id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    c.execute(
        "UPDATE alert_records SET pending = NULL WHERE pending IS NOT NULL",
        [],
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, p)| Event::parse(&p).map(|e| (id, e)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = crate::db::memory().unwrap();
        c.execute_batch(
            "INSERT INTO nodes (id, name, public_ip, private_ip, created_at, updated_at)
             VALUES (1, 'gpu-a', '10.0.0.1', '10.0.0.1', 0, 0);
             UPDATE alert_rules SET event_threshold = 30 WHERE event = 'node_unreachable';",
        )
        .unwrap();
        c
    }

    fn down(secs: f64) -> Raised {
        Raised {
            kind: EventKind::NodeUnreachable,
            subject: Subject::Node(NodeId(1)),
            value: Some(secs),
            detail: format!("no answer for {secs} s"),
        }
    }

    fn status(c: &Connection) -> Vec<(String, String, Option<String>, Option<String>)> {
        c.prepare("SELECT target, status, suppressed, pending FROM alert_records ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// The threshold, one alert per subject, repeat after the silence, the
    /// node-down suppression of its instances, resolve, maintenance.
    #[test]
    fn events_follow_threshold_silence_node_down_and_windows() {
        let c = db();
        assert_eq!(record(&c, &down(10.0), 100).unwrap().fired, 0, "under N s");
        let r = record(&c, &down(31.0), 121).unwrap();
        assert_eq!((r.fired, r.suppressed), (1, 0));
        assert_eq!(record(&c, &down(40.0), 130).unwrap(), Recorded::default());
        let msg: String = c
            .query_row("SELECT message FROM alert_records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(msg, "Node unreachable: node gpu-a: no answer for 31 s");
        // An instance of the node that is down: recorded, suppressed.
        let oom = Raised {
            kind: EventKind::InstanceOom,
            subject: Subject::Instance(NodeId(1), InstanceId(9)),
            value: None,
            detail: "killed".into(),
        };
        let r = record(&c, &oom, 131).unwrap();
        assert_eq!((r.fired, r.suppressed), (1, 1));
        assert!(!r.announces());
        let taken = take_pending(&c).unwrap();
        assert_eq!(taken.len(), 1, "only the node's alert is announced");
        assert!(take_pending(&c).unwrap().is_empty());
        // After the silence (3600 s) the node's alert is announced again.
        assert_eq!(record(&c, &down(3700.0), 121 + 3600).unwrap().repeated, 1);
        assert_eq!(
            clear(
                &c,
                EventKind::NodeUnreachable,
                &Subject::Node(NodeId(1)),
                4000
            )
            .unwrap(),
            1
        );
        let s = status(&c);
        assert_eq!(
            s,
            [
                (
                    "node:1".into(),
                    "resolved".into(),
                    None,
                    Some("resolved".into())
                ),
                (
                    "instance:9".into(),
                    "firing".into(),
                    Some("node_down".into()),
                    None
                ),
            ]
        );
        // A maintenance window: nothing fires.
        c.execute_batch(
            "INSERT INTO maintenance_windows (node_id, starts_at, ends_at, created_at)
             VALUES (1, 0, 999999, 0)",
        )
        .unwrap();
        assert_eq!(record(&c, &down(100.0), 5000).unwrap().fired, 0);
        // Subjects without a node; a disabled rule stays quiet.
        let locked = Raised {
            kind: EventKind::AccountLocked,
            subject: Subject::User(UserId(1)),
            value: None,
            detail: "5 failed sign-ins".into(),
        };
        assert_eq!(record(&c, &locked, 5000).unwrap().fired, 1);
        let exited = Raised {
            kind: EventKind::InstanceExited,
            subject: Subject::Instance(NodeId(2), InstanceId(3)),
            value: None,
            detail: "exit code 1".into(),
        };
        assert_eq!(
            record(&c, &exited, 5000).unwrap().fired,
            0,
            "ships disabled"
        );
    }

    #[test]
    fn a_figure_back_under_n_resolves_its_alert() {
        let c = db();
        c.execute_batch(
            "INSERT INTO alert_rules (name, level, event, event_threshold, created_at, updated_at)
             VALUES ('disk', 'P2', 'disk_full', 80, 0, 0)",
        )
        .unwrap();
        let disk = |pct| Raised {
            kind: EventKind::DiskFull,
            subject: Subject::Node(NodeId(1)),
            value: Some(pct),
            detail: format!("{pct} % used"),
        };
        assert_eq!(record(&c, &disk(50.0), 10).unwrap(), Recorded::default());
        assert_eq!(record(&c, &disk(85.0), 20).unwrap().fired, 1);
        assert_eq!(record(&c, &disk(86.0), 30).unwrap(), Recorded::default());
        let r = record(&c, &disk(70.0), 40).unwrap();
        assert!(r.resolved == 1 && r.announces());
        assert_eq!(
            status(&c),
            [(
                "node:1".into(),
                "resolved".into(),
                None,
                Some("fired".into())
            )],
            "the fired announcement not yet taken stays owed"
        );
    }

    #[test]
    fn thresholds_compare_by_kind() {
        use EventKind::*;
        assert!(NodeUnreachable.reaches(Some(60.0), Some(60.0)));
        assert!(!NodeUnreachable.reaches(Some(59.0), Some(60.0)));
        assert!(!NodeUnreachable.reaches(None, Some(60.0)));
        assert!(LeaseExpiring.reaches(Some(3600.0), Some(86_400.0)));
        assert!(!LeaseExpiring.reaches(Some(90_000.0), Some(86_400.0)));
        assert!(InstanceOom.reaches(None, None));
        for &k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
    }
}
