//! Users to notify (通知用户): the users a rule names besides its channels.
//! Each gets the rule's alerts by e-mail, at their account's address,
//! through the lab's e-mail channels (the rule's own first), in their own
//! language, and only alerts about what they may see: an admin every
//! alert, a customer owner the instance alerts of their tenant, a member
//! those of their own instances (the alert list's scope, decided in the
//! query). In the app, the alert list and the dashboard show them the
//! same alerts.

use rusqlite::{Connection, Transaction, params};

use super::model::RuleId;
use super::store::{SEALED_COLUMNS, SealedChannel, sealed_row};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::i18n::Lang;

/// Replaces the users `rule` notifies; an id that names no user is
/// refused by name (`notify_users`).
pub fn write(tx: &Transaction<'_>, rule: RuleId, users: &[i64]) -> Result<(), AppError> {
    let mut known = tx.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
    for id in users {
        if !known.exists([id])? {
            return Err(AppError::Validation(FieldErrors::from([(
                "notify_users",
                FieldError::with_detail("err.alert_notify_user", id.to_string()),
            )])));
        }
    }
    tx.execute("DELETE FROM alert_rule_users WHERE rule_id = ?1", [rule])?;
    for id in users {
        tx.execute(
            "INSERT OR IGNORE INTO alert_rule_users (rule_id, user_id) VALUES (?1, ?2)",
            params![rule, id],
        )?;
    }
    Ok(())
}

/// The users `rule` notifies, by id.
pub fn of_rule(c: &Connection, rule: RuleId) -> rusqlite::Result<Vec<i64>> {
    c.prepare_cached("SELECT user_id FROM alert_rule_users WHERE rule_id = ?1 ORDER BY user_id")?
        .query_map([rule], |r| r.get(0))?
        .collect()
}

/// A user the rule form offers: id and name.
pub fn choices(c: &Connection) -> rusqlite::Result<Vec<(i64, String)>> {
    c.prepare_cached("SELECT id, username FROM users WHERE enabled = 1 ORDER BY username")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// One user an announcement is e-mailed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: i64,
    pub email: String,
    pub lang: Lang,
}

/// The users of `rule` who may see alert `alert` and have an address.
fn seeing(c: &Connection, rule: RuleId, alert: i64) -> rusqlite::Result<Vec<Recipient>> {
    c.prepare_cached(
        "SELECT u.id, u.email, u.language FROM alert_rule_users ru
         JOIN users u ON u.id = ru.user_id
         JOIN alert_records a ON a.id = ?2
         LEFT JOIN instances i ON i.id = a.instance_id
         WHERE ru.rule_id = ?1 AND u.enabled = 1 AND u.email <> ''
           AND (u.role = 'admin'
                OR (a.instance_id IS NOT NULL AND u.role = 'customer_owner'
                    AND u.tenant_id = a.tenant_id)
                OR (a.instance_id IS NOT NULL AND u.role = 'customer_member'
                    AND i.user_id = u.id))
         ORDER BY u.id",
    )?
    .query_map(params![rule, alert], |r| {
        let lang: String = r.get(2)?;
        Ok(Recipient {
            user_id: r.get(0)?,
            email: r.get(1)?,
            lang: Lang::parse(&lang).unwrap_or(Lang::ZhCn),
        })
    })?
    .collect()
}

/// The users of `rule` who may see every one of `alerts` (a storm's one
/// message names them all).
pub fn for_alerts(
    c: &Connection,
    rule: RuleId,
    alerts: &[i64],
) -> rusqlite::Result<Vec<Recipient>> {
    let Some((first, rest)) = alerts.split_first() else {
        return Ok(Vec::new());
    };
    let mut out = seeing(c, rule, *first)?;
    for a in rest {
        let also = seeing(c, rule, *a)?;
        out.retain(|r| also.iter().any(|x| x.user_id == r.user_id));
    }
    Ok(out)
}

/// The lab's enabled e-mail channels, the rule's own first.
pub fn mail_channels(c: &Connection, rule: RuleId) -> rusqlite::Result<Vec<SealedChannel>> {
    c.prepare_cached(&format!(
        "SELECT {SEALED_COLUMNS} FROM notification_channels n
         WHERE n.enabled = 1 AND n.kind = 'email' AND n.tenant_id IS NULL
         ORDER BY n.id NOT IN (SELECT channel_id FROM alert_rule_channels WHERE rule_id = ?1), n.id"
    ))?
    .query_map([rule], sealed_row)?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admin 1 (en), owner 2 of tenant 1, member 3 of tenant 1 (owns
    /// instance 1), owner 4 of tenant 2, admin 5 without an address,
    /// admin 6 disabled; a node alert (1) and an instance alert (2).
    fn lab() -> Connection {
        let c = crate::db::memory().unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at)
               VALUES (1, 'A', 'A', 0, 0), (2, 'B', 'B', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at, email, language, enabled)
               VALUES (1, 'root', 'admin', NULL, 'h', 0, 0, 'root@x', 'en', 1),
                      (2, 'own', 'customer_owner', 1, 'h', 0, 0, 'own@x', 'zh-CN', 1),
                      (3, 'mem', 'customer_member', 1, 'h', 0, 0, 'mem@x', '', 1),
                      (4, 'other', 'customer_owner', 2, 'h', 0, 0, 'other@x', '', 1),
                      (5, 'noaddr', 'admin', NULL, 'h', 0, 0, '', '', 1),
                      (6, 'off', 'admin', NULL, 'h', 0, 0, 'off@x', '', 0);
             INSERT INTO images (name, address, created_at, updated_at) VALUES ('i', 'busybox', 0, 0);
             INSERT INTO specs (name, gpu_model, created_at, updated_at) VALUES ('s', 'm', 0, 0);
             INSERT INTO nodes (name, public_ip, private_ip, created_at, updated_at) VALUES ('n', '1', '1', 0, 0);
             INSERT INTO instances (name, image_id, spec_id, node_id, user_id, tenant_id, status, gpu_count, cpu_cores,
               memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at)
               VALUES ('x', 1, 1, 1, 3, 1, 'running', 0, 1, 1, 0, 0, 0, 0);
             INSERT INTO alert_rules (id, name, scope, scope_ids, combine, duration_s, level, enabled,
               silence_s, tags, created_at, updated_at)
               VALUES (100, 'notify test', 'all', '[]', 'and', 0, 'P1', 1, 60, '[]', 0, 0);
             INSERT INTO alert_records (id, rule_id, target, node_id, instance_id, tenant_id, metric,
               level, message, status, triggered_at, notified_at)
               VALUES (1, 100, 'node:1', 1, NULL, NULL, 'cpu', 'P1', 'm', 'firing', 0, 0),
                      (2, 100, 'instance:1', 1, 1, 1, 'cpu', 'P1', 'm', 'firing', 0, 0);",
        )
        .unwrap();
        c
    }

    const R: RuleId = RuleId(100);

    fn ids(r: &[Recipient]) -> Vec<i64> {
        r.iter().map(|x| x.user_id).collect()
    }

    #[test]
    fn users_get_only_alerts_they_may_see() {
        let mut c = lab();
        let tx = c.transaction().unwrap();
        write(&tx, R, &[1, 2, 3, 4, 5, 6]).unwrap();
        let e = write(&tx, R, &[1, 999]).unwrap_err();
        assert!(e.fields().unwrap().contains_key("notify_users"), "{e:?}");
        tx.commit().unwrap();
        assert_eq!(of_rule(&c, R).unwrap(), vec![1, 2, 3, 4, 5, 6]);
        // The node alert: admins only (with an address, enabled).
        let node = for_alerts(&c, R, &[1]).unwrap();
        assert_eq!(ids(&node), vec![1]);
        assert_eq!(node[0].lang, Lang::En);
        // The instance alert: the admin, its tenant's owner, its member.
        let inst = for_alerts(&c, R, &[2]).unwrap();
        assert_eq!(ids(&inst), vec![1, 2, 3]);
        assert_eq!(
            inst.iter().map(|r| r.lang).collect::<Vec<_>>(),
            vec![Lang::En, Lang::ZhCn, Lang::ZhCn]
        );
        // A storm naming both: only who sees both.
        assert_eq!(ids(&for_alerts(&c, R, &[2, 1]).unwrap()), vec![1]);
    }
}
