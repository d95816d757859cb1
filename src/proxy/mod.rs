//! The HTTPS proxy to web apps inside instances (对外访问): Jupyter,
//! TensorBoard and the like, served on origins of their own, never the
//! appliance's, so that an app's JavaScript can never use the user's
//! gpudock session.
//!
//! * **Origins.** Without a base domain each web service gets a port of the
//!   proxy (`proxy_listen`'s port and the next `[proxy] ports - 1`): its
//!   own origin `https://host:PORT`. With `[proxy] base_domain` (and a
//!   wildcard certificate) services are `https://<port>-<id>.<base_domain>`
//!   on `proxy_listen`. Two apps never share an origin.
//! * **Sign-in.** The instance page's link goes to gpudock
//!   (`GET /instances/{id}/web/{port}/open`, the user's gpudock session),
//!   which issues a one-time hand-off (a minute, one service) and sends the
//!   browser to the app's origin, where `/.gpudock/handoff` turns it into a
//!   sign-in cookie of that origin (`gpudock_app_<service>`, HttpOnly,
//!   Secure). A browser without one is sent to gpudock to get one.
//! * **Every request** is checked: the sign-in, the account unchanged since
//!   (revocation), the role's record (`Action::WebProxy`), the instance in
//!   the user's scope and running, web access still on. Gpudock's cookies
//!   never reach the app, and the app cannot set them.
//! * **Pass-through.** HTTP/1.1 with streaming bodies (nothing buffered),
//!   WebSocket and other upgrades, `X-Forwarded-For/-Proto/-Host/-Port`.
//!   Responses and upgraded connections are held live under the user's
//!   access: revocation and shutdown end them.

mod serve;
pub mod store;
mod upstream;
pub mod web;

use std::net::{SocketAddr, TcpListener};

use rusqlite::TransactionBehavior;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::InstanceId;
use crate::instances::InstanceStatus;

/// How long a hand-off may be used.
pub const HANDOFF_SECS: i64 = 60;
/// The path prefix the proxy keeps for itself on every app's origin.
pub const OWN_PREFIX: &str = "/.gpudock/";
/// The cookies of the proxy's sign-ins: `gpudock_app_<service id>`.
pub const COOKIE_PREFIX: &str = "gpudock_app_";

/// Binds the proxy's listeners: `proxy_listen`, and in port mode the next
/// ports up to `[proxy] ports` (port 0: as many free ports). None when
/// the proxy is off.
pub fn bind(config: &crate::config::Config) -> std::io::Result<Vec<TcpListener>> {
    if !config.proxy.enabled {
        return Ok(Vec::new());
    }
    let first = config.proxy_listen;
    let count = if config.proxy.base_domain.is_empty() {
        config.proxy.ports
    } else {
        1
    };
    (0..count)
        .map(|i| {
            let port = if first.port() == 0 {
                0
            } else {
                first.port() + i
            };
            let addr = SocketAddr::new(first.ip(), port);
            TcpListener::bind(addr).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "proxy port {addr}: {e} (proxy_listen, [proxy] ports; [proxy] enabled = false \
                         turns the proxy off)"
                    ),
                )
            })
        })
        .collect()
}

/// Serves the proxy on `listeners` until `cancel`, then drains its
/// connections (upgraded ones end with the user's access or shutdown).
pub async fn run(app: App, listeners: Vec<TcpListener>, cancel: CancellationToken) {
    if listeners.is_empty() {
        return;
    }
    let ports: Vec<u16> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
        .collect();
    let shown: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok().map(|a| a.to_string()))
        .collect();
    let _ = app.proxy_ports.set(ports);
    log::info!("proxy: web apps on {}", shown.join(" "));
    if let Err(e) = serve::serve(app, listeners, cancel).await {
        log::error!("proxy: {e}");
    }
}

/// Ends user `user`'s sign-ins to the proxy's apps (their sign-out from
/// gpudock: the apps' origins hold cookies of their own, which must not
/// outlive it). Open WebSockets through the proxy end at their next check.
pub fn end_sign_ins(c: &rusqlite::Connection, user: crate::ids::UserId) -> rusqlite::Result<usize> {
    store::delete_sign_ins_of(c, user.0)
}

/// Issues a hand-off for `me` to the web service on `port` of instance
/// `id`; the address (on the app's origin) the browser goes to next, which
/// lands on `next` once signed in. `host`: how the browser reached gpudock.
pub async fn handoff(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    port: u16,
    next: &str,
    host: &str,
    src: &Source,
) -> Result<String, AppError> {
    let inst = crate::instances::get(app, me, id).await?;
    let service = crate::reach::service(app, id, port)
        .await?
        .ok_or(AppError::NotFound)?;
    if inst.status != InstanceStatus::Running {
        return Err(AppError::field("id", "err.not_running"));
    }
    let url = crate::reach::url_of(app, &service, host)
        .ok_or_else(|| AppError::field("port", "err.proxy_off"))?;
    let token = crate::auth::guard::random_token();
    let hash = crate::auth::guard::token_hash(&token);
    let next = crate::web::redirect::local_path(next);
    let (user, epoch) = (me.user.id.0, me.user.session_epoch);
    let (actor, src2, name) = (me.actor(), src.clone(), inst.name.clone());
    let n2 = next.clone();
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exp = crate::db::now() + HANDOFF_SECS;
            store::insert_handoff(&tx, &hash, user, epoch, service.id, &n2, exp)?;
            let detail = json!({"instance": name, "port": port, "service": service.name});
            crate::audit::append(
                &tx,
                &crate::audit::Event::new(&actor, &src2, "web.open", "instance")
                    .id(id)
                    .detail(detail),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    let base = url.trim_end_matches('/');
    Ok(format!("{base}{OWN_PREFIX}handoff?t={token}"))
}
