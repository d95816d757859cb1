//! Managing users, tenants and role grants: validation, the role rules of who
//! may change what, and the audited writes. Shared by the JSON API and pages.

use rusqlite::TransactionBehavior;
use serde::Deserialize;
use serde_json::json;

use super::CurrentUser;
use super::model::{
    Role, Scope, Tenant, TenantId, User, UserId, check_company_code, check_password_strength,
    check_role_tenant, check_username, optional_text, random_password, required_text,
};
use super::permissions;
use super::store::{self, NewUser, TenantChange, UserChange};
use crate::app::App;
use crate::audit::{self, Event, Source};
use crate::error::{AppError, FieldError, FieldErrors, on_unique};
use crate::validate::{double_option, email_field, phone_field};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct UserInput {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub tenant_id: Option<i64>,
    /// Empty: a random temporary password is generated and returned once.
    pub password: Option<String>,
    pub email: String,
    pub phone: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub role: Option<String>,
    #[serde(deserialize_with = "double_option")]
    pub tenant_id: Option<Option<i64>>,
    pub enabled: Option<bool>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// "zh-CN", "en" or "" (the appliance's default).
    pub language: Option<String>,
}

/// A UNIQUE violation on users: the e-mail index, else the username (which
/// answers like a reserved name, see [`username_taken`]).
fn on_user_unique(e: rusqlite::Error) -> AppError {
    if e.to_string().contains("users_email") {
        on_unique("email")(e)
    } else {
        username_taken(e)
    }
}

fn parse_role(errors: &mut FieldErrors, s: &str) -> Option<Role> {
    let r = Role::parse(s.trim());
    if r.is_none() {
        errors.insert(
            "role",
            FieldError::new(if s.trim().is_empty() {
                "err.required"
            } else {
                "err.role_unknown"
            }),
        );
    }
    r
}

fn fail_if(errors: FieldErrors) -> Result<(), AppError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// Names kept for the system: refused like a name in use, so that a refusal
/// does not even prove that an account exists.
const RESERVED_USERNAMES: &[&str] = &["root", "gpudock", "daemon", "nobody", "sshd", "system"];

/// Usernames are unique across tenants (they are SSH login names too), so
/// one in use elsewhere must be refused; the answer says only that this
/// name cannot be had, never where it is used.
fn username_unavailable() -> AppError {
    AppError::Conflict(FieldErrors::from([(
        "username",
        FieldError::new("err.username_unavailable"),
    )]))
}

fn username_taken(e: rusqlite::Error) -> AppError {
    if crate::db::is_unique_violation(&e) {
        username_unavailable()
    } else {
        AppError::from(e)
    }
}

/// Owners may only hand out customer roles, inside their own tenant.
fn check_assignable(by: &User, role: Role, tenant: Option<TenantId>, errors: &mut FieldErrors) {
    if by.role == Role::Admin {
        if let Err(e) = check_role_tenant(role, tenant) {
            errors.insert("tenant_id", e);
        }
        return;
    }
    if role == Role::Admin {
        errors.insert("role", FieldError::new("err.role_not_allowed"));
    }
    if tenant != by.tenant_id {
        errors.insert("tenant_id", FieldError::new("err.tenant_not_allowed"));
    }
}

/// Creates a user; returns it with the generated temporary password, if any.
pub async fn create_user(
    app: &App,
    by: &CurrentUser,
    input: UserInput,
    src: &Source,
) -> Result<(User, Option<String>), AppError> {
    let mut errors = FieldErrors::new();
    let username = input.username.trim().to_string();
    if let Err(e) = check_username(&username) {
        errors.insert("username", e);
    } else if RESERVED_USERNAMES.contains(&username.as_str()) {
        return Err(username_unavailable());
    }
    let display_name = optional_text(&mut errors, "display_name", &input.display_name, 100);
    let email = email_field(&mut errors, "email", &input.email);
    let phone = phone_field(&mut errors, "phone", &input.phone);
    let role = parse_role(&mut errors, &input.role);
    let tenant = match (input.tenant_id, by.user.role) {
        (Some(t), _) => Some(TenantId(t)),
        (None, Role::Admin) => None,
        (None, _) => by.user.tenant_id,
    };
    if let Some(role) = role {
        check_assignable(&by.user, role, tenant, &mut errors);
    }
    let given = input.password.filter(|p| !p.is_empty());
    if let Some(p) = &given
        && let Err(e) = check_password_strength(
            p,
            &[&username, &display_name],
            app.config.security.min_password_score,
        )
    {
        errors.insert("password", e);
    }
    fail_if(errors)?;
    let role = role.ok_or(AppError::Internal("role checked above".into()))?;
    let generated = given.is_none().then(random_password);
    let password = given.or_else(|| generated.clone()).unwrap_or_default();
    let hash = app
        .blocking(move |h| h.hash(&password))
        .await?
        .map_err(AppError::internal)?;
    let (scope, actor, src) = (by.scope(), by.actor(), src.clone());
    let user = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(t) = tenant
                && store::get_tenant(&tx, scope, t)?.is_none()
            {
                return Err(AppError::field("tenant_id", "err.no_such_tenant"));
            }
            let new = NewUser {
                username: &username,
                display_name: &display_name,
                role,
                tenant_id: tenant,
                password_hash: &hash,
                must_change_password: true,
            };
            let now = crate::db::now();
            let id = store::insert_user(&tx, &new, now).map_err(on_user_unique)?;
            let contact = UserChange {
                email: Some(email),
                phone: Some(phone),
                ..Default::default()
            };
            store::update_user(&tx, id, &contact, false, now).map_err(on_user_unique)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "user.create", "user").id(id.0).detail(json!({
                    "username": username, "role": role.as_str(), "tenant_id": tenant.map(|t| t.0)
                })),
            )?;
            let user = store::get_user(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(user)
        })
        .await?;
    Ok((user, generated))
}

/// Applies a patch under the caller's scope (another tenant's user is 404).
pub async fn update_user(
    app: &App,
    by: &CurrentUser,
    id: UserId,
    patch: UserPatch,
    src: &Source,
) -> Result<User, AppError> {
    let mut errors = FieldErrors::new();
    let display_name = patch
        .display_name
        .as_deref()
        .map(|d| optional_text(&mut errors, "display_name", d, 100));
    let role = patch
        .role
        .as_deref()
        .and_then(|r| parse_role(&mut errors, r));
    let email = patch
        .email
        .as_deref()
        .map(|e| email_field(&mut errors, "email", e));
    let phone = patch
        .phone
        .as_deref()
        .map(|p| phone_field(&mut errors, "phone", p));
    let language = patch.language.as_deref().map(str::trim).map(|l| {
        if !matches!(l, "" | "zh-CN" | "en") {
            errors.insert(
                "language",
                FieldError::with_detail("err.one_of", "zh-CN, en"),
            );
        }
        l.to_string()
    });
    fail_if(errors)?;
    let change = UserChange {
        display_name,
        role,
        tenant_id: patch.tenant_id.map(|t| t.map(TenantId)),
        enabled: patch.enabled,
        email,
        phone,
        language,
    };
    let (caller, scope, actor, src) = (by.user.clone(), by.scope(), by.actor(), src.clone());
    let (user, revoked) = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let target = store::get_user(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            check_user_change(&tx, &caller, scope, &target, &change)?;
            let revokes = revokes_access(&target, &change);
            store::update_user(&tx, id, &change, revokes, crate::db::now()).map_err(|e| {
                if crate::db::is_raised(&e, "user_has_instances") {
                    AppError::Conflict(FieldErrors::from([(
                        "tenant_id",
                        FieldError::new("err.user_has_instances"),
                    )]))
                } else {
                    on_user_unique(e)
                }
            })?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "user.update", "user")
                    .id(id.0)
                    .detail(json!({
                        "username": target.username,
                        "display_name": change.display_name,
                        "role": change.role.map(Role::as_str),
                        "tenant_id": change.tenant_id.map(|t| t.map(|t| t.0)),
                        "enabled": change.enabled,
                        "email": change.email,
                        "phone": change.phone,
                        "language": change.language,
                        "access_revoked": revokes,
                    })),
            )?;
            let user = store::get_user(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok::<_, AppError>((user, revokes))
        })
        .await?;
    if revoked {
        super::end_live_access(app, &[id]);
    }
    Ok(user)
}

/// Whether `change` takes access away from `target`: disabling them, or
/// changing their role or tenant (what they reach changes). Their sessions
/// then end everywhere; a change of display name, or enabling, ends none.
fn revokes_access(target: &User, change: &UserChange) -> bool {
    change.role.is_some_and(|r| r != target.role)
        || change.tenant_id.is_some_and(|t| t != target.tenant_id)
        || (change.enabled == Some(false) && target.enabled)
}

fn check_user_change(
    conn: &rusqlite::Connection,
    caller: &User,
    scope: Scope,
    target: &User,
    change: &UserChange,
) -> Result<(), AppError> {
    let mut errors = FieldErrors::new();
    let role = change.role.unwrap_or(target.role);
    let tenant = change.tenant_id.unwrap_or(target.tenant_id);
    if target.id == caller.id && (revokes_access(target, change) || change.enabled == Some(false)) {
        errors.insert("role", FieldError::new("err.cannot_change_self"));
    }
    check_assignable(caller, role, tenant, &mut errors);
    if let Some(t) = tenant
        && change.tenant_id.is_some()
        && store::get_tenant(conn, scope, t)?.is_none()
    {
        errors.insert("tenant_id", FieldError::new("err.no_such_tenant"));
    }
    fail_if(errors)?;
    let stops_being_admin = target.role == Role::Admin
        && target.enabled
        && (role != Role::Admin || change.enabled == Some(false));
    if stops_being_admin && store::count_enabled_admins(conn)? <= 1 {
        return Err(AppError::Conflict(FieldErrors::from([(
            "role",
            FieldError::new("err.last_admin"),
        )])));
    }
    Ok(())
}

/// Resets another user's password to a temporary one (returned once, to
/// whoever reset it: the API answer or the user's page), to be changed at
/// their next sign-in (交付). Like every loss of the old password it ends
/// their sessions everywhere, and it revokes their API tokens: whoever had
/// the account's secrets has none left. Admins reset anyone else, owners
/// their tenant's members (see [`may_reset`]); nobody resets their own
/// (that is a password change).
pub async fn reset_password(
    app: &App,
    by: &CurrentUser,
    id: UserId,
    src: &Source,
) -> Result<(User, String), AppError> {
    if id == by.user.id {
        return Err(AppError::field("id", "err.reset_own_password"));
    }
    let password = random_password();
    let pw = password.clone();
    let hash = app
        .blocking(move |h| h.hash(&pw))
        .await?
        .map_err(AppError::internal)?;
    let (caller, scope, actor, src) = (by.user.clone(), by.scope(), by.actor(), src.clone());
    let user = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let target = store::get_user(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            if !may_reset(&caller, &target) {
                return Err(AppError::Forbidden);
            }
            let now = crate::db::now();
            store::set_password(&tx, id, &hash, true, now)?;
            let tokens = store::revoke_all_tokens(&tx, id, now)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "user.reset_password", "user")
                    .id(id.0)
                    .detail(json!({
                        "username": target.username,
                        "tokens_revoked": tokens,
                        "must_change_password": true,
                    })),
            )?;
            let user = store::get_user(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(user)
        })
        .await?;
    super::end_live_access(app, &[id]);
    Ok((user, password))
}

/// Lifts a lockout by failed sign-ins (解锁) before it runs out, for the
/// same callers as a reset ([`may_reset`]). An account that is not locked
/// is refused with a field error, so a stale page says so.
pub async fn unlock(
    app: &App,
    by: &CurrentUser,
    id: UserId,
    src: &Source,
) -> Result<User, AppError> {
    if id == by.user.id {
        return Err(AppError::field("id", "err.unlock_own"));
    }
    let (caller, scope, actor, src) = (by.user.clone(), by.scope(), by.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let target = store::get_user(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            if !may_reset(&caller, &target) {
                return Err(AppError::Forbidden);
            }
            let now = crate::db::now();
            if !target.is_locked(now) {
                return Err(AppError::field("id", "err.not_locked"));
            }
            store::clear_login_failures(&tx, id)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "user.unlock", "user")
                    .id(id.0)
                    .detail(json!({
                        "username": target.username,
                        "locked_until": target.locked_until,
                    })),
            )?;
            // The account-locked alert resolves with the lock.
            let cleared = crate::alerts::clear_event_in(
                &tx,
                crate::alerts::EventKind::AccountLocked,
                &crate::alerts::Subject::User(id),
            )?;
            let user = store::get_user(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok((user, cleared))
        })
        .await
        .map(|(user, cleared)| {
            if cleared > 0 {
                crate::alerts::wake(app);
            }
            user
        })
}

/// Whose password `caller` may reset (besides the guard's record and the
/// caller's scope): one they could assign their role and tenant to, and, for
/// a customer, only a member: an owner taking over another owner's account
/// by a reset would act in that owner's name.
fn may_reset(caller: &User, target: &User) -> bool {
    let mut errors = FieldErrors::new();
    check_assignable(caller, target.role, target.tenant_id, &mut errors);
    errors.is_empty() && (caller.role == Role::Admin || target.role == Role::CustomerMember)
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TenantInput {
    pub name: String,
    pub company_code: String,
    pub remark: String,
    pub contact_person: String,
    pub contact_email: String,
    pub contact_phone: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub company_code: Option<String>,
    pub remark: Option<String>,
    pub enabled: Option<bool>,
    pub contact_person: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    /// Quotas: absent = unchanged, `null` = unlimited, else a whole number ≥ 0.
    #[serde(deserialize_with = "double_option")]
    pub quota_gpus: Option<Option<serde_json::Value>>,
    #[serde(deserialize_with = "double_option")]
    pub quota_instances: Option<Option<serde_json::Value>>,
    #[serde(deserialize_with = "double_option")]
    pub quota_cpu_cores: Option<Option<serde_json::Value>>,
    #[serde(deserialize_with = "double_option")]
    pub quota_memory_gb: Option<Option<serde_json::Value>>,
}

pub async fn create_tenant(
    app: &App,
    by: &CurrentUser,
    input: TenantInput,
    src: &Source,
) -> Result<Tenant, AppError> {
    let mut errors = FieldErrors::new();
    let name = required_text(&mut errors, "name", &input.name, 100);
    let code = required_text(&mut errors, "company_code", &input.company_code, 32);
    if !code.is_empty()
        && let Err(e) = check_company_code(&code)
    {
        errors.insert("company_code", e);
    }
    let remark = crate::validate::multiline_text(&mut errors, "remark", &input.remark, 500);
    let contact = TenantChange {
        contact_person: Some(optional_text(
            &mut errors,
            "contact_person",
            &input.contact_person,
            100,
        )),
        contact_email: Some(email_field(
            &mut errors,
            "contact_email",
            &input.contact_email,
        )),
        contact_phone: Some(phone_field(
            &mut errors,
            "contact_phone",
            &input.contact_phone,
        )),
        ..Default::default()
    };
    fail_if(errors)?;
    let (actor, src) = (by.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = crate::db::now();
            let id = store::insert_tenant(&tx, &name, &code, &remark, now)
                .map_err(on_unique("company_code"))?;
            store::update_tenant(&tx, id, &contact, now)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "tenant.create", "tenant")
                    .id(id.0)
                    .detail(json!({ "name": name, "company_code": code,
                        "contact_person": contact.contact_person })),
            )?;
            let t = store::get_tenant(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(t)
        })
        .await
}

pub async fn update_tenant(
    app: &App,
    by: &CurrentUser,
    id: TenantId,
    patch: TenantPatch,
    src: &Source,
) -> Result<Tenant, AppError> {
    let mut errors = FieldErrors::new();
    let change = TenantChange {
        name: patch
            .name
            .as_deref()
            .map(|n| required_text(&mut errors, "name", n, 100)),
        company_code: patch.company_code.as_deref().map(|c| {
            let c = required_text(&mut errors, "company_code", c, 32);
            if let Err(e) = check_company_code(&c) {
                errors.entry("company_code").or_insert(e);
            }
            c
        }),
        remark: patch
            .remark
            .as_deref()
            .map(|r| crate::validate::multiline_text(&mut errors, "remark", r, 500)),
        enabled: patch.enabled,
        contact_person: patch
            .contact_person
            .as_deref()
            .map(|p| optional_text(&mut errors, "contact_person", p, 100)),
        contact_email: patch
            .contact_email
            .as_deref()
            .map(|e| email_field(&mut errors, "contact_email", e)),
        contact_phone: patch
            .contact_phone
            .as_deref()
            .map(|p| phone_field(&mut errors, "contact_phone", p)),
    };
    let quota = super::quota::patch(
        &mut errors,
        [
            &patch.quota_gpus,
            &patch.quota_instances,
            &patch.quota_cpu_cores,
            &patch.quota_memory_gb,
        ],
    );
    fail_if(errors)?;
    // Quotas limit the tenant itself: only an admin sets them, even where
    // this route is granted to a tenant's owner.
    if quota.is_some() && by.user.role != Role::Admin {
        return Err(AppError::Forbidden);
    }
    let (scope, actor, src) = (by.scope(), by.actor(), src.clone());
    let (tenant, revoked) = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let before = store::get_tenant(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            store::update_tenant(&tx, id, &change, crate::db::now())
                .map_err(on_unique("company_code"))?;
            let quota = quota.map(|q| super::quota::apply(before.quota, q));
            if let Some(q) = &quota {
                store::set_quota(&tx, id, q)?;
            }
            // Disabling a tenant revokes the access of each of its users.
            let revoked: Vec<UserId> = if before.enabled && change.enabled == Some(false) {
                store::list_users(&tx, Scope::Tenant(id))?
                    .into_iter()
                    .map(|u| u.id)
                    .collect()
            } else {
                Vec::new()
            };
            audit::append(
                &tx,
                &Event::new(&actor, &src, "tenant.update", "tenant")
                    .id(id.0)
                    .detail(json!({
                        "name": change.name, "company_code": change.company_code,
                        "remark": change.remark, "enabled": change.enabled,
                        "contact_person": change.contact_person, "contact_email": change.contact_email,
                        "contact_phone": change.contact_phone,
                        "access_revoked_users": revoked.len(),
                        "quota_before": quota.map(|_| before.quota), "quota": quota,
                    })),
            )?;
            let t = store::get_tenant(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok::<_, AppError>((t, revoked))
        })
        .await?;
    super::end_live_access(app, &revoked);
    Ok(tenant)
}

/// Grants or revokes one record for a customer role.
pub async fn set_grant(
    app: &App,
    by: &CurrentUser,
    role: &str,
    id: i64,
    granted: bool,
    src: &Source,
) -> Result<permissions::Permission, AppError> {
    let role = match Role::parse(role) {
        Some(r @ (Role::CustomerOwner | Role::CustomerMember)) => r,
        _ => return Err(AppError::field("role", "err.role_not_grantable")),
    };
    let (caller, actor, src) = (by.user.clone(), by.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let p = permissions::get(&tx, id)?.ok_or(AppError::NotFound)?;
            let held = super::Action::Route {
                method: &p.method,
                pattern: &p.path_pattern,
            };
            let holds = super::allowed(&tx, &caller, held)? == permissions::Decision::Allow;
            if let Err(key) = permissions::may_change(caller.role, holds, &p, role) {
                return Err(AppError::field("permission", key));
            }
            if permissions::set_grant(&tx, role, id, granted)? {
                let action = if granted {
                    "permission.grant"
                } else {
                    "permission.revoke"
                };
                audit::append(
                    &tx,
                    &Event::new(&actor, &src, action, "permission")
                        .id(id)
                        .detail(json!({
                            "role": role.as_str(), "method": p.method, "path": p.path_pattern
                        })),
                )?;
            }
            let p = permissions::get(&tx, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(p)
        })
        .await
}

/// Grants or revokes every record of one action of the matrix in words
/// (`feature`, `action`: see [`super::features`]) for a customer role, in
/// one transaction with one audit record listing the routes. Fixed and
/// admin-only records are left as they are (they have no switch); any other
/// record the caller may not change refuses the whole change.
pub async fn set_action_grant(
    app: &App,
    by: &CurrentUser,
    role: &str,
    feature: &str,
    action: &str,
    granted: bool,
    src: &Source,
) -> Result<super::features::ActionRow, AppError> {
    let role = match Role::parse(role) {
        Some(r @ (Role::CustomerOwner | Role::CustomerMember)) => r,
        _ => return Err(AppError::field("role", "err.role_not_grantable")),
    };
    let (feature, action) = (feature.to_string(), action.to_string());
    let (caller, actor, src) = (by.user.clone(), by.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let of_action = |tx: &rusqlite::Transaction<'_>| {
                Ok::<_, AppError>(
                    super::features::rows(permissions::list(tx)?)
                        .into_iter()
                        .find(|r| r.feature == feature && r.action == action),
                )
            };
            let row = of_action(&tx)?.ok_or(AppError::NotFound)?;
            let mut changed = Vec::new();
            for p in row.records.iter().filter(|p| !p.fixed && !p.admin_only) {
                let held = super::Action::Route {
                    method: &p.method,
                    pattern: &p.path_pattern,
                };
                let holds = super::allowed(&tx, &caller, held)? == permissions::Decision::Allow;
                if let Err(key) = permissions::may_change(caller.role, holds, p, role) {
                    return Err(AppError::field("permission", key));
                }
                if permissions::set_grant(&tx, role, p.id, granted)? {
                    changed.push(format!("{} {}", p.method, p.path_pattern));
                }
            }
            if !changed.is_empty() {
                let what = if granted {
                    "permission.grant"
                } else {
                    "permission.revoke"
                };
                audit::append(
                    &tx,
                    &Event::new(&actor, &src, what, "permission").detail(json!({
                        "role": role.as_str(), "feature": row.feature, "action": row.action,
                        "routes": changed
                    })),
                )?;
            }
            let row = of_action(&tx)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(row)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, role: Role, tenant: Option<i64>) -> User {
        User {
            id: UserId(id),
            username: format!("u{id}"),
            display_name: String::new(),
            role,
            tenant_id: tenant.map(TenantId),
            enabled: true,
            must_change_password: false,
            failed_logins: 0,
            locked_until: None,
            session_epoch: 0,
            created_at: 0,
            updated_at: 0,
            email: String::new(),
            phone: String::new(),
            language: String::new(),
        }
    }

    #[test]
    fn admins_reset_anyone_owners_their_members() {
        let admin = user(1, Role::Admin, None);
        let owner = user(2, Role::CustomerOwner, Some(7));
        let member = user(3, Role::CustomerMember, Some(7));
        let stranger = user(4, Role::CustomerMember, Some(8));
        let other_owner = user(5, Role::CustomerOwner, Some(7));
        assert!(may_reset(&admin, &owner));
        assert!(may_reset(&admin, &user(6, Role::Admin, None)));
        assert!(may_reset(&owner, &member));
        assert!(!may_reset(&owner, &stranger), "another tenant's member");
        assert!(!may_reset(&owner, &other_owner), "another owner");
        assert!(!may_reset(&owner, &admin));
        assert!(!may_reset(&member, &owner));
    }
}
