//! The audit log in words, in the reader's language: an action
//! (`instance.start`) reads as its resource and its verb ("Instance: start",
//! "实例：启动"), a resource type and an outcome as words, and a record's
//! detail as labelled fields instead of JSON. The stored record and the
//! exports keep the codes. Pure: no I/O.

use serde_json::Value;

use crate::i18n::Tr;

/// `key` in `tr`'s language, or None where the catalogue lacks it.
fn word(tr: &Tr, key: &str) -> Option<String> {
    let t = tr.t(key);
    (t != key).then(|| t.to_string())
}

/// A code's words where there are none: `ssh_host_key_pin` → "ssh host key pin".
fn spaced(code: &str) -> String {
    code.replace(['_', '.'], " ")
}

/// An action code in words: its resource and its verb.
pub fn action(tr: &Tr, code: &str) -> String {
    let (res, verb) = code.split_once('.').unwrap_or((code, ""));
    let res = resource(tr, res);
    if verb.is_empty() {
        return res;
    }
    let verb_key = format!("auditverb.{}", verb.replace('.', "_"));
    let verb = word(tr, &verb_key).unwrap_or_else(|| spaced(verb));
    format!("{res}{}{verb}", tr.t("auditres.sep"))
}

/// A resource type (or an action's resource) in words.
pub fn resource(tr: &Tr, code: &str) -> String {
    word(tr, &format!("auditres.{code}")).unwrap_or_else(|| spaced(code))
}

/// An outcome (`success`, `failure`, `denied`) in words.
pub fn outcome(tr: &Tr, code: &str) -> String {
    word(tr, &format!("audit.o_{code}")).unwrap_or_else(|| code.to_string())
}

/// A record's detail as (label, value) pairs: an object's fields in their
/// order, labelled in words where the catalogue has them; any other value
/// as one unlabelled field; nothing for null or an empty object.
pub fn fields(tr: &Tr, detail: &Value) -> Vec<(String, String)> {
    match detail {
        Value::Null => Vec::new(),
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let label = word(tr, &format!("auditf.{k}")).unwrap_or_else(|| spaced(k));
                (label, text(tr, v))
            })
            .collect(),
        other => vec![(String::new(), text(tr, other))],
    }
}

/// A value as a reader sees it: text unquoted, yes or no in words, lists
/// joined with commas, anything nested as compact JSON.
fn text(tr: &Tr, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => tr.t(if *b { "audit.yes" } else { "audit.no" }).to_string(),
        Value::Array(a) => a.iter().map(|v| text(tr, v)).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::i18n::Lang;
    use serde_json::json;

    #[test]
    fn actions_resources_outcomes_and_details_in_words() {
        let en = Tr::new(Lang::En);
        let zh = Tr::new(Lang::ZhCn);
        assert_eq!(action(&en, "instance.start"), "Instance: start");
        assert_eq!(action(&zh, "instance.start"), "实例：启动");
        assert_eq!(
            action(&en, "lease.request.approve"),
            "Lease: extension approved"
        );
        assert_eq!(action(&en, "brand_new.thing_done"), "brand new: thing done");
        assert_eq!(resource(&zh, "api_token"), "API 令牌");
        assert_eq!(outcome(&zh, "denied"), "拒绝");
        assert_eq!(outcome(&en, "odd"), "odd");
        let f = fields(
            &en,
            &json!({"role": "customer_member", "routes": ["GET /a", "GET /b"], "n": 3, "gone": null, "x": {"y": 1}, "listed": true}),
        );
        assert_eq!(
            f,
            [
                ("Listed".to_string(), "yes".to_string()),
                ("n".to_string(), "3".to_string()),
                ("Role".to_string(), "customer_member".to_string()),
                ("Routes".to_string(), "GET /a, GET /b".to_string()),
                ("x".to_string(), "{\"y\":1}".to_string()),
            ]
        );
        assert!(fields(&en, &Value::Null).is_empty());
        assert_eq!(
            fields(&en, &json!("plain")),
            [(String::new(), "plain".to_string())]
        );
    }

    /// Every action and resource type the sources record has its words in
    /// both languages. Actions are the `"resource.verb"` literals in files
    /// that make audit events, less the catalogue's own keys and labels.
    #[test]
    fn every_recorded_action_has_words_in_both_languages() {
        let en = Tr::new(Lang::En);
        let mut missing = Vec::new();
        let mut seen = 0;
        for text in crate::testutil::source_texts(&["src"]) {
            // Code only: a file's tests module, and files of tests, left out.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            if !code.contains("Event::new(") || code.contains("#[test]") {
                continue;
            }
            for lit in code.split('"').skip(1).step_by(2) {
                let parts: Vec<&str> = lit.split('.').collect();
                let code_like = (2..=3).contains(&parts.len())
                    && parts.iter().all(|p| {
                        !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    });
                if !code_like || en.t(lit) != lit || parts[0] == "gpudock" || parts[0] == "test" {
                    continue;
                }
                seen += 1;
                for lang in [Lang::En, Lang::ZhCn] {
                    let tr = Tr::new(lang);
                    let verb = format!("auditverb.{}", parts[1..].join("_"));
                    for k in [format!("auditres.{}", parts[0]), verb] {
                        if tr.t(&k) == k {
                            missing.push(format!("{lit}: {k} ({lang:?})"));
                        }
                    }
                }
            }
        }
        assert!(seen > 60, "found only {seen} actions");
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "actions without words: {missing:#?}");
        for t in [
            "account_opening",
            "api_token",
            "cloud_user",
            "dataset",
            "image",
            "instance",
            "lease_request",
            "node",
            "notification_channel",
            "permission",
            "route",
            "session",
            "spec",
            "ssh_key",
            "tenant",
            "user",
            "alert",
            "alert_rule",
            "maintenance_window",
        ] {
            for lang in [Lang::En, Lang::ZhCn] {
                let k = format!("auditres.{t}");
                assert_ne!(Tr::new(lang).t(&k), k, "{lang:?}");
            }
        }
    }
}
