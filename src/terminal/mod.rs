//! The web terminal: a page with xterm.js and a WebSocket bridged to a
//! `docker exec` with a TTY in the instance's container (bash where the
//! image has it, sh otherwise). The WebSocket checks the session cookie (the
//! guard), the user's right to the instance (a scoped lookup: 404 for
//! others') and the Origin header; each connection is a session (limits,
//! recording, audit) served by a task that shutdown joins.
//!
//! Frames: binary both ways carry terminal bytes; the browser sends text
//! `{"type":"resize","cols":C,"rows":R}`; the server ends with text
//! `{"type":"end","reason":..,"message":..,"exit_code":..}` and a close.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::auth::PageCtx;
use crate::docker::exec::{self, ExecSpec, Output};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::ids::InstanceId;
use crate::instances::{Instance, InstanceStatus, Names};
use crate::sessions::bridge::{self, ClientEvent, ClientSink, Finish};
use crate::sessions::{OpenError, Opening, Protocol, Target};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::render::{Layout, html};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/instances/{id}/terminal", get(page))
        .route("/instances/{id}/terminal/ws", get(ws))
}

#[derive(Template)]
#[template(path = "terminal/terminal.html")]
struct TerminalPage {
    l: Layout,
    i: Instance,
    n: Names,
}

/// The instance if `me` reaches it and it has a running container.
async fn running(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
) -> Result<(Instance, Names), AppError> {
    let (i, n) = crate::instances::named(app, me, Some(id))
        .await?
        .pop()
        .ok_or(AppError::NotFound)?;
    if i.last_known != InstanceStatus::Running || i.container_id.is_none() {
        return Err(AppError::Conflict(FieldErrors::from([(
            "status",
            FieldError::new("err.not_running"),
        )])));
    }
    Ok((i, n))
}

/// xterm.js styles its rows inline, so this page allows inline styles.
async fn page(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    let (i, n) = running(&app, &ctx.me, id).await?;
    let r = html(&TerminalPage {
        l: ctx.nav("instances").l,
        i,
        n,
    })?;
    Ok(crate::web::with_csp(r, crate::web::Csp::InlineStyles))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Size {
    cols: Option<u16>,
    rows: Option<u16>,
}

async fn ws(
    State(app): State<App>,
    me: CurrentUser,
    headers: HeaderMap,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    ApiQuery(size): ApiQuery<Size>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if !crate::auth::same_origin(&headers) {
        return Err(AppError::Csrf);
    }
    let (i, n) = running(&app, &me, id).await?;
    let size = (
        size.cols.unwrap_or(80).clamp(10, 1000),
        size.rows.unwrap_or(24).clamp(5, 500),
    );
    // The connection's task is owned like a jumpbox connection's: counted
    // from now (before the upgrade completes) until it has ended, so that
    // shutdown waits for its clean-up before the database closes.
    let tracked = app.live.track();
    Ok(upgrade.on_upgrade(move |socket| async move {
        let target = Target::instance(&i, n.node);
        serve(app, me, target, src, size, socket).await;
        drop(tracked);
    }))
}

/// The control messages the browser sends as text.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Resize { cols: u16, rows: u16 },
}

fn event(msg: Result<Message, axum::Error>) -> Option<ClientEvent> {
    match msg {
        Ok(Message::Binary(b)) => Some(ClientEvent::Input(b)),
        Ok(Message::Text(t)) => match serde_json::from_str::<Control>(t.as_str()) {
            Ok(Control::Resize { cols, rows }) => {
                Some(ClientEvent::Resize(cols.max(1), rows.max(1)))
            }
            Err(_) => None,
        },
        Ok(Message::Close(_)) => Some(ClientEvent::Closed),
        Err(_) => Some(ClientEvent::Lost),
        Ok(Message::Ping(_) | Message::Pong(_)) => None,
    }
}

struct WsSink(SplitSink<WebSocket, Message>);

impl ClientSink for WsSink {
    async fn output(&mut self, out: Output) -> Result<(), ()> {
        let bytes = match out {
            Output::Stdout(b) | Output::Stderr(b) => b,
        };
        self.0.send(Message::Binary(bytes)).await.map_err(|_| ())
    }

    async fn finish(&mut self, end: &Finish) {
        // The page writes the message into the terminal: shown, never run.
        let message = end.message.as_deref().map(crate::escape::for_terminal);
        let text = json!({"type": "end", "reason": end.reason.as_str(), "message": message,
                          "exit_code": end.exit_code})
        .to_string();
        let _ = self.0.send(Message::Text(text.into())).await;
        let close = CloseFrame {
            code: 1000,
            reason: end.reason.as_str().into(),
        };
        let _ = self.0.send(Message::Close(Some(close))).await;
    }
}

async fn serve(
    app: App,
    me: CurrentUser,
    target: Target,
    src: Source,
    size: (u16, u16),
    socket: WebSocket,
) {
    let (sink, stream) = socket.split();
    let mut sink = WsSink(sink);
    let opening = Opening {
        user: &me.user,
        target: &target,
        protocol: Protocol::WebTerminal,
        source: src,
        command: "",
        size,
        term: "xterm-256color",
        target_port: None,
    };
    let session = match crate::sessions::open(&app, opening).await {
        Ok(s) => s,
        Err(e) => {
            let reason = match e {
                OpenError::Revoked => crate::sessions::EndReason::AccessRevoked,
                OpenError::LeaseExpired(_) => crate::sessions::EndReason::LeaseExpired,
                OpenError::TooMany(_) | OpenError::App(_) => crate::sessions::EndReason::Error,
            };
            let end = Finish {
                reason,
                exit_code: None,
                message: Some(e.message()),
            };
            bridge::finish(&mut sink, &end).await;
            return;
        }
    };
    let spec = ExecSpec {
        argv: exec::shell_argv(),
        tty: true,
        term: Some("xterm-256color".into()),
        size: Some(size),
        tag: session.tag().to_string(),
    };
    let container = target.container().to_string();
    let events = Box::pin(stream.filter_map(|m| std::future::ready(event(m))));
    bridge::run(&app, session, container, spec, events, sink).await;
}
