//! Account opening (开户申请) on compute nodes and the cloud users (云电脑用户)
//! it creates. Anyone signed in applies for a Linux account on a node and
//! follows the request; admins review (one by one or in batch) and run the
//! opening, a job that signs in to the node over SSH (nodes::ssh) and creates
//! the account with a generated password, shown once to the applicant and to
//! the admin who ran it. Admins then disable, enable, reset or delete the
//! accounts. Reads are scoped in SQL (members: own, owners: tenant, admins:
//! all); every change is audited in the same transaction.

pub mod api;
pub mod cloud;
pub mod cloud_pages;
pub mod model;
pub mod pages;
pub mod provision;
pub mod store;
pub mod sweep;

use rusqlite::TransactionBehavior;
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::audit::{self, Event, Source};
use crate::auth::{CurrentUser, Role};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::ids::{NodeId, OpeningId, Scope};
use crate::jobs::Progress;
use crate::secrets::Secret;
pub use model::{CloudAction, CloudUserStatus, RequestInput, RequestStatus, ReviewInput};
pub use store::{CloudUser, Counts, Request};

fn conflict(field: &'static str, key: &'static str) -> AppError {
    AppError::Conflict(FieldErrors::from([(field, FieldError::new(key))]))
}

/// The i18n key of a stored failure class (`result_kind`).
pub fn failure_key(kind: &str) -> &'static str {
    match crate::error::RemoteFailure::parse(kind) {
        Some(k) => k.message_key(),
        None if kind == "interrupted" => "err.accounts.interrupted",
        None => "err.internal",
    }
}

/// What to do about a failure class: a hint an admin can act on.
pub fn failure_hint(kind: &str) -> &'static str {
    match kind {
        "network" => "accounts.hint_network",
        "host_auth" => "accounts.hint_host_auth",
        "user_creation" => "accounts.hint_user_creation",
        "permission_denied" => "accounts.hint_permission_denied",
        "interrupted" => "accounts.hint_interrupted",
        _ => "accounts.hint_internal",
    }
}

/// A node one may apply for: (id, name). Customers see listed nodes only.
#[derive(Debug, Clone, Serialize)]
pub struct NodeChoice {
    pub id: NodeId,
    pub name: String,
}

pub async fn node_choices(app: &App, me: &CurrentUser) -> Result<Vec<NodeChoice>, AppError> {
    let admin = me.user.role == Role::Admin;
    Ok(crate::nodes::all(app)
        .await?
        .into_iter()
        .filter(|n| admin || n.listed)
        .map(|n| NodeChoice {
            id: n.id,
            name: n.name,
        })
        .collect())
}

/// Submits an application (提交开户申请) for the caller.
pub async fn submit(
    app: &App,
    me: &CurrentUser,
    input: RequestInput,
    src: &Source,
) -> Result<Request, AppError> {
    let mut new = model::validate_request(&input).map_err(AppError::Validation)?;
    // The applicant's own contacts unless others are given.
    if new.contact_email.is_empty() {
        new.contact_email = me.user.email.clone();
    }
    if new.contact_phone.is_empty() {
        new.contact_phone = me.user.phone.clone();
    }
    let node = node_choices(app, me)
        .await?
        .into_iter()
        .find(|n| n.id == new.target_host)
        .ok_or_else(|| AppError::field("target_host", "err.accounts.no_such_node"))?;
    let (applicant, tenant) = (me.user.id, me.user.tenant_id);
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if store::name_taken(&tx, node.id, &new.username, None)? {
                return Err(conflict("username", "err.accounts.username_taken"));
            }
            let now = crate::db::now();
            let id = store::insert_request(&tx, applicant, tenant, &node.name, &new, now)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "account_opening.create", "account_opening")
                    .id(id)
                    .detail(json!({"username": new.username, "node": node.name})),
            )?;
            let r = store::get_request(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(r)
        })
        .await
}

impl Request {
    /// The request as one who may not see nodes' details gets it: the
    /// node's words (a failure's message, what each step met) left out;
    /// the failure's class stays.
    pub fn without_node_details(mut self) -> Self {
        if !self.result_kind.is_empty() {
            self.result_message.clear();
        }
        for s in &mut self.steps {
            s.detail.clear();
        }
        self
    }
}

/// `rows` as `me` may see them (see [`Request::without_node_details`]).
async fn as_seen_by(
    app: &App,
    me: &CurrentUser,
    rows: Vec<Request>,
) -> Result<Vec<Request>, AppError> {
    if crate::auth::sees_node_details(app, &me.user).await? {
        return Ok(rows);
    }
    Ok(rows
        .into_iter()
        .map(Request::without_node_details)
        .collect())
}

/// The requests `me` sees (with `status`), newest first, for the rows of
/// `window`, and how many there are.
pub async fn list(
    app: &App,
    me: &CurrentUser,
    status: Option<RequestStatus>,
    window: crate::paging::Window,
) -> Result<crate::paging::Page<Request>, AppError> {
    let scope = me.scope();
    let page = app
        .db
        .read(move |c| store::list_requests(c, scope, status, window).map_err(AppError::from))
        .await?;
    let items = as_seen_by(app, me, page.items).await?;
    Ok(crate::paging::Page { items, ..page })
}

pub async fn get(app: &App, me: &CurrentUser, id: OpeningId) -> Result<Request, AppError> {
    let scope = me.scope();
    let r = app
        .db
        .read(move |c| store::get_request(c, scope, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    as_seen_by(app, me, vec![r])
        .await?
        .pop()
        .ok_or(AppError::NotFound)
}

/// Approves or rejects a pending request with notes (审核). An approval may
/// set administrator rights and groups; with `accounts.process_on_approval`
/// the opening starts at once.
pub async fn review(
    app: &App,
    me: &CurrentUser,
    id: OpeningId,
    approve: bool,
    input: ReviewInput,
    src: &Source,
) -> Result<Request, AppError> {
    let model::Review {
        notes,
        is_admin,
        groups,
    } = model::validate_review(&input).map_err(AppError::Validation)?;
    let (scope, by, actor, src2) = (me.scope(), me.user.id, me.actor(), src.clone());
    let r =
        app.db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let old = store::get_request(&tx, scope, id)?.ok_or(AppError::NotFound)?;
                let (to, action) = if approve {
                    (RequestStatus::Approved, "account_opening.approve")
                } else {
                    (RequestStatus::Rejected, "account_opening.reject")
                };
                let admin = is_admin.unwrap_or(old.is_admin);
                let groups = groups.unwrap_or_else(|| old.groups.clone());
                let set = approve.then_some((admin, groups.as_slice()));
                if !store::review(&tx, id, to, by, &notes, set, crate::db::now())? {
                    return Err(conflict("status", "err.accounts.not_pending"));
                }
                audit::append(
                &tx,
                &Event::new(&actor, &src2, action, "account_opening").id(id).detail(json!({
                    "username": old.username, "node": old.target_host_name, "notes": notes,
                    "is_admin": approve.then_some(admin), "groups": approve.then_some(&groups),
                })),
            )?;
                let r = store::get_request(&tx, scope, id)?.ok_or(AppError::NotFound)?;
                tx.commit()?;
                Ok::<_, AppError>(r)
            })
            .await?;
    if approve && app.config.accounts.process_on_approval {
        // The approval stands even when the opening cannot start (the
        // request then waits, approved, for an admin to process it).
        match process(app, me, id, src).await {
            Ok(_) => return get(app, me, id).await,
            Err(e) => log::warn!("account opening {id}: processing on approval: {e}"),
        }
    }
    Ok(r)
}

/// One item of a batch answer.
#[derive(Debug, Clone, Serialize)]
pub struct BatchItem {
    pub id: i64,
    pub ok: bool,
    /// The error code (`conflict`, `not_found`, ...) when not ok.
    pub error: Option<&'static str>,
    pub message: Option<String>,
}

impl BatchItem {
    pub fn of<T>(id: i64, r: &Result<T, AppError>) -> Self {
        match r {
            Ok(_) => BatchItem {
                id,
                ok: true,
                error: None,
                message: None,
            },
            Err(e) => BatchItem {
                id,
                ok: false,
                error: Some(e.code()),
                message: Some(e.text(crate::i18n::Tr::english(), true)),
            },
        }
    }
}

/// Reviews several requests the same way (批量审核); each is its own
/// transaction and answer.
pub async fn batch_review(
    app: &App,
    me: &CurrentUser,
    ids: &[OpeningId],
    approve: bool,
    input: ReviewInput,
    src: &Source,
) -> Result<Vec<BatchItem>, AppError> {
    if ids.is_empty() {
        return Err(AppError::field("ids", "err.required"));
    }
    model::validate_review(&input).map_err(AppError::Validation)?;
    let mut out = Vec::new();
    for &id in ids.iter().take(500) {
        let r = review(app, me, id, approve, input.clone(), src).await;
        out.push(BatchItem::of(id.0, &r));
    }
    Ok(out)
}

/// Starts opening the account of an approved (or failed) request (执行开户):
/// the request moves to processing and a job does the work. Returns the job
/// and its task (the API waits for it; pages follow the request).
pub async fn process(
    app: &App,
    me: &CurrentUser,
    id: OpeningId,
    src: &Source,
) -> Result<(u64, JoinHandle<Result<OpeningId, AppError>>), AppError> {
    let (scope, by, actor, src2) = (me.scope(), me.user.id, me.actor(), src.clone());
    let generation = app.generation;
    let req = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let r = store::get_request(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            if !r.status.can_process() {
                return Err(conflict("status", "err.accounts.not_approved"));
            }
            let node = r
                .target_host
                .ok_or_else(|| AppError::field("target_host", "err.accounts.no_such_node"))?;
            if store::name_taken(&tx, node, &r.username, Some(id))? {
                return Err(conflict("username", "err.accounts.username_taken"));
            }
            let now = crate::db::now();
            store::start_processing(&tx, id, by, &model::initial_steps(), generation, now)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src2, "account_opening.process", "account_opening")
                    .id(id)
                    .detail(json!({"username": r.username, "node": r.target_host_name})),
            )?;
            let r = store::get_request(&tx, Scope::All, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok::<_, AppError>(r)
        })
        .await?;
    let (app2, actor, src) = (app.clone(), me.actor(), src.clone());
    let first = Progress {
        key: "accounts.step_connect",
        detail: req.target_host_name.clone(),
        percent: None,
    };
    Ok(app.jobs.spawn(
        me.user.id.0,
        first,
        |id: &OpeningId| format!("/operations/account-openings/{id}/"),
        move |job| provision::run(app2, req, actor, src, job),
    ))
}

/// The new account's password, once for the applicant and once for the
/// admin who ran the opening (or reset it); then never again.
pub async fn reveal(
    app: &App,
    me: &CurrentUser,
    id: OpeningId,
    src: &Source,
) -> Result<Secret<String>, AppError> {
    let (scope, viewer, actor, src, sealer) = (
        me.scope(),
        me.user.id,
        me.actor(),
        src.clone(),
        app.sealer.clone(),
    );
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let r = store::get_request(&tx, scope, id)?.ok_or(AppError::NotFound)?;
            let cu = r
                .cloud_user_id
                .ok_or_else(|| conflict("password", "err.accounts.no_password"))?;
            let sealed = store::take_reveal(&tx, cu, viewer)?
                .ok_or_else(|| conflict("password", "err.accounts.password_already_shown"))?;
            let opened = sealer.unseal(&sealed)?;
            let password =
                String::from_utf8(opened.expose().clone()).map_err(AppError::internal)?;
            audit::append(
                &tx,
                &Event::new(
                    &actor,
                    &src,
                    "account_opening.password_reveal",
                    "account_opening",
                )
                .id(id)
                .detail(json!({"username": r.username, "cloud_user_id": cu})),
            )?;
            tx.commit()?;
            Ok(Secret::new(password))
        })
        .await
}

/// Whether `me` may still see the password of request `r` once.
pub async fn can_reveal(app: &App, me: &CurrentUser, r: &Request) -> Result<bool, AppError> {
    let Some(cu) = r.cloud_user_id else {
        return Ok(false);
    };
    let viewer = me.user.id;
    let u = app
        .db
        .read(move |c| store::get_cloud_user(c, Scope::All, cu).map_err(AppError::from))
        .await?;
    Ok(u.is_some_and(|u| {
        u.status != CloudUserStatus::Deleted
            && ((u.owner_id == Some(viewer) && u.reveal_owner) || u.reveal_admin_id == Some(viewer))
    }))
}

/// Requests and cloud users per status, in the caller's scope (仪表盘).
pub async fn counts(app: &App, me: &CurrentUser) -> Result<Counts, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::counts(c, scope).map_err(AppError::from))
        .await
}
