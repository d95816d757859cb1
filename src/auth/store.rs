//! SQL for users, tenants and API tokens. Every query that serves a signed-in
//! user takes a `Scope`, so tenant isolation is enforced in the SQL itself.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::model::{Quota, QuotaUse, Role, Scope, Tenant, TenantId, TokenScope, User, UserId};
use crate::paging::{Page, Search, Window};

const USER_COLS: &str = "id, username, display_name, role, tenant_id, enabled, \
    must_change_password, failed_logins, locked_until, session_epoch, created_at, updated_at, email, phone, language";

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: UserId(r.get(0)?),
        username: r.get(1)?,
        display_name: r.get(2)?,
        role: Role::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown role {role}").into(),
            )
        })?,
        tenant_id: r.get::<_, Option<i64>>(4)?.map(TenantId),
        enabled: r.get(5)?,
        must_change_password: r.get(6)?,
        failed_logins: r.get(7)?,
        locked_until: r.get(8)?,
        session_epoch: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        email: r.get(12)?,
        phone: r.get(13)?,
        language: r.get(14)?,
    })
}

/// (tenant filter, user filter) for the `(?1 IS NULL OR tenant_id = ?1) AND
/// (?2 IS NULL OR id = ?2)` pattern used by user queries.
fn user_filters(scope: Scope) -> (Option<i64>, Option<i64>) {
    match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    }
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
    pub password_hash: &'a str,
    pub must_change_password: bool,
}

pub fn insert_user(conn: &Connection, u: &NewUser<'_>, now: i64) -> rusqlite::Result<UserId> {
    conn.execute(
        "INSERT INTO users (username, display_name, role, tenant_id, password_hash, \
         must_change_password, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            u.username,
            u.display_name,
            u.role.as_str(),
            u.tenant_id.map(|t| t.0),
            u.password_hash,
            u.must_change_password,
            now
        ],
    )?;
    Ok(UserId(conn.last_insert_rowid()))
}

/// The users in scope (`?1` tenant, `?2` user), by id.
fn users_sql() -> String {
    format!(
        "SELECT {USER_COLS} FROM users WHERE (?1 IS NULL OR tenant_id = ?1) \
         AND (?2 IS NULL OR id = ?2) ORDER BY id"
    )
}

pub fn list_users(conn: &Connection, scope: Scope) -> rusqlite::Result<Vec<User>> {
    let (t, u) = user_filters(scope);
    let mut stmt = conn.prepare_cached(&users_sql())?;
    stmt.query_map(params![t, u], user_row)?.collect()
}

/// The status words a user search may ask for.
pub const USER_STATUSES: [&str; 3] = ["enabled", "disabled", "locked"];

/// [`list_users`] for the rows of `window` that `search` matches (`q` in
/// the user name, display name or e-mail; `status` one of
/// [`USER_STATUSES`], checked by the caller), and how many there are.
pub fn users_page(
    conn: &Connection,
    scope: Scope,
    search: &Search,
    window: Window,
) -> rusqlite::Result<Page<User>> {
    let (t, u) = user_filters(scope);
    let sql = format!(
        "SELECT {USER_COLS} FROM users WHERE (?1 IS NULL OR tenant_id = ?1) \
         AND (?2 IS NULL OR id = ?2) \
         AND (?3 IS NULL OR username LIKE ?3 ESCAPE '\\' OR display_name LIKE ?3 ESCAPE '\\' \
              OR email LIKE ?3 ESCAPE '\\') \
         AND (?4 IS NULL OR (?4 = 'disabled' AND enabled = 0) \
              OR (?4 = 'locked' AND enabled = 1 AND locked_until > ?5) \
              OR (?4 = 'enabled' AND enabled = 1 AND (locked_until IS NULL OR locked_until <= ?5))) \
         ORDER BY id"
    );
    let status = search.status_param();
    let now = crate::db::now();
    crate::paging::query(
        conn,
        &sql,
        &[&t, &u, &search.like(), &status, &now],
        window,
        user_row,
    )
}

pub fn get_user(conn: &Connection, scope: Scope, id: UserId) -> rusqlite::Result<Option<User>> {
    let (t, u) = user_filters(scope);
    conn.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users WHERE id = ?3 AND (?1 IS NULL OR tenant_id = ?1) \
             AND (?2 IS NULL OR id = ?2)"
    ))?
    .query_row(params![t, u, id.0], user_row)
    .optional()
}

/// A user looked up by name for signing in, with its password hash and whether
/// its tenant (if any) is enabled.
pub struct LoginRow {
    pub user: User,
    pub password_hash: String,
    pub tenant_enabled: bool,
}

/// `name` is the username, or the e-mail address (any case) of a user who
/// set one: usernames never contain `@`.
pub fn login_row(conn: &Connection, name: &str) -> rusqlite::Result<Option<LoginRow>> {
    conn.query_row(
        &format!(
            "SELECT {}, u.password_hash, COALESCE(t.enabled, 1) FROM users u \
             LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.username = ?1 \
             OR (instr(?1, '@') > 0 AND u.email <> '' AND lower(u.email) = lower(?1))",
            USER_COLS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        [name],
        |r| {
            Ok(LoginRow {
                user: user_row(r)?,
                password_hash: r.get(15)?,
                tenant_enabled: r.get(16)?,
            })
        },
    )
    .optional()
}

pub fn password_hash(conn: &Connection, id: UserId) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT password_hash FROM users WHERE id = ?1",
        [id.0],
        |r| r.get(0),
    )
    .optional()
}

/// Whether the user's tenant (if any) is enabled.
pub fn tenant_enabled_for(conn: &Connection, user: &User) -> rusqlite::Result<bool> {
    match user.tenant_id {
        None => Ok(true),
        Some(t) => conn
            .prepare_cached("SELECT enabled FROM tenants WHERE id = ?1")?
            .query_row([t.0], |r| r.get(0))
            .optional()
            .map(|e| e.unwrap_or(false)),
    }
}

#[derive(Debug, Default)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub tenant_id: Option<Option<TenantId>>,
    pub enabled: Option<bool>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub language: Option<String>,
}

/// Applies `change`; with `ends_sessions` (the change revokes access: see
/// `accounts`) the user's sessions end (session_epoch + 1).
pub fn update_user(
    conn: &Connection,
    id: UserId,
    change: &UserChange,
    ends_sessions: bool,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE users SET display_name = COALESCE(?2, display_name), role = COALESCE(?3, role), \
         tenant_id = CASE WHEN ?4 THEN ?5 ELSE tenant_id END, enabled = COALESCE(?6, enabled), \
         session_epoch = session_epoch + ?7, updated_at = ?8, email = COALESCE(?9, email), \
         phone = COALESCE(?10, phone), language = COALESCE(?11, language) WHERE id = ?1",
        params![
            id.0,
            change.display_name,
            change.role.map(Role::as_str),
            change.tenant_id.is_some(),
            change.tenant_id.flatten().map(|t| t.0),
            change.enabled,
            i64::from(ends_sessions),
            now,
            change.email,
            change.phone,
            change.language
        ],
    )?;
    Ok(())
}

/// Stores a new password hash, clears lockout state and ends every session of
/// the user (the caller re-binds its own session to the new epoch).
pub fn set_password(
    conn: &Connection,
    id: UserId,
    hash: &str,
    must_change: bool,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.query_row(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3, failed_logins = 0, \
         locked_until = NULL, session_epoch = session_epoch + 1, updated_at = ?4 WHERE id = ?1 \
         RETURNING session_epoch",
        params![id.0, hash, must_change, now],
        |r| r.get(0),
    )
}

/// Counts one failed login; at `threshold` consecutive failures the account is
/// locked until `now + lock_secs`. Returns whether this failure locked it.
pub fn record_login_failure(
    conn: &Connection,
    id: UserId,
    now: i64,
    threshold: u32,
    lock_secs: i64,
) -> rusqlite::Result<bool> {
    let count: u32 = conn.query_row(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?1 RETURNING failed_logins",
        [id.0],
        |r| r.get(0),
    )?;
    if count < threshold {
        return Ok(false);
    }
    conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = ?2 WHERE id = ?1",
        params![id.0, now + lock_secs],
    )?;
    Ok(true)
}

pub fn clear_login_failures(conn: &Connection, id: UserId) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1",
        [id.0],
    )?;
    Ok(())
}

pub fn count_enabled_admins(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND enabled = 1",
        [],
        |r| r.get(0),
    )
}

pub fn user_by_name(conn: &Connection, username: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
        [username],
        user_row,
    )
    .optional()
}

// ---- tenants ----

const TENANT_COLS: &str = "id, name, company_code, enabled, remark, created_at, updated_at, \
    contact_person, contact_email, contact_phone, quota_gpus, quota_instances, quota_cpu_cores, \
    quota_memory_gb, (SELECT gpus FROM tenant_usage WHERE tenant_id = tenants.id), \
    (SELECT instances FROM tenant_usage WHERE tenant_id = tenants.id), \
    (SELECT cpu_cores FROM tenant_usage WHERE tenant_id = tenants.id), \
    (SELECT memory_gb FROM tenant_usage WHERE tenant_id = tenants.id)";

fn tenant_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: TenantId(r.get(0)?),
        name: r.get(1)?,
        company_code: r.get(2)?,
        enabled: r.get(3)?,
        remark: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        contact_person: r.get(7)?,
        contact_email: r.get(8)?,
        contact_phone: r.get(9)?,
        quota: Quota {
            quota_gpus: r.get(10)?,
            quota_instances: r.get(11)?,
            quota_cpu_cores: r.get(12)?,
            quota_memory_gb: r.get(13)?,
        },
        usage: QuotaUse {
            gpus: r.get::<_, Option<i64>>(14)?.unwrap_or(0),
            instances: r.get::<_, Option<i64>>(15)?.unwrap_or(0),
            cpu_cores: r.get::<_, Option<i64>>(16)?.unwrap_or(0),
            memory_gb: r.get::<_, Option<i64>>(17)?.unwrap_or(0),
        },
    })
}

/// Tenant `id`'s quotas and what its instances hold now (read inside the
/// reserving transaction: the figures `tenant_usage` keeps there).
pub fn quota(conn: &Connection, id: TenantId) -> rusqlite::Result<Option<(Quota, QuotaUse)>> {
    get_tenant(conn, Scope::All, id).map(|t| t.map(|t| (t.quota, t.usage)))
}

/// Sets tenant `id`'s quotas (all four; `None` = unlimited).
pub fn set_quota(conn: &Connection, id: TenantId, q: &Quota) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE tenants SET quota_gpus = ?2, quota_instances = ?3, quota_cpu_cores = ?4, \
         quota_memory_gb = ?5 WHERE id = ?1",
        params![
            id.0,
            q.quota_gpus,
            q.quota_instances,
            q.quota_cpu_cores,
            q.quota_memory_gb
        ],
    )?;
    Ok(())
}

/// The tenant filter for tenant queries: `None` = all; `Some(None)` = none.
fn tenant_filter(scope: Scope) -> Option<Option<i64>> {
    match scope {
        Scope::All => None,
        Scope::Tenant(t) => Some(Some(t.0)),
        Scope::User(_, t) => Some(t.map(|t| t.0)),
    }
}

pub fn insert_tenant(
    conn: &Connection,
    name: &str,
    company_code: &str,
    remark: &str,
    now: i64,
) -> rusqlite::Result<TenantId> {
    conn.execute(
        "INSERT INTO tenants (name, company_code, remark, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![name, company_code, remark, now],
    )?;
    Ok(TenantId(conn.last_insert_rowid()))
}

/// The tenants in scope (`?1`: limited to tenant `?2`), by id.
fn tenants_sql() -> String {
    format!("SELECT {TENANT_COLS} FROM tenants WHERE ?1 = 0 OR id IS ?2 ORDER BY id")
}

pub fn list_tenants(conn: &Connection, scope: Scope) -> rusqlite::Result<Vec<Tenant>> {
    let f = tenant_filter(scope);
    let mut stmt = conn.prepare_cached(&tenants_sql())?;
    stmt.query_map(params![f.is_some(), f.flatten()], tenant_row)?
        .collect()
}

/// [`list_tenants`] for the rows of `window`, and how many there are.
pub fn tenants_page(
    conn: &Connection,
    scope: Scope,
    window: Window,
) -> rusqlite::Result<Page<Tenant>> {
    let f = tenant_filter(scope);
    let (limited, id) = (f.is_some(), f.flatten());
    crate::paging::query(conn, &tenants_sql(), &[&limited, &id], window, tenant_row)
}

pub fn get_tenant(
    conn: &Connection,
    scope: Scope,
    id: TenantId,
) -> rusqlite::Result<Option<Tenant>> {
    let f = tenant_filter(scope);
    conn.query_row(
        &format!("SELECT {TENANT_COLS} FROM tenants WHERE id = ?3 AND (?1 = 0 OR id IS ?2)"),
        params![f.is_some(), f.flatten(), id.0],
        tenant_row,
    )
    .optional()
}

#[derive(Debug, Default)]
pub struct TenantChange {
    pub name: Option<String>,
    pub company_code: Option<String>,
    pub remark: Option<String>,
    pub enabled: Option<bool>,
    pub contact_person: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
}

pub fn update_tenant(
    conn: &Connection,
    id: TenantId,
    c: &TenantChange,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE tenants SET name = COALESCE(?2, name), company_code = COALESCE(?3, company_code), \
         remark = COALESCE(?4, remark), enabled = COALESCE(?5, enabled), updated_at = ?6, \
         contact_person = COALESCE(?7, contact_person), contact_email = COALESCE(?8, contact_email), \
         contact_phone = COALESCE(?9, contact_phone) WHERE id = ?1",
        params![
            id.0,
            c.name,
            c.company_code,
            c.remark,
            c.enabled,
            now,
            c.contact_person,
            c.contact_email,
            c.contact_phone
        ],
    )?;
    Ok(())
}

// ---- API tokens ----

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub scope: TokenScope,
}

pub fn insert_token(
    conn: &Connection,
    user: UserId,
    name: &str,
    token_hash: &str,
    prefix: &str,
    scope: TokenScope,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, scope) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![user.0, name, token_hash, prefix, now, scope],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The user's API tokens of `window`, newest first, and how many there are.
pub fn tokens_page(
    conn: &Connection,
    user: UserId,
    window: Window,
) -> rusqlite::Result<Page<ApiToken>> {
    crate::paging::query(
        conn,
        "SELECT id, name, prefix, created_at, last_used_at, revoked_at, scope FROM api_tokens \
         WHERE user_id = ?1 ORDER BY id DESC",
        &[&user.0],
        window,
        |r| {
            Ok(ApiToken {
                id: r.get(0)?,
                name: r.get(1)?,
                prefix: r.get(2)?,
                created_at: r.get(3)?,
                last_used_at: r.get(4)?,
                revoked_at: r.get(5)?,
                scope: r.get(6)?,
            })
        },
    )
}

/// Revokes the user's own token; false when it is not theirs or already revoked.
pub fn revoke_token(conn: &Connection, user: UserId, id: i64, now: i64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE api_tokens SET revoked_at = ?3 WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
        params![id, user.0, now],
    )?;
    Ok(n == 1)
}

/// Revokes every live token of `user`; how many.
pub fn revoke_all_tokens(conn: &Connection, user: UserId, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        params![user.0, now],
    )
}

/// The live token with this hash: (token id, owner, scope).
pub fn find_token(
    conn: &Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<(i64, UserId, TokenScope)>> {
    conn.prepare_cached(
        "SELECT id, user_id, scope FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL",
    )?
    .query_row([token_hash], |r| {
        Ok((r.get(0)?, UserId(r.get(1)?), r.get(2)?))
    })
    .optional()
}

// ---- counts for the dashboard ----

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counts {
    pub tenants: i64,
    pub users: i64,
    pub users_enabled: i64,
    pub users_locked: i64,
    pub active_sessions: i64,
}

pub fn counts(conn: &Connection, scope: Scope, now: i64) -> rusqlite::Result<Counts> {
    let (t, u) = user_filters(scope);
    let (users, users_enabled, users_locked): (i64, i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(enabled), 0), COALESCE(SUM(locked_until > ?3), 0) FROM users \
         WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR id = ?2)",
        params![t, u, now],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let tenants = list_tenants(conn, scope)?.len() as i64;
    let active_sessions = if scope == Scope::All {
        conn.query_row(
            "SELECT COUNT(*) FROM sessions WHERE expiry_date > ?1",
            [now],
            |r| r.get(0),
        )?
    } else {
        0
    };
    Ok(Counts {
        tenants,
        users,
        users_enabled,
        users_locked,
        active_sessions,
    })
}

/// The first-run checklist on an admin's dashboard: whether a node, an
/// image, a spec and an instance exist yet (whoever made them).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Setup {
    pub node: bool,
    pub image: bool,
    pub spec: bool,
    pub instance: bool,
}

impl Setup {
    pub fn done(&self) -> bool {
        self.node && self.image && self.spec && self.instance
    }
}

pub fn setup(conn: &Connection) -> rusqlite::Result<Setup> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM nodes), EXISTS (SELECT 1 FROM images), \
           EXISTS (SELECT 1 FROM specs), EXISTS (SELECT 1 FROM instances)",
        [],
        |r| {
            Ok(Setup {
                node: r.get(0)?,
                image: r.get(1)?,
                spec: r.get(2)?,
                instance: r.get(3)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    #[test]
    fn the_setup_checklist_ticks_each_step_once_done() {
        let conn = db::memory().unwrap();
        let s = setup(&conn).unwrap();
        assert!(!s.node && !s.image && !s.spec && !s.instance && !s.done());
    }

    fn user(conn: &Connection, name: &str, role: Role, tenant: Option<TenantId>) -> UserId {
        insert_user(
            conn,
            &NewUser {
                username: name,
                display_name: "",
                role,
                tenant_id: tenant,
                password_hash: "h",
                must_change_password: false,
            },
            1,
        )
        .unwrap()
    }

    #[test]
    fn scoping_is_in_the_query() {
        let conn = db::memory().unwrap();
        let t1 = insert_tenant(&conn, "A", "A1", "", 1).unwrap();
        let t2 = insert_tenant(&conn, "B", "B1", "", 1).unwrap();
        let admin = user(&conn, "root", Role::Admin, None);
        let o1 = user(&conn, "o1", Role::CustomerOwner, Some(t1));
        let m1 = user(&conn, "m1", Role::CustomerMember, Some(t1));
        let m2 = user(&conn, "m2", Role::CustomerMember, Some(t2));

        assert_eq!(list_users(&conn, Scope::All).unwrap().len(), 4);
        let names = |s| {
            list_users(&conn, s)
                .unwrap()
                .into_iter()
                .map(|u| u.username)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Scope::Tenant(t1)), ["o1", "m1"]);
        assert_eq!(names(Scope::User(m1, Some(t1))), ["m1"]);
        assert!(get_user(&conn, Scope::Tenant(t1), m2).unwrap().is_none());
        assert!(get_user(&conn, Scope::Tenant(t1), admin).unwrap().is_none());
        assert!(
            get_user(&conn, Scope::User(m1, Some(t1)), o1)
                .unwrap()
                .is_none()
        );
        assert!(get_user(&conn, Scope::All, m2).unwrap().is_some());

        assert_eq!(list_tenants(&conn, Scope::All).unwrap().len(), 2);
        assert_eq!(
            list_tenants(&conn, Scope::Tenant(t2)).unwrap()[0].company_code,
            "B1"
        );
        assert!(
            list_tenants(&conn, Scope::User(admin, None))
                .unwrap()
                .is_empty()
        );
        assert!(
            get_tenant(&conn, Scope::User(m1, Some(t1)), t2)
                .unwrap()
                .is_none()
        );
        assert!(
            get_tenant(&conn, Scope::User(m1, Some(t1)), t1)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn schema_refuses_admin_with_tenant_and_duplicate_names() {
        let conn = db::memory().unwrap();
        let t = insert_tenant(&conn, "A", "A1", "", 1).unwrap();
        let bad = insert_user(
            &conn,
            &NewUser {
                username: "x",
                display_name: "",
                role: Role::Admin,
                tenant_id: Some(t),
                password_hash: "h",
                must_change_password: false,
            },
            1,
        );
        assert!(bad.is_err());
        user(&conn, "dup", Role::Admin, None);
        let e = insert_user(
            &conn,
            &NewUser {
                username: "dup",
                display_name: "",
                role: Role::Admin,
                tenant_id: None,
                password_hash: "h",
                must_change_password: false,
            },
            1,
        )
        .unwrap_err();
        assert!(db::is_unique_violation(&e));
        assert!(db::is_unique_violation(
            &insert_tenant(&conn, "Z", "A1", "", 1).unwrap_err()
        ));
    }

    #[test]
    fn lockout_counts_consecutive_failures() {
        let conn = db::memory().unwrap();
        let id = user(&conn, "u", Role::Admin, None);
        for _ in 0..4 {
            assert!(!record_login_failure(&conn, id, 100, 5, 1800).unwrap());
        }
        assert!(record_login_failure(&conn, id, 100, 5, 1800).unwrap());
        let u = get_user(&conn, Scope::All, id).unwrap().unwrap();
        assert!(u.is_locked(100) && u.is_locked(1899) && !u.is_locked(1900));
        clear_login_failures(&conn, id).unwrap();
        assert!(
            !get_user(&conn, Scope::All, id)
                .unwrap()
                .unwrap()
                .is_locked(100)
        );
    }

    #[test]
    fn password_change_and_disable_end_sessions() {
        let conn = db::memory().unwrap();
        let id = user(&conn, "u", Role::Admin, None);
        let epoch = set_password(&conn, id, "h2", false, 2).unwrap();
        assert_eq!(epoch, 1);
        update_user(
            &conn,
            id,
            &UserChange {
                enabled: Some(false),
                ..Default::default()
            },
            true,
            3,
        )
        .unwrap();
        let u = get_user(&conn, Scope::All, id).unwrap().unwrap();
        assert_eq!(u.session_epoch, 2);
        assert!(!u.enabled);
    }

    /// The schema keeps an instance in its user's tenant: a user with
    /// instances cannot move, and no instance is made for another tenant.
    #[test]
    fn a_user_with_instances_keeps_their_tenant() {
        let conn = db::memory().unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at) VALUES (1, 'A', 'A', 0, 0), (2, 'B', 'B', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at) VALUES
               (10, 'a1', 'customer_member', 1, 'h', 0, 0), (11, 'a2', 'customer_member', 1, 'h', 0, 0);
             INSERT INTO images (id, name, address, created_at, updated_at) VALUES (1, 'i', 'busybox', 0, 0);
             INSERT INTO specs (id, name, gpu_model, gpu_count, cpu_cores, memory_gb, created_at, updated_at) VALUES (1, 's', 'RTX 4090', 0, 1, 1, 0, 0);
             INSERT INTO nodes (id, name, public_ip, private_ip, gpu_name, gpu_count, cpu_cores, memory_gb, status, created_at, updated_at)
               VALUES (1, 'n1', '1.1.1.1', '1.1.1.1', 'RTX 4090', 8, 16, 64, 'online', 0, 0);",
        )
        .unwrap();
        let add = |user: i64, tenant: i64| {
            conn.execute(
                "INSERT INTO instances (name, image_id, spec_id, node_id, user_id, tenant_id, gpu_count, cpu_cores, \
                 memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at) VALUES ('x', 1, 1, 1, ?1, ?2, 0, 1, 1, 0, 0, 0, 0)",
                [user, tenant],
            )
        };
        add(10, 1).unwrap();
        let e = add(10, 2).unwrap_err();
        assert!(db::is_raised(&e, "instance_tenant_mismatch"), "{e}");
        let move_to = |id: i64, t: i64| {
            let change = UserChange {
                tenant_id: Some(Some(TenantId(t))),
                ..Default::default()
            };
            update_user(&conn, UserId(id), &change, true, 5)
        };
        let e = move_to(10, 2).unwrap_err();
        assert!(db::is_raised(&e, "user_has_instances"), "{e}");
        // Other changes of that user, and moving a user without instances, pass.
        let rename = UserChange {
            display_name: Some("A One".into()),
            ..Default::default()
        };
        update_user(&conn, UserId(10), &rename, false, 5).unwrap();
        move_to(11, 2).unwrap();
        conn.execute("DELETE FROM instances", []).unwrap();
        move_to(10, 2).unwrap();
    }

    #[test]
    fn tokens_are_owned_and_revocable() {
        let conn = db::memory().unwrap();
        let a = user(&conn, "a", Role::Admin, None);
        let b = user(&conn, "b", Role::Admin, None);
        let api = TokenScope::Api;
        let id = insert_token(&conn, a, "ci", "hash1", "gdk_abcd", api, 5).unwrap();
        assert_eq!(find_token(&conn, "hash1").unwrap(), Some((id, a, api)));
        let scrape = TokenScope::Metrics;
        let m = insert_token(&conn, a, "ci2", "hash2", "gdk_efgh", scrape, 5).unwrap();
        assert_eq!(find_token(&conn, "hash2").unwrap(), Some((m, a, scrape)));
        insert_token(&conn, b, "ci3", "hash3", "gdk_ijkl", api, 5).unwrap();
        assert!(
            conn.execute("UPDATE api_tokens SET scope = 'root' WHERE id = ?1", [m])
                .is_err(),
            "the schema knows the scopes"
        );
        assert_eq!(revoke_all_tokens(&conn, a, 6).unwrap(), 2);
        assert_eq!(find_token(&conn, "hash1").unwrap(), None);
        assert_eq!(find_token(&conn, "hash3").unwrap().map(|t| t.1), Some(b));
        let id = insert_token(&conn, a, "ci", "hash1b", "gdk_abcd", api, 7).unwrap();
        assert!(!revoke_token(&conn, b, id, 6).unwrap());
        assert!(revoke_token(&conn, a, id, 6).unwrap());
        assert!(find_token(&conn, "hash1").unwrap().is_none());
        assert_eq!(
            tokens_page(&conn, a, Window::first(10)).unwrap().items[0].revoked_at,
            Some(6)
        );
    }
}
