//! What an alert says, kept language-neutral beside its (English) message,
//! so each recipient reads it in their own language: what it is about (by
//! name), the metric's value against its condition, or the event and its
//! detail. The English rendering is the stored message itself.

use serde::{Deserialize, Serialize};

use crate::i18n::Tr;

/// What an alert is about, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "about", rename_all = "snake_case")]
pub enum About {
    Node { node: String },
    Gpu { gpu: i64, node: String },
    Instance { instance: String, node: String },
    Account { user: String },
    Session { session: i64, user: Option<String> },
    Lease { lease: i64 },
    Appliance,
}

/// A metric rule's condition and the value that met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub metric: String,
    pub value: f64,
    /// The condition that held (`>` and its threshold), where one did.
    pub condition: Option<(String, f64)>,
}

/// The language-neutral facts of one alert (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub about: About,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
    /// An event alert's event (`instance_exited` ...) and its detail as
    /// its source gave it (figures, a daemon's words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<(String, String)>,
}

impl Facts {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Facts stored by this version (older alerts have none).
    pub fn parse(s: &str) -> Option<Facts> {
        serde_json::from_str(s).ok()
    }
}

/// What it is about, in `tr`'s language.
pub fn about(a: &About, tr: Tr) -> String {
    let t = |k: &str| tr.t(k).to_string();
    match a {
        About::Node { node } => t("alerts.about_node").replace("{node}", node),
        About::Gpu { gpu, node } => t("alerts.about_gpu")
            .replace("{gpu}", &gpu.to_string())
            .replace("{node}", node),
        About::Instance { instance, node } => t("alerts.about_instance")
            .replace("{instance}", instance)
            .replace("{node}", node),
        About::Account { user } => t("alerts.about_account").replace("{user}", user),
        About::Session { session, user } => {
            let key = match user {
                Some(_) => "alerts.about_session_of",
                None => "alerts.about_session",
            };
            t(key)
                .replace("{session}", &session.to_string())
                .replace("{user}", user.as_deref().unwrap_or(""))
        }
        About::Lease { lease } => t("alerts.about_lease").replace("{lease}", &lease.to_string()),
        About::Appliance => t("alerts.about_appliance"),
    }
}

/// The alert's one-line message in `tr`'s language: the rule, what it is
/// about, and the value against the condition or the event. In English it
/// is the stored message.
pub fn line(f: &Facts, rule: &str, tr: Tr) -> String {
    let sep = tr.t("alerts.msg_sep");
    let what = about(&f.about, tr);
    let tail = match (&f.measured, &f.event) {
        (Some(m), _) => {
            let cond = m
                .condition
                .as_ref()
                .map(|(op, x)| format!(" ({op} {x})"))
                .unwrap_or_default();
            format!("{} = {:.1}{cond}", m.metric, m.value)
        }
        (None, Some((_, detail))) if tr.lang == crate::i18n::Lang::En => detail.clone(),
        (None, Some((event, detail))) => {
            let label = tr.t(super::events::event_key(event));
            if detail.is_empty() {
                label.to_string()
            } else {
                format!("{label} ({detail})")
            }
        }
        (None, None) => String::new(),
    };
    format!("{rule}{sep}{what}{sep}{tail}")
}

/// A storm's one line in `tr`'s language: how many alerts of the rule,
/// the first few spelled out.
pub fn group_line(rule: &str, count: usize, lines: &[String], tr: Tr) -> String {
    let mut listed = lines.to_vec();
    let more = count.saturating_sub(lines.len());
    if more > 0 {
        listed.push(tr.t("alerts.msg_more").replace("{n}", &more.to_string()));
    }
    let head = tr
        .t("alerts.msg_group")
        .replace("{count}", &count.to_string())
        .replace("{rule}", rule);
    format!("{head}{}{}", tr.t("alerts.msg_sep"), listed.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn the_english_line_is_the_message_and_chinese_is_translated() {
        let f = Facts {
            about: About::Instance {
                instance: "box".into(),
                node: "n1".into(),
            },
            measured: None,
            event: Some(("instance_exited".into(), "exit code 1".into())),
        };
        let en = line(&f, "exited", Tr::new(Lang::En));
        assert_eq!(en, "exited: instance box on node n1: exit code 1");
        let zh = line(&f, "exited", Tr::new(Lang::ZhCn));
        assert!(
            zh.contains("实例 box") && zh.contains("实例异常退出") && !zh.contains("instance box"),
            "{zh}"
        );
        let m = Facts {
            about: About::Gpu {
                gpu: 0,
                node: "n1".into(),
            },
            measured: Some(Measured {
                metric: "gpu_temp".into(),
                value: 91.04,
                condition: Some((">".into(), 90.0)),
            }),
            event: None,
        };
        assert_eq!(
            line(&m, "hot", Tr::new(Lang::En)),
            "hot: GPU 0 of node n1: gpu_temp = 91.0 (> 90)"
        );
        let back = Facts::parse(&m.json()).unwrap();
        assert_eq!(back, m);
        let g = group_line("hot", 7, &["a".into(), "b".into()], Tr::new(Lang::En));
        assert_eq!(g, "7 alerts of hot: a; b; … and 5 more");
    }
}
