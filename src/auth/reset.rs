//! Password resets from the web (交付): an admin resets anyone's password,
//! an owner their tenant's members'. The temporary password is shown once to
//! whoever reset it, must be changed at the next sign-in, and the user's
//! sessions end everywhere (browser, API tokens stay, live terminals and
//! jumpbox shells are closed).

use askama::Template;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rusqlite::TransactionBehavior;
use serde_json::json;

use super::CurrentUser;
use super::model::{Role, User, UserId, random_password};
use super::pages::PageCtx;
use super::store;
use crate::app::App;
use crate::audit::{self, Event, Source};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::web::extract::ApiPath;
use crate::web::render::{Layout, html};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/users/{id}/reset-password", post(page))
        .route("/api/v1/users/{id}/reset-password", post(api))
}

/// Who may reset whose password: admins anyone but themselves (they use
/// their own password change), owners the members of their tenant.
fn allowed(by: &User, target: &User) -> Result<(), AppError> {
    if by.id == target.id {
        return Err(AppError::Conflict(FieldErrors::from([(
            "user",
            FieldError::new("err.delivery.reset_self"),
        )])));
    }
    match by.role {
        Role::Admin => Ok(()),
        Role::CustomerOwner
            if target.role == Role::CustomerMember && target.tenant_id == by.tenant_id =>
        {
            Ok(())
        }
        Role::CustomerOwner | Role::CustomerMember => Err(AppError::Forbidden),
    }
}

/// Resets `id`'s password to a generated temporary one (returned once).
pub async fn reset(
    app: &App,
    by: &CurrentUser,
    id: UserId,
    src: &Source,
) -> Result<(User, String), AppError> {
    let scope = by.scope();
    let target = app
        .db
        .read(move |c| store::get_user(c, scope, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    allowed(&by.user, &target)?;
    let password = random_password();
    let pw = password.clone();
    let hash = app
        .blocking(move |h| h.hash(&pw))
        .await?
        .map_err(AppError::internal)?;
    let (actor, src, name) = (by.actor(), src.clone(), target.username.clone());
    let user = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store::set_password(&tx, id, &hash, true, crate::db::now())?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "user.password_reset", "user")
                    .id(id.0)
                    .detail(json!({ "username": name, "must_change_password": true })),
            )?;
            let u = store::get_user(&tx, super::Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok::<_, AppError>(u)
        })
        .await?;
    // Live terminals and jumpbox shells of the user end with the old password.
    for s in app.live.snapshot().into_iter().filter(|s| s.owner == id.0) {
        app.live.stop(s.id, "admin_force");
    }
    Ok((user, password))
}

async fn api(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    let (user, password) = reset(&app, &me, UserId(id), &src).await?;
    Ok(Json(
        json!({ "user": user, "temporary_password": password }),
    ))
}

#[derive(Template)]
#[template(path = "auth/reset_done.html")]
struct Done {
    l: Layout,
    user: User,
    password: String,
}

async fn page(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let (user, password) = reset(&app, &ctx.me, UserId(id), &src).await?;
    html(&Done {
        l: ctx.nav("users").l,
        user,
        password,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::auth::model::TenantId;

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
        }
    }

    #[test]
    fn admins_reset_anyone_else_owners_their_members() {
        let admin = user(1, Role::Admin, None);
        let owner = user(2, Role::CustomerOwner, Some(7));
        let member = user(3, Role::CustomerMember, Some(7));
        let stranger = user(4, Role::CustomerMember, Some(8));
        let other_owner = user(5, Role::CustomerOwner, Some(7));
        assert!(allowed(&admin, &owner).is_ok());
        assert!(allowed(&admin, &user(6, Role::Admin, None)).is_ok());
        assert!(matches!(
            allowed(&admin, &admin),
            Err(AppError::Conflict(_))
        ));
        assert!(allowed(&owner, &member).is_ok());
        assert!(matches!(
            allowed(&owner, &stranger),
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            allowed(&owner, &other_owner),
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            allowed(&member, &stranger),
            Err(AppError::Forbidden)
        ));
    }
}
