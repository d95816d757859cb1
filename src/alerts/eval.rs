//! The evaluation of metric rules: given the rules, the latest samples, the
//! open alerts and the time, what fires, what is announced again and what
//! resolves. Pure: the clock and the samples are the caller's, so the rule
//! semantics (duration, AND / OR, resolve, repeat after silence, one alert
//! per rule and target) are tested with injected samples.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::model::{Rule, RuleId};
use crate::metrics::hub::Latest;
use crate::metrics::model::{Kind, Target};

/// One alert's identity while it is open: a rule and the target it fired on.
pub type Key = (RuleId, Target);

/// An open alert (firing or acknowledged), as the engine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub record: i64,
    pub acknowledged: bool,
    /// When it was last announced.
    pub notified_at: i64,
}

/// Why an alert resolved by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The conditions no longer hold.
    Cleared,
    /// The target stopped reporting the rule's metrics.
    NoData,
    /// The rule was disabled, changed to another kind, or deleted.
    RuleOff,
    /// Closed by hand (acknowledge-and-close).
    Closed,
}
crate::text_enum!(Reason { Cleared => "cleared", NoData => "no_data", RuleOff => "rule_off", Closed => "closed" });

/// What a cycle decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The conditions held for the rule's duration: a new alert.
    Fire {
        rule: RuleId,
        target: Target,
        metric: &'static str,
        value: f64,
    },
    /// Still firing after the silence: announce it again.
    Repeat {
        record: i64,
        rule: RuleId,
        target: Target,
        metric: &'static str,
        value: f64,
    },
    /// It resolved by itself.
    Resolve {
        record: i64,
        rule: RuleId,
        target: Target,
        reason: Reason,
    },
}

/// What the engine remembers between cycles: since when each (rule,
/// target) has held without firing yet. Lost on restart (the duration
/// starts again), which errs on the quiet side.
#[derive(Debug, Default)]
pub struct Pending {
    since: HashMap<Key, i64>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.since.len()
    }
    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }
}

/// One cycle at `now`. Samples older than `fresh_since` count as missing.
pub fn evaluate(
    rules: &[Rule],
    latest: &HashMap<(Target, &'static str), Latest>,
    open: &HashMap<Key, Open>,
    pending: &mut Pending,
    now: i64,
    fresh_since: i64,
) -> Vec<Transition> {
    let mut targets: HashMap<Kind, BTreeSet<Target>> = HashMap::new();
    for (t, _) in latest.keys() {
        targets.entry(t.kind()).or_default().insert(*t);
    }
    let mut out = Vec::new();
    let mut seen: HashSet<Key> = HashSet::new();
    for rule in rules {
        let Some(ts) = targets.get(&rule.kind) else {
            continue;
        };
        for target in ts.iter().filter(|t| rule.scope.covers(t)) {
            let key = (rule.id, *target);
            seen.insert(key);
            let held = rule.check(latest, *target, fresh_since);
            match (held, open.get(&key)) {
                (Some((metric, value)), Some(o)) => {
                    pending.since.remove(&key);
                    let due = rule.silence_s > 0 && now - o.notified_at >= rule.silence_s;
                    if due && !o.acknowledged {
                        out.push(Transition::Repeat {
                            record: o.record,
                            rule: rule.id,
                            target: *target,
                            metric,
                            value,
                        });
                    }
                }
                (Some((metric, value)), None) => {
                    let since = *pending.since.entry(key).or_insert(now);
                    if now - since >= rule.duration_s {
                        pending.since.remove(&key);
                        out.push(Transition::Fire {
                            rule: rule.id,
                            target: *target,
                            metric,
                            value,
                        });
                    }
                }
                (None, o) => {
                    pending.since.remove(&key);
                    if let Some(o) = o {
                        let reported = rule.conditions.iter().any(|c| {
                            super::model::value_of(latest, *target, c.metric, fresh_since).is_some()
                        });
                        out.push(Transition::Resolve {
                            record: o.record,
                            rule: rule.id,
                            target: *target,
                            reason: if reported {
                                Reason::Cleared
                            } else {
                                Reason::NoData
                            },
                        });
                    }
                }
            }
        }
    }
    pending.since.retain(|k, _| seen.contains(k));
    // Open alerts the loop did not reach: their rule is gone (or no longer
    // covers the target), or the target no longer reports at all.
    let live: HashMap<RuleId, &Rule> = rules.iter().map(|r| (r.id, r)).collect();
    let mut rest: Vec<_> = open.iter().filter(|(k, _)| !seen.contains(k)).collect();
    rest.sort_by_key(|(_, o)| o.record);
    for ((rule, target), o) in rest {
        let covered = live
            .get(rule)
            .is_some_and(|r| r.kind == target.kind() && r.scope.covers(target));
        out.push(Transition::Resolve {
            record: o.record,
            rule: *rule,
            target: *target,
            reason: if covered {
                Reason::NoData
            } else {
                Reason::RuleOff
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::{Combine, Condition, Level, Op, Scope};
    use crate::ids::NodeId;

    const GPU0: Target = Target::Gpu {
        node: NodeId(1),
        gpu: 0,
    };
    const GPU1: Target = Target::Gpu {
        node: NodeId(2),
        gpu: 0,
    };

    fn rule(combine: Combine, conditions: Vec<Condition>, duration_s: i64) -> Rule {
        Rule {
            id: RuleId(7),
            name: "hot".into(),
            level: Level::P1,
            scope: Scope::All,
            kind: Kind::Gpu,
            combine,
            conditions,
            duration_s,
            silence_s: 600,
        }
    }

    fn cond(metric: &'static str, op: Op, threshold: f64) -> Condition {
        Condition {
            metric,
            op,
            threshold,
        }
    }

    /// The samples and the open alerts, driven like the engine drives them.
    #[derive(Default)]
    struct World {
        latest: HashMap<(Target, &'static str), Latest>,
        open: HashMap<Key, Open>,
        pending: Pending,
        next: i64,
    }

    impl World {
        fn sample(&mut self, target: Target, metric: &'static str, ts: i64, value: f64) {
            let l = Latest {
                ts,
                value,
                low_since: None,
            };
            self.latest.insert((target, metric), l);
        }
        /// One cycle at `now` (samples fresh for 30 s), applying what it decided.
        fn cycle(&mut self, rules: &[Rule], now: i64) -> Vec<Transition> {
            let out = evaluate(
                rules,
                &self.latest,
                &self.open,
                &mut self.pending,
                now,
                now - 30,
            );
            for t in &out {
                match t {
                    Transition::Fire { rule, target, .. } => {
                        self.next += 1;
                        let o = Open {
                            record: self.next,
                            acknowledged: false,
                            notified_at: now,
                        };
                        assert!(self.open.insert((*rule, *target), o).is_none());
                    }
                    Transition::Repeat { rule, target, .. } => {
                        self.open.get_mut(&(*rule, *target)).unwrap().notified_at = now;
                    }
                    Transition::Resolve { rule, target, .. } => {
                        self.open.remove(&(*rule, *target)).unwrap();
                    }
                }
            }
            out
        }
    }

    fn fired(out: &[Transition]) -> Vec<Target> {
        out.iter()
            .filter_map(|t| match t {
                Transition::Fire { target, .. } => Some(*target),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fires_only_after_the_duration_once_per_target_and_resolves() {
        let rules = [rule(Combine::And, vec![cond("temp_c", Op::Ge, 90.0)], 60)];
        let mut w = World::default();
        w.sample(GPU0, "temp_c", 1000, 91.0);
        w.sample(GPU1, "temp_c", 1000, 50.0);
        assert!(w.cycle(&rules, 1000).is_empty(), "the duration starts");
        w.sample(GPU0, "temp_c", 1045, 92.0);
        assert!(w.cycle(&rules, 1045).is_empty(), "45 s is not a minute");
        w.sample(GPU0, "temp_c", 1060, 93.0);
        let out = w.cycle(&rules, 1060);
        assert_eq!(
            out,
            vec![Transition::Fire {
                rule: RuleId(7),
                target: GPU0,
                metric: "temp_c",
                value: 93.0
            }]
        );
        // Still hot: no second alert for the same (rule, target).
        w.sample(GPU0, "temp_c", 1075, 94.0);
        assert!(w.cycle(&rules, 1075).is_empty());
        // Cooled: resolved by itself, saying the condition cleared.
        w.sample(GPU0, "temp_c", 1090, 70.0);
        let out = w.cycle(&rules, 1090);
        assert!(matches!(
            out[..],
            [Transition::Resolve {
                record: 1,
                reason: Reason::Cleared,
                ..
            }]
        ));
        assert!(w.open.is_empty());
    }

    #[test]
    fn a_dip_restarts_the_duration() {
        let rules = [rule(Combine::And, vec![cond("temp_c", Op::Gt, 90.0)], 30)];
        let mut w = World::default();
        for (now, v) in [(0, 95.0), (15, 80.0), (30, 95.0), (45, 95.0)] {
            w.sample(GPU0, "temp_c", now, v);
            assert!(w.cycle(&rules, now).is_empty(), "at {now}");
        }
        w.sample(GPU0, "temp_c", 60, 95.0);
        assert_eq!(fired(&w.cycle(&rules, 60)), vec![GPU0]);
    }

    #[test]
    fn and_needs_every_condition_or_needs_one() {
        let conds = vec![cond("temp_c", Op::Ge, 90.0), cond("util_pct", Op::Lt, 5.0)];
        let and = [rule(Combine::And, conds.clone(), 0)];
        let or = [rule(Combine::Or, conds, 0)];
        let mut w = World::default();
        w.sample(GPU0, "temp_c", 100, 95.0);
        w.sample(GPU0, "util_pct", 100, 50.0);
        assert!(w.cycle(&and, 100).is_empty(), "hot but busy");
        let out = w.cycle(&or, 100);
        assert!(matches!(
            out[..],
            [Transition::Fire {
                metric: "temp_c",
                ..
            }]
        ));
        let mut w = World::default();
        w.sample(GPU0, "temp_c", 100, 95.0);
        w.sample(GPU0, "util_pct", 100, 1.0);
        let out = w.cycle(&and, 100);
        assert!(matches!(
            out[..],
            [Transition::Fire {
                metric: "temp_c",
                value: 95.0,
                ..
            }]
        ));
        // The OR rule reports the condition that held.
        let mut w = World::default();
        w.sample(GPU0, "temp_c", 100, 20.0);
        w.sample(GPU0, "util_pct", 100, 1.0);
        assert!(matches!(
            w.cycle(&or, 100)[..],
            [Transition::Fire {
                metric: "util_pct",
                ..
            }]
        ));
    }

    #[test]
    fn repeats_only_after_the_silence_and_never_when_acknowledged() {
        let rules = [rule(Combine::And, vec![cond("temp_c", Op::Ge, 90.0)], 0)];
        let mut w = World::default();
        let hot = |w: &mut World, now| w.sample(GPU0, "temp_c", now, 99.0);
        hot(&mut w, 0);
        assert_eq!(fired(&w.cycle(&rules, 0)), vec![GPU0]);
        hot(&mut w, 300);
        assert!(w.cycle(&rules, 300).is_empty(), "within the silence");
        hot(&mut w, 600);
        let out = w.cycle(&rules, 600);
        assert!(matches!(out[..], [Transition::Repeat { record: 1, .. }]));
        hot(&mut w, 900);
        assert!(w.cycle(&rules, 900).is_empty(), "the silence restarted");
        w.open.get_mut(&(RuleId(7), GPU0)).unwrap().acknowledged = true;
        hot(&mut w, 1300);
        assert!(w.cycle(&rules, 1300).is_empty(), "acknowledged: quiet");
        // A rule with no silence never repeats.
        let quiet = [Rule {
            silence_s: 0,
            ..rules[0].clone()
        }];
        w.open.get_mut(&(RuleId(7), GPU0)).unwrap().acknowledged = false;
        hot(&mut w, 99_000);
        assert!(w.cycle(&quiet, 99_000).is_empty());
    }

    #[test]
    fn stale_or_vanished_targets_and_rules_off_resolve_with_their_reason() {
        let rules = [rule(Combine::And, vec![cond("temp_c", Op::Ge, 90.0)], 0)];
        let mut w = World::default();
        w.sample(GPU0, "temp_c", 0, 99.0);
        w.sample(GPU1, "temp_c", 0, 99.0);
        assert_eq!(fired(&w.cycle(&rules, 0)).len(), 2);
        // GPU0 stops reporting (its last sample grows stale); GPU1's
        // series disappears altogether.
        w.latest.remove(&(GPU1, "temp_c"));
        let out = w.cycle(&rules, 100);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|t| matches!(
            t,
            Transition::Resolve {
                reason: Reason::NoData,
                ..
            }
        )));
        // A rule that is disabled (absent from the list) resolves its alerts.
        w.sample(GPU0, "temp_c", 200, 99.0);
        assert_eq!(fired(&w.cycle(&rules, 200)), vec![GPU0]);
        let out = w.cycle(&[], 215);
        assert!(matches!(
            out[..],
            [Transition::Resolve {
                reason: Reason::RuleOff,
                ..
            }]
        ));
    }

    #[test]
    fn scope_limits_the_targets() {
        let mut r = rule(Combine::And, vec![cond("temp_c", Op::Ge, 90.0)], 0);
        r.scope = Scope::Nodes(vec![NodeId(2)]);
        let mut w = World::default();
        w.sample(GPU0, "temp_c", 0, 99.0);
        w.sample(GPU1, "temp_c", 0, 99.0);
        assert_eq!(fired(&w.cycle(&[r], 0)), vec![GPU1]);
    }
}
