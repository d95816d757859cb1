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
use crate::validate::{email_field, phone_field};

/// `Some(None)` for an explicit JSON null, `None` when the key is absent.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

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
}

/// A UNIQUE violation on users: the e-mail index, else the username.
fn on_user_unique(e: rusqlite::Error) -> AppError {
    let field = if e.to_string().contains("users_email") {
        "email"
    } else {
        "username"
    };
    on_unique(field)(e)
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
            let id = store::insert_user(&tx, &new, now).map_err(on_unique("username"))?;
            let contact = UserChange {
                email: Some(email),
                phone: Some(phone),
                ..Default::default()
            };
            store::update_user(&tx, id, &contact, now).map_err(on_user_unique)?;
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
    fail_if(errors)?;
    let change = UserChange {
        display_name,
        role,
        tenant_id: patch.tenant_id.map(|t| t.map(TenantId)),
        enabled: patch.enabled,
        email,
        phone,
    };
    let (caller, scope, actor, src) = (by.user.clone(), by.scope(), by.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let target = store::get_user(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            check_user_change(&tx, &caller, scope, &target, &change)?;
            store::update_user(&tx, id, &change, crate::db::now()).map_err(on_user_unique)?;
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
                    })),
            )?;
            let user = store::get_user(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(user)
        })
        .await
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
    let touches_access = change.role.is_some_and(|r| r != target.role)
        || change.tenant_id.is_some_and(|t| t != target.tenant_id)
        || change.enabled == Some(false);
    if target.id == caller.id && touches_access {
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
    let remark = optional_text(&mut errors, "remark", &input.remark, 500);
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
            .map(|r| optional_text(&mut errors, "remark", r, 500)),
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
    fail_if(errors)?;
    let (scope, actor, src) = (by.scope(), by.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store::get_tenant(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            store::update_tenant(&tx, id, &change, crate::db::now())
                .map_err(on_unique("company_code"))?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "tenant.update", "tenant")
                    .id(id.0)
                    .detail(json!({
                        "name": change.name, "company_code": change.company_code,
                        "remark": change.remark, "enabled": change.enabled,
                        "contact_person": change.contact_person, "contact_email": change.contact_email,
                        "contact_phone": change.contact_phone
                    })),
            )?;
            let t = store::get_tenant(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(t)
        })
        .await
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
    let (actor, src) = (by.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let p = permissions::get(&tx, id)?.ok_or(AppError::NotFound)?;
            if p.fixed {
                return Err(AppError::field("permission", "err.permission_fixed"));
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
