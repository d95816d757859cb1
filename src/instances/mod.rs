//! Instances (实例管理): placement of a product spec on a node with room
//! (GPU-exact), the containers behind them, their lifecycle and logs, and
//! the sync that keeps their status true. Every read and operation is scoped
//! in SQL: members see their own, owners their tenant's, admins all.

pub mod api;
pub mod lifecycle;
pub mod model;
pub mod pages;
pub mod placement;
pub mod quota;
pub mod store;
pub mod sync;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use crate::app::App;
use crate::auth::CurrentUser;
use crate::docker::{DockerError, watch};
use crate::error::AppError;
use crate::ids::{InstanceId, NodeId, Scope};
use crate::paging::{Page, Search, Window};
pub use lifecycle::{Action, CreateInput, act, create, delete, scoped as get};
pub use model::InstanceStatus;
use placement::{Candidate, Capacity, Refusal, Request};
pub use store::{Instance, Names, Orphan};

/// Instance `id` if `scope` reaches it, on `c` (a caller that reads more
/// in the same turn: the proxy's check of a request).
pub fn scoped_on(
    c: &rusqlite::Connection,
    scope: crate::ids::Scope,
    id: InstanceId,
) -> rusqlite::Result<Option<Instance>> {
    store::get(c, scope, id)
}

/// The request a spec makes of a node.
pub fn request_of(spec: &crate::catalog::model::Spec) -> Request {
    Request {
        gpu_model: spec.gpu_model.clone(),
        need: Capacity {
            gpus: spec.gpu_count,
            cpu_cores: spec.cpu_cores,
            memory_gb: spec.memory_gb,
            system_disk_gb: spec.system_disk_gb,
            data_disk_gb: spec.data_disk_gb,
        },
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CandidateQuery {
    /// Text, so that the wizard's empty choice (`spec_id=`) is "none yet"
    /// rather than a malformed query.
    pub spec_id: Option<String>,
}

impl CandidateQuery {
    /// The spec asked for; `None` when empty; a field error when not a number.
    pub fn spec(&self) -> Result<Option<i64>, AppError> {
        match self.spec_id.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| AppError::field("spec_id", "err.not_integer")),
        }
    }
}

/// Listed, online nodes whose GPU model matches and whose free capacity
/// covers the spec (listed specs only for customers).
pub async fn candidate_nodes(
    app: &App,
    me: &CurrentUser,
    spec_id: i64,
) -> Result<Vec<Candidate>, AppError> {
    Ok(placement_of(app, me, spec_id).await?.0)
}

/// The candidates for a spec and, for every other node, why it cannot take
/// it (what the wizard shows). Unlisted nodes are explained only to those
/// who see node details; customers never learn of them.
pub async fn placement_of(
    app: &App,
    me: &CurrentUser,
    spec_id: i64,
) -> Result<(Vec<Candidate>, Vec<(String, Refusal)>), AppError> {
    let spec = crate::catalog::get_spec(app, me, spec_id)
        .await
        .map_err(|e| match e {
            AppError::NotFound => AppError::field("spec_id", "err.no_such_spec"),
            other => other,
        })?;
    let req = request_of(&spec);
    let nodes = app
        .db
        .read(|c| store::states(c, None).map_err(AppError::from))
        .await?;
    let usable: Vec<_> = nodes
        .iter()
        .filter(|n| n.listed && n.online)
        .map(|n| n.snapshot.clone())
        .collect();
    let details = crate::auth::sees_node_details(app, &me.user).await?;
    let refused = placement::refusals(&req, &nodes)
        .into_iter()
        .filter(|(_, why)| details || *why != Refusal::Unlisted)
        .collect();
    Ok((placement::candidates(&req, &usable), refused))
}

/// Infrastructure warnings (a disk quota dockerd could not apply, in its
/// own words) are for those who see node details, never for customers:
/// cleared from `insts` for anyone else.
pub async fn shield<'a>(
    app: &App,
    me: &CurrentUser,
    insts: impl IntoIterator<Item = &'a mut Instance>,
) -> Result<(), AppError> {
    let details = crate::auth::sees_node_details(app, &me.user).await?;
    hide_warnings(details, insts);
    Ok(())
}

/// Clears the warnings of `insts` unless the caller sees nodes' `details`.
fn hide_warnings<'a>(details: bool, insts: impl IntoIterator<Item = &'a mut Instance>) {
    if !details {
        for i in insts {
            i.warnings.clear();
        }
    }
}

/// What tenant `tenant`'s instances hold (how many, and their reservations
/// added up), as kept in the reserving transactions: what quotas read.
pub async fn tenant_usage(
    app: &App,
    tenant: crate::ids::TenantId,
) -> Result<store::Usage, AppError> {
    app.db
        .read(move |c| store::tenant_usage(c, tenant.0).map_err(AppError::from))
        .await
}

/// The most instances one allocation makes.
pub const MAX_ALLOCATE: i64 = 20;

/// Refuses a whole batch of `count` instances of the input's spec that
/// would pass a quota of `owner`'s tenant (each create checks again in its
/// reserving transaction). An unknown spec is left to the create to name.
async fn batch_within_quota(
    app: &App,
    me: &CurrentUser,
    owner: &CurrentUser,
    input: &CreateInput,
    count: i64,
) -> Result<(), AppError> {
    let Some(tenant) = owner.user.tenant_id else {
        return Ok(());
    };
    let Some(spec_id) = input.spec_id.as_ref().and_then(serde_json::Value::as_i64) else {
        return Ok(());
    };
    let spec = match crate::catalog::get_spec(app, me, spec_id).await {
        Ok(spec) => spec,
        Err(AppError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let need = request_of(&spec).need;
    app.db
        .read(move |c| quota::check(c, tenant, &need, count))
        .await
}

/// An admin allocates (分配) `count` instances of one spec to user
/// `user_id` of a tenant (the owner is that user): each is created like
/// the user's own (`name`, or `name-1`…`name-N`), one after the other; the
/// ones made and why the rest failed. Audited as a whole and each.
pub async fn allocate(
    app: &App,
    me: &CurrentUser,
    user_id: Option<&serde_json::Value>,
    count: Option<&serde_json::Value>,
    input: CreateInput,
    src: &crate::audit::Source,
) -> Result<(Vec<Instance>, Vec<String>), AppError> {
    let mut e = crate::error::FieldErrors::new();
    let uid = crate::validate::int_field(&mut e, "user_id", user_id, 0, i64::MAX);
    let count = crate::validate::int_field(&mut e, "count", count, 1, MAX_ALLOCATE);
    if uid == 0 && !e.contains_key("user_id") {
        e.insert("user_id", crate::error::FieldError::new("err.required"));
    }
    if count == 0 && !e.contains_key("count") {
        e.insert(
            "count",
            crate::error::FieldError::with_detail("err.out_of_range", "1..20"),
        );
    }
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let owner = crate::auth::usable_user(app, me.scope(), crate::ids::UserId(uid))
        .await?
        .filter(|u| u.tenant_id.is_some())
        .ok_or_else(|| AppError::field("user_id", "err.leases.no_customer"))?;
    let owner = CurrentUser {
        user: owner,
        via: me.via,
    };
    batch_within_quota(app, me, &owner, &input, count).await?;
    let base = input.name.clone().unwrap_or_default();
    let (mut made, mut failed) = (Vec::new(), Vec::new());
    for n in 1..=count {
        let mut one = input.clone();
        if count > 1 {
            one.name = Some(format!("{base}-{n}"));
        }
        let done = match lifecycle::create_for(app, me, &owner, one, src).await {
            Ok((_, task)) => task.await.map_err(AppError::internal).and_then(|r| r),
            Err(e) => Err(e),
        };
        match done {
            Ok(i) => made.push(i),
            // Bad input fails the same for every one: say so once.
            Err(e @ AppError::Validation(_)) if made.is_empty() => return Err(e),
            Err(e) => failed.push(e.user_text(false)),
        }
    }
    let ids: Vec<InstanceId> = made.iter().map(|i| i.id).collect();
    let detail = serde_json::json!({"user_id": uid, "username": owner.user.username,
                                    "count": count, "instances": ids, "failed": failed});
    let outcome = if failed.is_empty() {
        crate::audit::Outcome::Success
    } else {
        crate::audit::Outcome::Failure
    };
    crate::audit::record(&app.db, me.actor(), src.clone(), move |a, s| {
        crate::audit::Event::new(a, s, "instance.allocate", "user")
            .id(uid)
            .outcome(outcome)
            .detail(detail)
    })
    .await?;
    Ok((made, failed))
}

/// Records the status Docker reported for instance `id`'s container `cid`
/// (work done outside a user's request, such as the lease checker's stop).
pub async fn record_status(
    app: &App,
    id: InstanceId,
    cid: String,
    status: InstanceStatus,
) -> Result<(), AppError> {
    app.db
        .write(move |c| {
            store::set_status(c, id, &cid, status, crate::db::now())
                .map(|_| ())
                .map_err(AppError::from)
        })
        .await
}

/// Every instance placed on `node`, whoever owns it (per-node work such as
/// metrics collection; never shown to a user as it is).
pub async fn on_node(app: &App, node: NodeId) -> Result<Vec<Instance>, AppError> {
    app.db
        .read(move |c| store::placed_on(c, node).map_err(AppError::from))
        .await
}

/// The instances `me` reaches (all, or only `id`) with the names of their
/// image, spec, node and user.
pub async fn named(
    app: &App,
    me: &CurrentUser,
    only: Option<InstanceId>,
) -> Result<Vec<(Instance, store::Names)>, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::list_named(c, scope, only).map_err(AppError::from))
        .await
}

/// The key of a list's answer: everything it depends on (the caller's
/// scope, the search and the window).
fn list_key(what: &str, scope: Scope, search: &Search, window: Window) -> String {
    format!("{what} {scope:?} {search:?} {window:?}")
}

/// The API's answer for a page of the list: the rows as JSON, and how
/// many rows match.
#[derive(Debug)]
pub struct ListJson {
    pub body: Bytes,
    pub total: u64,
}

/// [`list`] as the API answers it (without warnings unless `me` sees
/// nodes' details), serialized once and kept in memory until the next
/// commit (`Db::cached`): every caller with the same scope, search, window
/// and details rule shares the same bytes.
pub async fn listed_json(
    app: &App,
    me: &CurrentUser,
    search: Search,
    window: Window,
) -> Result<Arc<ListJson>, AppError> {
    let scope = me.scope();
    checked(&search)?;
    let details = crate::auth::sees_node_details(app, &me.user).await?;
    let key = format!(
        "{} details={details}",
        list_key("instances json", scope, &search, window)
    );
    app.db
        .cached(key, move |c| {
            let mut page = store::list(c, scope, &search, window)?;
            hide_warnings(details, &mut page.items);
            let body = serde_json::to_vec(&page.items).map_err(AppError::internal)?;
            Ok(ListJson {
                body: body.into(),
                total: page.total,
            })
        })
        .await
}

/// The instances `me` reaches in `window` (by id) that `search` matches,
/// with how many there are.
pub async fn list(
    app: &App,
    me: &CurrentUser,
    search: Search,
    window: Window,
) -> Result<Page<Instance>, AppError> {
    let scope = me.scope();
    checked(&search)?;
    app.db
        .read(move |c| store::list(c, scope, &search, window).map_err(AppError::from))
        .await
}

/// What `render` makes of the rows of `window` that `search` matches (with
/// their names and how many there are; without warnings unless `me` sees
/// nodes' details), kept in memory until the next commit (`Db::cached`)
/// under `key`, which names everything else `render` reads (the language,
/// the columns shown, the pager's links). The rows are read and rendered
/// in the same kept answer, so it is never older than the rows.
pub async fn named_rendered<R: Send + Sync + 'static>(
    app: &App,
    me: &CurrentUser,
    search: Search,
    window: Window,
    key: &str,
    render: impl FnOnce(&Page<(Instance, store::Names)>) -> Result<R, AppError> + Send + 'static,
) -> Result<Arc<R>, AppError> {
    let scope = me.scope();
    checked(&search)?;
    let details = crate::auth::sees_node_details(app, &me.user).await?;
    let key = format!(
        "{} details={details} {key}",
        list_key("named instances", scope, &search, window)
    );
    app.db
        .cached(key, move |c| {
            let mut page = store::list_named_page(c, scope, &search, window)?;
            hide_warnings(details, page.items.iter_mut().map(|(i, _)| i));
            render(&page)
        })
        .await
}

/// The status words a search may ask for (a field error for any other).
fn checked(search: &Search) -> Result<(), AppError> {
    let known: Vec<&str> = InstanceStatus::ALL.iter().map(|s| s.as_str()).collect();
    search.status_of(&known).map(|_| ())
}

/// Containers labelled for this installation that no instance owns, for
/// whoever holds the orphan report's permission (an admin-only record:
/// orphans belong to no tenant).
pub async fn orphans(app: &App, me: &CurrentUser) -> Result<Vec<Orphan>, AppError> {
    let user = me.user.clone();
    // The decision depends on the role alone; kept until the next commit.
    let kept = app
        .db
        .cached(format!("orphans {}", user.role.as_str()), move |c| {
            let report = crate::auth::Action::Route {
                method: "GET",
                pattern: "/api/v1/instances/orphans",
            };
            if !crate::auth::holds(c, &user, report)? {
                return Ok(None);
            }
            store::orphans(c).map(Some).map_err(AppError::from)
        })
        .await?;
    Option::clone(&kept).ok_or(AppError::Forbidden)
}

/// The most lines of history a log request returns before following.
pub const MAX_TAIL: u32 = 10_000;

/// The instance's output: the last `tail` lines, then (with `follow`) live
/// until the server stops (an open follow never holds up a shutdown).
pub async fn logs(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    follow: bool,
    tail: u32,
) -> Result<impl Stream<Item = Result<Bytes, DockerError>> + Send + use<>, AppError> {
    // Held from before the lookup: a revocation from now on ends the stream.
    let hold = app.live.hold(crate::auth::holder(&me.user));
    let inst = get(app, me, id).await?;
    let cid = inst
        .container_id
        .ok_or_else(|| AppError::field("id", "err.no_container"))?;
    let d = crate::nodes::client(app, inst.node_id).await?;
    // Ends at shutdown too: an open follow never holds up a stop.
    let stop = app.cancel.clone().cancelled_owned();
    Ok(ended_by_revocation(
        watch::logs(&d, &cid, follow, tail.min(MAX_TAIL)).take_until(stop),
        hold,
    ))
}

/// `logs` until the user's access is revoked; then a last line says why
/// and the stream ends (the hold is released with the stream).
fn ended_by_revocation<S>(
    logs: S,
    hold: crate::live::Registration,
) -> impl Stream<Item = Result<Bytes, DockerError>> + Send + use<S>
where
    S: Stream<Item = Result<Bytes, DockerError>> + Send + 'static,
{
    use futures_util::FutureExt;
    let w = hold.watcher();
    let mut revoked = Box::pin(async move { w.stopped().await });
    let mut logs = Box::pin(logs);
    let mut ended = false;
    futures_util::stream::poll_fn(move |cx| {
        let _held = &hold;
        if ended {
            return std::task::Poll::Ready(None);
        }
        if revoked.poll_unpin(cx).is_ready() {
            ended = true;
            return std::task::Poll::Ready(Some(Ok(Bytes::from_static(
                b"\n[gpudock] log stream ended: access revoked (your account was changed)\n",
            ))));
        }
        logs.poll_next_unpin(cx)
    })
}
