//! What a metric rule is: levels, comparisons, scope, the metrics a rule may
//! name (the catalogue's and a few percentages derived from two of its
//! series), and the validation of a rule as submitted. Pure.

use std::collections::HashMap;

use serde::Serialize;

use crate::ids::{InstanceId, NodeId};
use crate::metrics::hub::Latest;
use crate::metrics::model::{self as mm, Kind, Target};

/// A row of `alert_rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RuleId(pub i64);

impl rusqlite::types::FromSql for RuleId {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(v).map(RuleId)
    }
}

impl rusqlite::types::ToSql for RuleId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.0))
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// 告警级别: P0 紧急 (emergency) .. P3 提示 (notice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    P0,
    P1,
    P2,
    P3,
}
crate::text_enum!(Level { P0 => "P0", P1 => "P1", P2 => "P2", P3 => "P3" });

/// How a condition compares the value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
}
crate::text_enum!(Op { Gt => ">", Lt => "<", Ge => ">=", Le => "<=", Eq => "==", Ne => "!=" });

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Lt => value < threshold,
            Op::Ge => value >= threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

/// How several conditions join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    And,
    Or,
}
crate::text_enum!(Combine { And => "and", Or => "or" });

/// Which targets a rule watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every target of the conditions' kind.
    All,
    /// The chosen nodes: their hosts, GPUs or instances.
    Nodes(Vec<NodeId>),
    /// The chosen instances (instance conditions only).
    Instances(Vec<InstanceId>),
}

impl Scope {
    pub fn covers(&self, target: &Target) -> bool {
        match (self, target) {
            (Scope::All, _) => true,
            (Scope::Nodes(ns), t) => ns.contains(&t.node()),
            (Scope::Instances(is), Target::Instance { instance, .. }) => is.contains(instance),
            (Scope::Instances(_), _) => false,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Nodes(_) => "nodes",
            Scope::Instances(_) => "instances",
        }
    }
    /// The chosen ids (empty for `All`).
    pub fn ids(&self) -> Vec<i64> {
        match self {
            Scope::All => Vec::new(),
            Scope::Nodes(ns) => ns.iter().map(|n| n.0).collect(),
            Scope::Instances(is) => is.iter().map(|i| i.0).collect(),
        }
    }
    /// From the stored columns; `None` for a scope text outside the set.
    pub fn from_columns(scope: &str, ids: &[i64]) -> Option<Self> {
        match scope {
            "all" => Some(Scope::All),
            "nodes" => Some(Scope::Nodes(ids.iter().copied().map(NodeId).collect())),
            "instances" => Some(Scope::Instances(
                ids.iter().copied().map(InstanceId).collect(),
            )),
            _ => None,
        }
    }
}

/// A percentage derived from two catalogue series of the same target.
struct Derived {
    kind: Kind,
    name: &'static str,
    part: &'static str,
    whole: &'static str,
}

const DERIVED: &[Derived] = &[
    Derived {
        kind: Kind::Node,
        name: "disk_data_used_pct",
        part: "disk_data_used_bytes",
        whole: "disk_data_total_bytes",
    },
    Derived {
        kind: Kind::Node,
        name: "disk_docker_used_pct",
        part: "disk_docker_used_bytes",
        whole: "disk_docker_total_bytes",
    },
    Derived {
        kind: Kind::Node,
        name: "mem_used_pct",
        part: "mem_used_bytes",
        whole: "mem_total_bytes",
    },
    Derived {
        kind: Kind::Gpu,
        name: "mem_used_pct",
        part: "mem_used_bytes",
        whole: "mem_total_bytes",
    },
    Derived {
        kind: Kind::Instance,
        name: "mem_used_pct",
        part: "mem_used_bytes",
        whole: "mem_limit_bytes",
    },
];

/// A metric a condition may name: one of the catalogue's, or a derived
/// percentage. Returns the name as the catalogue spells it.
pub fn known_metric(kind: Kind, name: &str) -> Option<&'static str> {
    if let Some(m) = mm::metric(kind, name) {
        return Some(m.name);
    }
    DERIVED
        .iter()
        .find(|d| d.kind == kind && d.name == name)
        .map(|d| d.name)
}

/// The value of `metric` of `target` from the latest samples, when it was
/// sampled at or after `fresh_since` (a derived percentage needs both of
/// its series fresh and a whole above zero). `metric` is a name that
/// [`known_metric`] returned (the engine's hot path: one map lookup).
pub fn value_of(
    latest: &HashMap<(Target, &'static str), Latest>,
    target: Target,
    metric: &'static str,
    fresh_since: i64,
) -> Option<f64> {
    let fresh = |name: &'static str| {
        latest
            .get(&(target, name))
            .filter(|l| l.ts >= fresh_since)
            .map(|l| l.value)
    };
    match DERIVED
        .iter()
        .find(|d| d.kind == target.kind() && d.name == metric)
    {
        None => fresh(metric),
        Some(d) => {
            let (part, whole) = (fresh(d.part)?, fresh(d.whole)?);
            (whole > 0.0).then(|| part / whole * 100.0)
        }
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub metric: &'static str,
    pub op: Op,
    pub threshold: f64,
}

/// A metric rule as the engine evaluates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub name: String,
    pub level: Level,
    pub scope: Scope,
    /// The kind of target every condition reads.
    pub kind: Kind,
    pub combine: Combine,
    pub conditions: Vec<Condition>,
    /// How long the conditions must hold before the alert fires.
    pub duration_s: i64,
    /// How long an alert that still fires waits before it is announced
    /// again (0: never).
    pub silence_s: i64,
}

impl Rule {
    /// Whether the conditions hold for `target`, with the value of the
    /// first condition that decided it (the one the alert reports).
    /// A condition without a fresh value does not hold.
    pub fn check(
        &self,
        latest: &HashMap<(Target, &'static str), Latest>,
        target: Target,
        fresh_since: i64,
    ) -> Option<(&'static str, f64)> {
        let mut first = None;
        for c in &self.conditions {
            let held = value_of(latest, target, c.metric, fresh_since)
                .filter(|v| c.op.holds(*v, c.threshold))
                .map(|v| (c.metric, v));
            match (self.combine, held) {
                (Combine::And, None) => return None,
                (Combine::And, Some(h)) => {
                    first.get_or_insert(h);
                }
                (Combine::Or, Some(h)) => return Some(h),
                (Combine::Or, None) => {}
            }
        }
        first
    }
}

/// Why a submitted rule was refused: the field, what is wrong (an i18n
/// key) and the value it concerns, if any (language-neutral).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {key} {detail:?}")]
pub struct FieldError {
    pub field: &'static str,
    pub key: &'static str,
    pub detail: Option<String>,
}

fn field(field: &'static str, key: &'static str) -> FieldError {
    FieldError {
        field,
        key,
        detail: None,
    }
}

fn field_about(field: &'static str, key: &'static str, detail: impl Into<String>) -> FieldError {
    FieldError {
        field,
        key,
        detail: Some(detail.into()),
    }
}

/// A condition as submitted: kind, metric and op as texts.
#[derive(Debug, Clone)]
pub struct ConditionInput {
    pub kind: String,
    pub metric: String,
    pub op: String,
    pub threshold: f64,
}

/// Checks the conditions of a rule: at least one, one kind for all, known
/// metrics, known comparisons, finite thresholds; and that the scope names
/// something and fits the kind. Returns the kind and the conditions.
pub fn validate_conditions(
    scope: &Scope,
    inputs: &[ConditionInput],
) -> Result<(Kind, Vec<Condition>), FieldError> {
    let first = inputs
        .first()
        .ok_or_else(|| field("conditions", "err.alert_conditions"))?;
    let kind = parse_kind(&first.kind)?;
    let mut out = Vec::with_capacity(inputs.len());
    for c in inputs {
        if parse_kind(&c.kind)? != kind {
            return Err(field("conditions", "err.alert_one_kind"));
        }
        let metric = known_metric(kind, &c.metric).ok_or_else(|| {
            field_about(
                "metric",
                "err.alert_unknown_metric",
                format!("{} {}", kind.as_str(), c.metric),
            )
        })?;
        let op = Op::parse(c.op.trim())
            .ok_or_else(|| field_about("condition", "err.one_of", ">, <, >=, <=, ==, !="))?;
        if !c.threshold.is_finite() {
            return Err(field("threshold", "err.alert_number"));
        }
        out.push(Condition {
            metric,
            op,
            threshold: c.threshold,
        });
    }
    match scope {
        Scope::Nodes(v) if v.is_empty() => return Err(field("scope", "err.alert_scope_nodes")),
        Scope::Instances(v) if v.is_empty() => {
            return Err(field("scope", "err.alert_scope_instances"));
        }
        Scope::Instances(_) if kind != Kind::Instance => {
            return Err(field("scope", "err.alert_scope_instance_metrics"));
        }
        _ => {}
    }
    Ok((kind, out))
}

fn parse_kind(s: &str) -> Result<Kind, FieldError> {
    match s.trim() {
        "node" => Ok(Kind::Node),
        "gpu" => Ok(Kind::Gpu),
        "instance" => Ok(Kind::Instance),
        _ => Err(field_about("kind", "err.one_of", "node, gpu, instance")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: &str, metric: &str, op: &str, threshold: f64) -> ConditionInput {
        ConditionInput {
            kind: kind.into(),
            metric: metric.into(),
            op: op.into(),
            threshold,
        }
    }

    #[test]
    fn bad_rules_name_the_field() {
        let all = Scope::All;
        let err = |s: &Scope, c: &[ConditionInput]| validate_conditions(s, c).unwrap_err().field;
        assert_eq!(err(&all, &[]), "conditions");
        assert_eq!(err(&all, &[input("gpu", "warp_speed", ">", 1.0)]), "metric");
        assert_eq!(err(&all, &[input("gpu", "temp_c", "=>", 1.0)]), "condition");
        assert_eq!(
            err(&all, &[input("gpu", "temp_c", ">", f64::NAN)]),
            "threshold"
        );
        assert_eq!(err(&all, &[input("rack", "temp_c", ">", 1.0)]), "kind");
        let mixed = [
            input("gpu", "temp_c", ">", 1.0),
            input("node", "cpu_pct", ">", 1.0),
        ];
        assert_eq!(err(&all, &mixed), "conditions");
        let gpu = [input("gpu", "temp_c", ">", 1.0)];
        assert_eq!(err(&Scope::Nodes(vec![]), &gpu), "scope");
        assert_eq!(err(&Scope::Instances(vec![InstanceId(1)]), &gpu), "scope");
        let (kind, conds) = validate_conditions(&Scope::Nodes(vec![NodeId(1)]), &gpu).unwrap();
        assert_eq!(kind, Kind::Gpu);
        assert_eq!(conds[0].op, Op::Gt);
        // Derived percentages are known metrics.
        assert!(
            validate_conditions(&all, &[input("node", "disk_data_used_pct", ">", 90.0)]).is_ok()
        );
    }

    #[test]
    fn derived_percentages_need_both_fresh_series() {
        let t = Target::Node { node: NodeId(1) };
        let at = |ts, value| Latest {
            ts,
            value,
            low_since: None,
        };
        let mut latest = HashMap::new();
        latest.insert((t, "disk_data_used_bytes"), at(100, 95.0));
        assert_eq!(value_of(&latest, t, "disk_data_used_pct", 50), None);
        latest.insert((t, "disk_data_total_bytes"), at(100, 100.0));
        assert_eq!(value_of(&latest, t, "disk_data_used_pct", 50), Some(95.0));
        assert_eq!(value_of(&latest, t, "disk_data_used_pct", 101), None);
        latest.insert((t, "disk_data_total_bytes"), at(100, 0.0));
        assert_eq!(value_of(&latest, t, "disk_data_used_pct", 50), None);
    }
}
