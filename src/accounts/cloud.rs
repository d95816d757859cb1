//! Cloud users (云电脑用户): the OS accounts gpudock opened. Disabling locks
//! and expires the account and ends its processes; enabling undoes that;
//! a reset sets a new generated password (shown once); deleting runs
//! `userdel` (home kept or removed). Each acts on the node first and
//! records the new state only when the node did it; success and failure
//! are audited.

use serde_json::json;

use super::model::{CloudAction, CloudUserStatus, os_password};
use super::provision::{self, cmd, open_admin, run_cmd};
use super::store::{self, CloudFilter, CloudUser};
use super::{BatchItem, conflict};
use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::{CloudUserId, NodeId, Scope};
use crate::nodes::ssh::NodeSession;
use crate::secrets::Secret;

/// The cloud users `me` sees that `f` matches, newest first, for the rows
/// of `window`, and how many there are.
pub async fn list(
    app: &App,
    me: &CurrentUser,
    f: CloudFilter,
    window: crate::paging::Window,
) -> Result<crate::paging::Page<CloudUser>, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::list_cloud_users(c, scope, f, window).map_err(AppError::from))
        .await
}

pub async fn get(app: &App, me: &CurrentUser, id: CloudUserId) -> Result<CloudUser, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::get_cloud_user(c, scope, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)
}

/// A user that still exists, and its node.
fn live(u: &CloudUser) -> Result<NodeId, AppError> {
    if u.status == CloudUserStatus::Deleted {
        return Err(conflict("status", "err.cloudusers.deleted"));
    }
    u.host
        .ok_or_else(|| conflict("host", "err.accounts.no_such_node"))
}

/// Audits a failed operation on `u` and hands the error back.
async fn audit_failure(
    app: &App,
    actor: &Actor,
    src: &Source,
    action: &'static str,
    u: &CloudUser,
    e: AppError,
) -> AppError {
    let detail = json!({"username": u.username, "node": u.host_name, "error": e.code(),
        "message": provision::e_detail(&e)});
    let id = u.id;
    if let Err(err) = audit::record(&app.db, actor.clone(), src.clone(), move |a, s| {
        Event::new(a, s, action, "cloud_user")
            .id(id)
            .outcome(Outcome::Failure)
            .detail(detail)
    })
    .await
    {
        log::error!("auditing a failed {action}: {err}");
    }
    e
}

/// Records the new status of `u` with its audit record.
async fn save_status(
    app: &App,
    actor: &Actor,
    src: &Source,
    action: &'static str,
    u: &CloudUser,
    to: CloudUserStatus,
    extra: serde_json::Value,
) -> Result<CloudUser, AppError> {
    let (id, actor, src) = (u.id, actor.clone(), src.clone());
    let detail =
        json!({"username": u.username, "node": u.host_name, "status": to.as_str(), "more": extra});
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            store::set_cloud_status(&tx, id, to, crate::db::now())?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, action, "cloud_user")
                    .id(id)
                    .detail(detail),
            )?;
            let u = store::get_cloud_user(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(u)
        })
        .await
}

/// Disables or enables `u` over an open admin session on its node.
async fn act_on(
    app: &App,
    ns: &NodeSession,
    prefix: &str,
    u: &CloudUser,
    action: CloudAction,
    actor: &Actor,
    src: &Source,
) -> Result<CloudUser, AppError> {
    let (from, to) = action.transition();
    if u.status != from {
        return Err(conflict("status", "err.cloudusers.wrong_status"));
    }
    let audit_action = action.audit_action();
    let done = match action {
        CloudAction::Disable => {
            run_cmd(
                &ns.session,
                "usermod",
                &u.username,
                &cmd::lock(prefix, &u.username),
                None,
            )
            .await
        }
        CloudAction::Enable => {
            run_cmd(
                &ns.session,
                "usermod",
                &u.username,
                &cmd::unlock(prefix, &u.username),
                None,
            )
            .await
        }
    };
    if let Err(e) = done {
        return Err(audit_failure(app, actor, src, audit_action, u, e).await);
    }
    // A disabled account's open sessions end too (exit 1: there were none).
    let mut ended = json!(null);
    if action == CloudAction::Disable {
        ended = match ns.session.exec(&cmd::kill(prefix, &u.username), None).await {
            Ok(o) if o.status == Some(0) => json!("sessions ended"),
            Ok(o) if o.status == Some(1) => json!("no sessions"),
            Ok(o) => json!(format!("pkill: {}", o.err())),
            Err(e) => json!(format!("pkill: {e}")),
        };
    }
    save_status(app, actor, src, audit_action, u, to, ended).await
}

/// Disables (usermod -L -e 1, ends its processes) or enables a cloud user.
pub async fn act(
    app: &App,
    me: &CurrentUser,
    id: CloudUserId,
    action: CloudAction,
    src: &Source,
) -> Result<CloudUser, AppError> {
    let u = get(app, me, id).await?;
    let node = live(&u)?;
    if u.status != action.transition().0 {
        return Err(conflict("status", "err.cloudusers.wrong_status"));
    }
    let actor = me.actor();
    let (ns, prefix) = match open_admin(app, node, &actor, src).await {
        Ok(x) => x,
        Err(e) => return Err(audit_failure(app, &actor, src, action.audit_action(), &u, e).await),
    };
    let r = act_on(app, &ns, prefix, &u, action, &actor, src).await;
    ns.session.close().await;
    r
}

/// Sets a new generated password (checked by signing in when the account
/// is active); returns it to show once. The owner may see it once too.
pub async fn reset_password(
    app: &App,
    me: &CurrentUser,
    id: CloudUserId,
    src: &Source,
) -> Result<(CloudUser, Secret<String>), AppError> {
    let u = get(app, me, id).await?;
    let node = live(&u)?;
    let actor = me.actor();
    let password = Secret::new(os_password());
    let changed = async {
        let (ns, prefix) = open_admin(app, node, &actor, src).await?;
        let r = provision::set_password(&ns.session, prefix, &u.username, &password).await;
        ns.session.close().await;
        r?;
        if u.status == CloudUserStatus::Active {
            provision::verify_login(app, node, &u.username, &password).await?;
        }
        Ok::<_, AppError>(())
    }
    .await;
    if let Err(e) = changed {
        return Err(audit_failure(app, &actor, src, "cloud_user.reset_password", &u, e).await);
    }
    let sealed = app.sealer.seal(password.expose().as_bytes())?;
    let (cid, src2, detail) = (
        u.id,
        src.clone(),
        json!({"username": u.username, "node": u.host_name}),
    );
    let u = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            store::set_cloud_password(&tx, cid, &sealed, crate::db::now())?;
            audit::append(
                &tx,
                &Event::new(&actor, &src2, "cloud_user.reset_password", "cloud_user")
                    .id(cid)
                    .detail(detail),
            )?;
            let u = store::get_cloud_user(&tx, Scope::All, cid)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok::<_, AppError>(u)
        })
        .await?;
    Ok((u, password))
}

/// Deletes the account on its node (userdel, `-r` with `remove_home`) after
/// ending its processes; an account already gone from the node counts as
/// deleted (and the audit says so).
pub async fn delete(
    app: &App,
    me: &CurrentUser,
    id: CloudUserId,
    remove_home: bool,
    src: &Source,
) -> Result<CloudUser, AppError> {
    let u = get(app, me, id).await?;
    let node = live(&u)?;
    let actor = me.actor();
    let removed = async {
        let (ns, prefix) = open_admin(app, node, &actor, src).await?;
        let _ = ns.session.exec(&cmd::kill(prefix, &u.username), None).await;
        let out = ns
            .session
            .exec(&cmd::userdel(prefix, &u.username, remove_home), None)
            .await;
        ns.session.close().await;
        match out {
            Ok(o) if o.success() => Ok(json!({"remove_home": remove_home})),
            Ok(o) if o.status == Some(6) => {
                Ok(json!({"remove_home": remove_home, "note": "already gone from the node"}))
            }
            Ok(o) => Err(provision::classify("userdel", &u.username, &o)),
            Err(e) => Err(AppError::Remote {
                kind: crate::nodes::ssh::failure_of(&e),
                detail: e.to_string(),
            }),
        }
    }
    .await;
    match removed {
        Ok(extra) => {
            save_status(
                app,
                &actor,
                src,
                "cloud_user.delete",
                &u,
                CloudUserStatus::Deleted,
                extra,
            )
            .await
        }
        Err(e) => Err(audit_failure(app, &actor, src, "cloud_user.delete", &u, e).await),
    }
}

/// Disables or enables several cloud users (批量操作), one SSH session per
/// node; each user gets its own answer.
pub async fn batch(
    app: &App,
    me: &CurrentUser,
    ids: &[CloudUserId],
    action: CloudAction,
    src: &Source,
) -> Result<Vec<BatchItem>, AppError> {
    if ids.is_empty() {
        return Err(AppError::field("ids", "err.required"));
    }
    let actor = me.actor();
    let mut users = Vec::new();
    let mut out = Vec::new();
    for &id in ids.iter().take(500) {
        match get(app, me, id)
            .await
            .and_then(|u| live(&u).map(|n| (n, u)))
        {
            Ok(x) => users.push(x),
            Err(e) => out.push(BatchItem::of::<()>(id.0, &Err(e))),
        }
    }
    users.sort_by_key(|(n, u)| (*n, u.id));
    let mut i = 0;
    while i < users.len() {
        let node = users[i].0;
        let group: Vec<&CloudUser> = users[i..]
            .iter()
            .take_while(|(n, _)| *n == node)
            .map(|(_, u)| u)
            .collect();
        i += group.len();
        match open_admin(app, node, &actor, src).await {
            Ok((ns, prefix)) => {
                for u in group {
                    let r = act_on(app, &ns, prefix, u, action, &actor, src).await;
                    out.push(BatchItem::of(u.id.0, &r));
                }
                ns.session.close().await;
            }
            Err(e) => {
                for u in group {
                    let e =
                        audit_failure(app, &actor, src, action.audit_action(), u, e.clone()).await;
                    out.push(BatchItem::of::<()>(u.id.0, &Err(e)));
                }
            }
        }
    }
    Ok(out)
}
