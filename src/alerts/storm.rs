//! Storm grouping (告警收敛): many announcements of one rule within a
//! minute become one message listing them. The first announcement of a
//! rule (or all of them, when one cycle or one event brings several) goes
//! out at once and opens a window of [`WINDOW`] seconds; what the rule
//! announces meanwhile is held and sent as one message when the window
//! ends (which then opens the next, so a storm that goes on costs one
//! message a minute). Fired, repeated and resolved announcements group
//! apart. Pure: the clock is the caller's.

use std::collections::HashMap;

use super::model::RuleId;
use super::notify::{Group, Notice};

/// How long one rule's announcements are gathered into one message.
pub const WINDOW: i64 = 60;
/// The most alerts a grouped message spells out (the count says the rest).
const LISTED: usize = 20;

struct Window {
    until: i64,
    held: Vec<Notice>,
}

/// A rule, a kind of announcement and a tenant (instance alerts of one
/// tenant group apart from another's: a tenant's own channels get them).
type Key = (RuleId, &'static str, Option<i64>);

/// The open windows, by rule, kind of announcement and tenant.
#[derive(Default)]
pub struct Storm {
    open: HashMap<Key, Window>,
}

impl Storm {
    /// Takes what a cycle (or an event) announces at `now`; returns what
    /// to send now.
    pub fn admit(&mut self, batch: Vec<Notice>, now: i64) -> Vec<Notice> {
        let mut groups: Vec<(Key, Vec<Notice>)> = Vec::new();
        for n in batch {
            let key = (n.rule_id, n.event.as_str(), n.tenant_id);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push(n),
                None => groups.push((key, vec![n])),
            }
        }
        let mut out = Vec::new();
        for (key, g) in groups {
            match self.open.get_mut(&key) {
                Some(w) if w.until > now => w.held.extend(g),
                _ => {
                    let w = Window {
                        until: now + WINDOW,
                        held: Vec::new(),
                    };
                    self.open.insert(key, w);
                    out.extend(merge(g));
                }
            }
        }
        out
    }

    /// Everything held, one message per rule, windows closed (shutdown:
    /// nothing held is lost).
    pub fn flush(&mut self) -> Vec<Notice> {
        let mut out: Vec<Notice> = self
            .open
            .drain()
            .filter_map(|(_, w)| merge(w.held))
            .collect();
        out.sort_by_key(|n| n.alert_id);
        out
    }

    /// What windows ended by `now` held, one message per rule.
    pub fn due(&mut self, now: i64) -> Vec<Notice> {
        let mut out = Vec::new();
        self.open.retain(|_, w| {
            if w.until > now {
                return true;
            }
            if w.held.is_empty() {
                return false;
            }
            out.extend(merge(std::mem::take(&mut w.held)));
            w.until = now + WINDOW;
            true
        });
        out.sort_by_key(|n| n.alert_id);
        out
    }
}

/// Several announcements of one rule as one message (one stays itself).
fn merge(mut g: Vec<Notice>) -> Option<Notice> {
    if g.len() <= 1 {
        return g.pop();
    }
    let count = g.len();
    let mut listed: Vec<&str> = g.iter().take(LISTED).map(|n| n.message.as_str()).collect();
    let more = count.saturating_sub(LISTED);
    let tail = (more > 0).then(|| format!("… and {more} more"));
    listed.extend(tail.as_deref());
    let message = format!("{count} alerts of {}: {}", g[0].rule, listed.join("; "));
    let group = Group {
        count,
        alert_ids: g.iter().map(|n| n.alert_id).collect(),
        targets: g.iter().map(|n| n.target.clone()).collect(),
        facts: g.iter().take(LISTED).map(|n| n.facts.clone()).collect(),
    };
    let mut first = g.swap_remove(0);
    first.message = message;
    first.group = Some(group);
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::Level;
    use crate::alerts::notify::Event;

    fn notice(id: i64, rule: i64, event: Event) -> Notice {
        Notice {
            event,
            alert_id: id,
            rule_id: RuleId(rule),
            rule: format!("rule {rule}"),
            level: Level::P1,
            message: format!("m{id}"),
            target: format!("node:{id}"),
            node_id: Some(id),
            instance_id: None,
            metric: String::new(),
            value: None,
            triggered_at: 0,
            resolved_at: None,
            reason: None,
            group: None,
            tenant_id: None,
            facts: None,
        }
    }

    #[test]
    fn a_storm_of_one_rule_becomes_one_message_a_minute() {
        let mut s = Storm::default();
        let t0 = 1_000;
        // One cycle fires three of rule 1 and one of rule 2.
        let out = s.admit(
            vec![
                notice(1, 1, Event::Fired),
                notice(2, 1, Event::Fired),
                notice(3, 2, Event::Fired),
                notice(4, 1, Event::Fired),
            ],
            t0,
        );
        assert_eq!(out.len(), 2);
        let g = out[0].group.as_ref().unwrap();
        assert_eq!((g.count, g.alert_ids.clone()), (3, vec![1, 2, 4]));
        assert_eq!(out[0].message, "3 alerts of rule 1: m1; m2; m4");
        assert!(out[1].group.is_none());
        // Within the minute: held; a resolve is another kind of message.
        for id in 5..30 {
            assert!(
                s.admit(vec![notice(id, 1, Event::Fired)], t0 + 10)
                    .is_empty()
            );
        }
        assert_eq!(
            s.admit(vec![notice(40, 1, Event::Resolved)], t0 + 10).len(),
            1
        );
        assert!(s.due(t0 + 59).is_empty());
        let out = s.due(t0 + 60);
        assert_eq!(out.len(), 1);
        let g = out[0].group.as_ref().unwrap();
        assert_eq!(g.count, 25);
        assert!(
            out[0].message.ends_with("… and 5 more"),
            "{}",
            out[0].message
        );
        // The storm goes on: the next window holds the next one ...
        assert!(
            s.admit(vec![notice(50, 1, Event::Fired)], t0 + 70)
                .is_empty()
        );
        let out = s.due(t0 + 120);
        assert_eq!(
            (out.len(), out[0].alert_id, out[0].group.is_none()),
            (1, 50, true)
        );
        // Instance alerts of two tenants never share a message.
        let of = |id, t| Notice {
            tenant_id: Some(t),
            ..notice(id, 3, Event::Fired)
        };
        let out = s.admit(vec![of(70, 1), of(71, 2), of(72, 1)], t0 + 70);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].group.as_ref().unwrap().alert_ids, [70, 72]);
        assert!(out[1].group.is_none() && out[1].tenant_id == Some(2));
        // ... and once a window passes empty, the next alert goes at once.
        assert!(s.due(t0 + 180).is_empty());
        assert_eq!(
            s.admit(vec![notice(60, 1, Event::Fired)], t0 + 181).len(),
            1
        );
    }

    /// At shutdown the engine sends what storm windows hold, one grouped
    /// message per rule, instead of dropping it; nothing is sent twice.
    #[test]
    fn what_windows_hold_is_sent_at_shutdown() {
        let (q, mut rx) = crate::alerts::notify::queue();
        let mut engine = crate::alerts::Engine::with_notifier(q);
        let t0 = 1_000;
        engine.send(vec![notice(1, 1, Event::Fired)], t0);
        engine.send(
            vec![notice(2, 1, Event::Fired), notice(3, 1, Event::Fired)],
            t0 + 5,
        );
        engine.send(vec![notice(4, 2, Event::Fired)], t0 + 6);
        engine.send(vec![notice(5, 2, Event::Fired)], t0 + 7);
        let mut sent = Vec::new();
        while let Ok(n) = rx.try_recv() {
            sent.push(n.alert_id);
        }
        assert_eq!(sent, [1, 4], "2, 3 and 5 are held by their windows");
        assert_eq!(engine.flush(), 2);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.group.unwrap().alert_ids, [2, 3]);
        let second = rx.try_recv().unwrap();
        assert_eq!((second.alert_id, second.group.is_none()), (5, true));
        assert!(rx.try_recv().is_err());
        assert_eq!(engine.flush(), 0);
    }
}
