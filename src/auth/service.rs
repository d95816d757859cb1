//! Sign-in, sign-out, password changes and API tokens: the flows shared by the
//! JSON API and the pages. Each writes its audit record in the same transaction.

use rusqlite::TransactionBehavior;
use serde_json::json;
use tower_sessions::Session;

use super::guard::{random_token, token_hash};
use super::keys;
use super::model::{TokenScope, User, check_password_strength};
use super::store::{self, ApiToken};
use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::error::{AppError, FieldErrors};

/// Checks credentials with lockout and the per-address limit (web, API and
/// SSH all sign in here). Every failure and every lock is audited with the
/// source IP. An unknown name, a wrong password or a locked account get the
/// same answer after the same work (a password check), so none can be told
/// from another; the audit says which it was. A disabled account (or one of
/// a disabled tenant) is told so, but only after its password is verified. An address
/// past its limit gets `TooManyAttempts` before any password is checked.
pub async fn login(
    app: &App,
    username: &str,
    password: &str,
    src: &Source,
) -> Result<User, AppError> {
    app.sign_ins
        .check(&src.ip)
        .map_err(AppError::TooManyAttempts)?;
    let result = check_credentials(app, username, password, src).await;
    if matches!(result, Err(AppError::InvalidCredentials)) {
        app.sign_ins.failed(&src.ip);
    }
    result
}

async fn check_credentials(
    app: &App,
    username: &str,
    password: &str,
    src: &Source,
) -> Result<User, AppError> {
    let name = username.trim().to_string();
    let lookup = name.clone();
    let row = app
        .db
        .read(move |c| store::login_row(c, &lookup).map_err(AppError::from))
        .await?;
    let now = crate::db::now();
    let Some(row) = row else {
        let pw = password.to_string();
        app.blocking(move |h| h.verify_dummy(&pw)).await?;
        audit_failure(app, Actor::anonymous(&name), src, "unknown_user").await?;
        return Err(AppError::InvalidCredentials);
    };
    let actor = Actor::user(&row.user);
    let (pw, hash) = (password.to_string(), row.password_hash.clone());
    let ok = app.blocking(move |h| h.verify(&pw, &hash)).await?;
    if row.user.is_locked(now) {
        audit_failure(app, actor, src, "locked").await?;
        return Err(AppError::InvalidCredentials);
    }
    if !ok {
        record_failure(app, &row.user, src, "auth.login", "wrong_password").await?;
        return Err(AppError::InvalidCredentials);
    }
    if !row.user.enabled || !row.tenant_enabled {
        let why = if row.user.enabled {
            "tenant_disabled"
        } else {
            "disabled"
        };
        audit_failure(app, actor, src, why).await?;
        // The password was right: saying so tells a guesser nothing, and
        // tells the owner whom to ask.
        return Err(AppError::AccountDisabled {
            tenant: row.user.enabled,
        });
    }
    let (id, src2) = (row.user.id, src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store::clear_login_failures(&tx, id)?;
            audit::append(&tx, &Event::new(&actor, &src2, "auth.login", "session"))?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    Ok(row.user)
}

async fn audit_failure(
    app: &App,
    actor: Actor,
    src: &Source,
    reason: &'static str,
) -> Result<(), AppError> {
    let src = src.clone();
    app.db
        .write(move |c| {
            audit::append(
                c,
                &Event::new(&actor, &src, "auth.login", "session")
                    .outcome(Outcome::Failure)
                    .detail(json!({ "reason": reason })),
            )
            .map(|_| ())
            .map_err(AppError::from)
        })
        .await
}

/// Counts a wrong password toward the account's lockout, audited as a
/// failed `action` for `reason` (and the lock, when this failure reached the
/// threshold).
async fn record_failure(
    app: &App,
    user: &User,
    src: &Source,
    action: &'static str,
    reason: &'static str,
) -> Result<(), AppError> {
    let sec = &app.config.security;
    let (threshold, lock_secs) = (sec.lockout_threshold, i64::from(sec.lockout_minutes) * 60);
    let (id, actor, src) = (user.id, Actor::user(user), src.clone());
    let resource = if action == "auth.login" {
        "session"
    } else {
        "user"
    };
    let locked = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let locked =
                store::record_login_failure(&tx, id, crate::db::now(), threshold, lock_secs)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, action, resource)
                    .outcome(Outcome::Failure)
                    .detail(json!({ "reason": reason })),
            )?;
            if locked {
                audit::append(
                    &tx,
                    &Event::new(&actor, &src, "auth.lock", "user")
                        .id(id.0)
                        .detail(json!({ "failures": threshold, "minutes": lock_secs / 60 })),
                )?;
                // Seed 000 §7.4: an account locked by failed sign-ins is an
                // alert, written with the lock.
                let ev = crate::alerts::Raised {
                    kind: crate::alerts::EventKind::AccountLocked,
                    subject: crate::alerts::Subject::User(id),
                    value: Some(f64::from(threshold)),
                    detail: format!(
                        "locked for {} min after {threshold} failed sign-ins (last from {})",
                        lock_secs / 60,
                        src.ip
                    ),
                };
                crate::alerts::record_event(&tx, &ev)?;
            }
            tx.commit()?;
            Ok::<_, AppError>(locked)
        })
        .await?;
    if locked {
        crate::alerts::wake(app);
    }
    Ok(())
}

/// Binds the browser session to `user` under a new session id (no fixation).
pub async fn start_session(session: &Session, user: &User, epoch: i64) -> Result<(), AppError> {
    session.cycle_id().await.map_err(AppError::internal)?;
    session
        .insert(keys::USER_ID, user.id.0)
        .await
        .map_err(AppError::internal)?;
    session
        .insert(keys::EPOCH, epoch)
        .await
        .map_err(AppError::internal)?;
    session
        .insert(keys::CSRF, random_token())
        .await
        .map_err(AppError::internal)?;
    Ok(())
}

/// Ends the session server-side and audits it.
pub async fn logout(
    app: &App,
    session: &Session,
    actor: Actor,
    src: &Source,
) -> Result<(), AppError> {
    session.flush().await.map_err(AppError::internal)?;
    let src = src.clone();
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Signed out of gpudock: signed out of the instances' web apps too.
            if let Some(id) = actor.id {
                crate::proxy::end_sign_ins(&tx, id)?;
            }
            audit::append(&tx, &Event::new(&actor, &src, "auth.logout", "session"))?;
            tx.commit().map_err(AppError::from)
        })
        .await
}

/// Changes the caller's own password after checking the current one. Ends the
/// user's other sessions and everything they hold live (terminals, shells,
/// followed logs); with `revoke_tokens` also revokes their API tokens (the
/// user chooses: a change after a leak wants it, a routine change may keep
/// scripts working). Returns the new session epoch.
pub async fn change_password(
    app: &App,
    user: &User,
    current: &str,
    new: &str,
    revoke_tokens: bool,
    src: &Source,
) -> Result<i64, AppError> {
    let id = user.id;
    let stored = app
        .db
        .read(move |c| store::password_hash(c, id).map_err(AppError::from))
        .await?;
    let stored = stored.ok_or(AppError::NotFound)?;
    let (cur, s) = (current.to_string(), stored);
    if !app.blocking(move |h| h.verify(&cur, &s)).await? {
        // A guess at the password like a failed sign-in: it counts toward
        // the lockout (which then ends this session too) and is audited.
        record_failure(
            app,
            user,
            src,
            "auth.password_change",
            "wrong_current_password",
        )
        .await?;
        return Err(AppError::field(
            "current_password",
            "err.current_password_wrong",
        ));
    }
    let mut errors = FieldErrors::new();
    if new == current {
        errors.insert(
            "new_password",
            crate::error::FieldError::new("err.password_same"),
        );
    } else if let Err(e) = check_password_strength(
        new,
        &[&user.username, &user.display_name],
        app.config.security.min_password_score,
    ) {
        errors.insert("new_password", e);
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let pw = new.to_string();
    let hash = app
        .blocking(move |h| h.hash(&pw))
        .await?
        .map_err(AppError::internal)?;
    let (actor, src) = (Actor::user(user), src.clone());
    let epoch = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = crate::db::now();
            let epoch = store::set_password(&tx, id, &hash, false, now)?;
            let tokens = if revoke_tokens {
                store::revoke_all_tokens(&tx, id, now)?
            } else {
                0
            };
            audit::append(
                &tx,
                &Event::new(&actor, &src, "auth.password_change", "user")
                    .id(id.0)
                    .detail(json!({ "tokens_revoked": tokens })),
            )?;
            tx.commit()?;
            Ok::<_, AppError>(epoch)
        })
        .await?;
    super::end_live_access(app, &[id]);
    if user.username == "admin" {
        // The bootstrap password is spent: remove its file.
        let path = super::initial_password_path(&app.config.data_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => log::info!("removed {} (the initial password is spent)", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::error!(
                "cannot remove {} (it holds the spent initial admin password; delete it by hand): {e}",
                path.display()
            ),
        }
    }
    Ok(epoch)
}

/// Whether `user`'s role holds the Prometheus scrape's record (a `metrics`
/// token of anyone else would open nothing).
async fn holds_scrape(app: &App, user: &User) -> Result<bool, AppError> {
    let user = user.clone();
    let (method, pattern) = super::model::SCRAPE_ROUTE;
    app.db
        .read(move |c| {
            super::holds(c, &user, super::Action::Route { method, pattern }).map_err(Into::into)
        })
        .await
}

/// Creates an API token for `user`; the clear token is returned once and only
/// its SHA-256 is stored.
pub async fn create_token(
    app: &App,
    user: &User,
    name: &str,
    scope: Option<&str>,
    src: &Source,
) -> Result<(ApiToken, String), AppError> {
    let mut errors = FieldErrors::new();
    let name = super::model::required_text(&mut errors, "name", name, 64);
    // Absent: an `api` token; given: exactly one of the scopes.
    let scope = match scope.map(TokenScope::parse) {
        None => TokenScope::Api,
        Some(Some(s)) => s,
        Some(None) => {
            errors.insert("scope", crate::error::FieldError::new("err.token_scope"));
            TokenScope::Api
        }
    };
    if scope == TokenScope::Metrics && !holds_scrape(app, user).await? {
        errors.insert(
            "scope",
            crate::error::FieldError::new("err.token_scope_not_held"),
        );
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let token = format!("gdk_{}", random_token());
    let prefix: String = token.chars().take(10).collect();
    let hash = token_hash(&token);
    let (uid, actor, src) = (user.id, Actor::user(user), src.clone());
    let tok = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = crate::db::now();
            let id = store::insert_token(&tx, uid, &name, &hash, &prefix, scope, now)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "token.create", "api_token")
                    .id(id)
                    .detail(json!({ "name": name, "prefix": prefix, "scope": scope })),
            )?;
            tx.commit()?;
            Ok::<_, AppError>(ApiToken {
                id,
                name,
                prefix,
                created_at: now,
                last_used_at: None,
                revoked_at: None,
                scope,
            })
        })
        .await?;
    Ok((tok, token))
}

pub async fn revoke_token(app: &App, user: &User, id: i64, src: &Source) -> Result<(), AppError> {
    let (uid, actor, src) = (user.id, Actor::user(user), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !store::revoke_token(&tx, uid, id, crate::db::now())? {
                return Err(AppError::NotFound);
            }
            audit::append(
                &tx,
                &Event::new(&actor, &src, "token.revoke", "api_token").id(id),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await
}
