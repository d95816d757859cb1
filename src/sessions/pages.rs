//! Session pages: live sessions (refreshing themselves, with a terminate
//! button for roles that hold its permission), the history with filters, and one session with the
//! replay of its recording.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::model::{Protocol, SessionStatus};
use super::{EndReason, Filter, SessionRecord};
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::ids::SessionId;
use crate::paging::{MAX_LIMIT, Pager, Paging, Window};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::render::{Layout, html, is_htmx};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/sessions", get(list))
        .route("/sessions/{id}", get(show))
        .route("/sessions/{id}/terminate", post(terminate))
}

/// `1 h 2 min`, from seconds.
pub fn duration(s: &SessionRecord) -> String {
    let end = s.ended_at.unwrap_or_else(crate::db::now);
    super::model::human((end - s.started_at).max(0) as u64)
}

/// `12.3 KiB`.
pub fn bytes(n: &i64) -> String {
    let n = *n as f64;
    match n {
        n if n >= 1_073_741_824.0 => format!("{:.1} GiB", n / 1_073_741_824.0),
        n if n >= 1_048_576.0 => format!("{:.1} MiB", n / 1_048_576.0),
        n if n >= 1024.0 => format!("{:.1} KiB", n / 1024.0),
        n => format!("{n} B"),
    }
}

pub fn reason_key(r: &Option<EndReason>) -> &'static str {
    match r {
        Some(EndReason::UserClose) => "sessions.r_user_close",
        Some(EndReason::ClientLost) => "sessions.r_client_lost",
        Some(EndReason::NodeLost) => "sessions.r_node_lost",
        Some(EndReason::AccessRevoked) => "sessions.r_access_revoked",
        Some(EndReason::IdleTimeout) => "sessions.r_idle_timeout",
        Some(EndReason::AdminForce) => "sessions.r_admin_force",
        Some(EndReason::MaxDuration) => "sessions.r_max_duration",
        Some(EndReason::Error) => "sessions.r_error",
        Some(EndReason::LeaseExpired) => "leases.r_lease_expired",
        None => "sessions.r_none",
    }
}

/// For a status or a filter's status text.
pub fn status_key<S: AsRef<str> + ?Sized>(s: &S) -> &'static str {
    match SessionStatus::parse(s.as_ref()) {
        Some(SessionStatus::Active) => "sessions.s_active",
        Some(SessionStatus::Idle) => "sessions.s_idle",
        Some(SessionStatus::Closed) => "sessions.s_closed",
        Some(SessionStatus::Terminated) | None => "sessions.s_terminated",
    }
}

/// For a protocol or a filter's protocol text.
pub fn protocol_key<S: AsRef<str> + ?Sized>(p: &S) -> &'static str {
    match Protocol::parse(p.as_ref()) {
        Some(Protocol::Ssh) => "sessions.p_ssh",
        Some(Protocol::Sftp) => "sessions.p_sftp",
        Some(Protocol::PortForward) => "sessions.p_port_forward",
        Some(Protocol::WebTerminal) | None => "sessions.p_web_terminal",
    }
}

#[derive(Template)]
#[template(path = "sessions/list.html")]
struct ListPage {
    l: Layout,
    live: Vec<SessionRecord>,
    history: Vec<SessionRecord>,
    pager: Pager,
    f: Filter,
    can_terminate: bool,
}

#[derive(Template)]
#[template(path = "sessions/live_rows.html")]
struct LiveRows {
    l: Layout,
    live: Vec<SessionRecord>,
    can_terminate: bool,
}

impl ListPage {
    fn fv(&self, v: &Option<String>) -> String {
        v.clone().unwrap_or_default()
    }
}

async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    ApiQuery(f): ApiQuery<Filter>,
    paging: Paging,
) -> Result<Response, AppError> {
    let live_filter = Filter {
        status: Some("live".into()),
        ..Filter::default()
    };
    // The live sessions (up to MAX_LIMIT, far more than are open at once).
    let live = super::list(&app, &ctx.me, live_filter, Window::first(MAX_LIMIT))
        .await?
        .items;
    let can_terminate = ctx.l.can("POST /sessions/{id}/terminate");
    if is_htmx(&headers) {
        return html(&LiveRows {
            l: ctx.nav("sessions").l,
            live,
            can_terminate,
        });
    }
    let history = super::list(&app, &ctx.me, f.clone(), paging.window).await?;
    let l = ctx.nav("sessions").l;
    html(&ListPage {
        l,
        live,
        pager: paging.pager(history.total, history.items.len()),
        history: history.items,
        f,
        can_terminate,
    })
}

#[derive(Template)]
#[template(path = "sessions/show.html")]
struct ShowPage {
    l: Layout,
    s: SessionRecord,
    can_terminate: bool,
    /// What an SFTP session did (the file operations log).
    files: Vec<crate::files::Operation>,
}

/// One session; its replay needs WebAssembly (the player's terminal), so
/// this page alone allows compiling it.
async fn show(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Response, AppError> {
    let s = super::get(&app, &ctx.me, id).await?;
    let can_terminate = ctx.l.can("POST /sessions/{id}/terminate");
    let files = if s.protocol == super::Protocol::Sftp {
        let f = crate::files::Filter {
            session_id: Some(id.0),
            limit: Some(1000),
            ..Default::default()
        };
        crate::files::operations(&app, &ctx.me, f).await?
    } else {
        Vec::new()
    };
    let r = html(&ShowPage {
        l: ctx.nav("sessions").l,
        s,
        can_terminate,
        files,
    })?;
    Ok(crate::web::with_csp(r, crate::web::Csp::InlineStylesWasm))
}

async fn terminate(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Response, AppError> {
    super::terminate(&app, &ctx.me, id, &src).await?;
    Ok(Redirect::to("/sessions").into_response())
}
