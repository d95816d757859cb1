//! Accounts, tenants, roles, sign-in, sessions, API tokens and permissions.
//! Other capabilities use `CurrentUser`, `Scope` and `guard` from here.

pub mod access;
pub mod accounts;
pub mod admin_pages;
pub mod api;
mod bootstrap;
pub mod features;
pub mod guard;
mod login_csrf;
pub mod model;
pub mod pages;
pub mod strength;
/// Password hashing is infrastructure (the app state owns the pool).
pub use crate::hashing as password;
pub mod permissions;
pub mod quota;
pub mod service;
pub mod session_store;
pub mod store;

pub use access::{
    Access, Action, FileOp, FileTarget, allowed, check, current, end_live_access, end_stale_access,
    holder, holds, resume_on, scrape_allowed,
};
pub use bootstrap::{
    INITIAL_PASSWORD_FILE, bootstrap_admin, initial_password_path, reset_password_offline,
};
pub use guard::{AuthVia, CurrentUser, same_origin};
pub use model::{Quota, QuotaUse, Role, Scope, TenantId, TokenScope, User, UserId};
pub use pages::PageCtx;
pub use service::login;

/// The one rule of a usable account, for every way in (web guard, API
/// tokens, jumpbox): enabled, not locked at `now`, and its tenant enabled.
pub fn usable(c: &rusqlite::Connection, u: &User, now: i64) -> rusqlite::Result<bool> {
    Ok(u.enabled && !u.is_locked(now) && store::tenant_enabled_for(c, u)?)
}

/// User `id` if `scope` reaches it and the account is usable now.
/// Tenant `id`'s quotas and what its instances hold now (`None`: no such
/// tenant), on `conn` (the reserving transaction).
pub fn tenant_quota(
    conn: &rusqlite::Connection,
    id: TenantId,
) -> rusqlite::Result<Option<(Quota, QuotaUse)>> {
    store::quota(conn, id)
}

pub async fn usable_user(
    app: &crate::app::App,
    scope: Scope,
    id: UserId,
) -> Result<Option<User>, crate::error::AppError> {
    let now = crate::db::now();
    app.db
        .read(move |c| {
            let Some(u) = store::get_user(c, scope, id)? else {
                return Ok(None);
            };
            Ok(usable(c, &u, now)?.then_some(u))
        })
        .await
}

/// The user named `name`, when their account is usable now.
pub async fn usable_user_named(
    app: &crate::app::App,
    name: &str,
) -> Result<Option<User>, crate::error::AppError> {
    let name = name.to_string();
    let now = crate::db::now();
    app.db
        .read(move |c| {
            let Some(u) = store::user_by_name(c, &name)? else {
                return Ok(None);
            };
            Ok(usable(c, &u, now)?.then_some(u))
        })
        .await
}

/// Whether `user` may see nodes' details (endpoints, daemons' words) in
/// error messages: the one rule for every transport (HTTP answers, SSH and
/// WebSocket sessions).
pub async fn sees_node_details(
    app: &crate::app::App,
    user: &User,
) -> Result<bool, crate::error::AppError> {
    let role = user.role;
    let sees = app
        .db
        .cached(format!("node details {}", role.as_str()), move |c| {
            permissions::sees_node_details(c, role).map_err(crate::error::AppError::from)
        })
        .await?;
    Ok(*sees)
}

/// The cookie that carries the web session id.
pub const SESSION_COOKIE: &str = "gpudock_session";

/// The web-session layer (records in SQLite, a strict secure cookie that
/// expires after `security.session_idle_minutes` idle), for the router.
pub fn session_layer(
    app: &crate::app::App,
) -> tower_sessions::SessionManagerLayer<session_store::SqliteStore> {
    use tower_sessions::cookie::SameSite;
    let store = session_store::SqliteStore::new(app.db.clone());
    let idle = time::Duration::minutes(i64::from(app.config.security.session_idle_minutes));
    tower_sessions::SessionManagerLayer::new(store)
        .with_name(SESSION_COOKIE)
        .with_secure(true)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_expiry(tower_sessions::Expiry::OnInactivity(idle))
}

/// Deletes expired web sessions every `period` until `cancel`.
pub async fn purge_sessions(
    db: crate::db::Db,
    period: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    session_store::purge_loop(session_store::SqliteStore::new(db), period, cancel).await;
}

/// Keys in the tower-sessions record.
pub mod keys {
    pub const USER_ID: &str = "uid";
    pub const EPOCH: &str = "epoch";
    pub const CSRF: &str = "csrf";
}
