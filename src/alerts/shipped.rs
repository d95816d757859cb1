//! The alert rules gpudock ships (V18, V21) in the reader's language: they
//! are stored with English names and descriptions; while an admin has not
//! renamed one, pages show its words from the catalogue. Pure: no I/O.

use crate::i18n::Tr;

/// The shipped rules' stored names and descriptions, with their i18n key.
const SHIPPED: &[(&str, &str, &str)] = &[
    (
        "GPU temperature",
        "A GPU at or above 90 °C for a minute",
        "gpu_temp",
    ),
    (
        "Data disk almost full",
        "The data directory's disk over 90 % used for five minutes",
        "disk_full",
    ),
    ("GPU ECC errors", "Volatile ECC errors on a GPU", "ecc"),
    (
        "Node unreachable",
        "A node's Docker daemon has not answered for a minute",
        "node_unreachable",
    ),
    (
        "Instance OOM-killed",
        "An instance's container was killed for lack of memory",
        "oom",
    ),
    (
        "Instance restarting in a loop",
        "An instance's container restarted five times or more",
        "restart_loop",
    ),
    (
        "Instance exited unexpectedly",
        "An instance's container stopped without anyone stopping it",
        "exited",
    ),
    (
        "Account locked",
        "An account was locked by failed sign-ins",
        "account_locked",
    ),
    ("GPU XID error", "A GPU reported an XID error", "xid"),
    (
        "Large session",
        "A remote session moved more than 10 GiB",
        "large_session",
    ),
    (
        "Lease expiring",
        "A lease ends within a day",
        "lease_expiring",
    ),
    (
        "Backup failed",
        "A backup of the appliance failed",
        "backup_failed",
    ),
];

/// A rule's name as shown: a shipped rule's in `tr`'s language, any other
/// as stored.
pub fn name(tr: &Tr, stored: &str) -> String {
    match SHIPPED.iter().find(|(n, _, _)| *n == stored) {
        Some((_, _, key)) => tr.t(&format!("alerts.shipped.{key}")).to_string(),
        None => stored.to_string(),
    }
}

/// A rule's description as shown (see [`name`]).
pub fn description(tr: &Tr, stored: &str) -> String {
    match SHIPPED.iter().find(|(_, d, _)| *d == stored) {
        Some((_, _, key)) => tr.t(&format!("alerts.shipped.{key}_desc")).to_string(),
        None => stored.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::i18n::Lang;

    /// Every shipped rule of the schema has its words in both languages;
    /// a renamed rule shows as stored.
    #[test]
    fn shipped_rules_read_in_both_languages() {
        let conn = crate::db::memory().unwrap();
        let mut stmt = conn
            .prepare("SELECT name, description FROM alert_rules")
            .unwrap();
        let rules: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rules.len(), SHIPPED.len());
        for lang in [Lang::En, Lang::ZhCn] {
            let tr = Tr::new(lang);
            for (n, d) in &rules {
                assert!(!name(&tr, n).starts_with("alerts."), "{n} in {lang:?}");
                assert!(
                    !description(&tr, d).starts_with("alerts."),
                    "{d} in {lang:?}"
                );
            }
        }
        let zh = Tr::new(Lang::ZhCn);
        assert_eq!(name(&zh, "GPU temperature"), "GPU 温度");
        assert_eq!(name(&zh, "My own rule"), "My own rule");
        assert_eq!(
            name(&Tr::new(Lang::En), "GPU temperature"),
            "GPU temperature"
        );
    }
}
