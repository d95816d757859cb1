//! The proxy's listeners: which service a request is for (its port, or its
//! host name in domain mode), the hand-off that signs the browser in on
//! that origin, the check of every request, and the pass-through.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_server::accept::NoDelayAcceptor;
use tokio_util::sync::CancellationToken;

use super::upstream::{self, Upstream};
use super::{COOKIE_PREFIX, OWN_PREFIX, store};
use crate::app::App;
use crate::auth::{Access, Action, User};
use crate::error::AppError;
use crate::i18n::{Lang, Tr};
use crate::ids::InstanceId;
use crate::instances::{Instance, InstanceStatus};
use crate::reach::WebService;

/// How often an upgraded connection (a WebSocket) checks again that its
/// user may still use the app (a revocation ends it at once anyway).
const RECHECK: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Ctx {
    app: App,
    client: Upstream,
    /// The listener's place among the proxy's ports (port mode).
    slot: Option<u16>,
    /// The port the browser reached (for `X-Forwarded-Port`).
    port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The TLS configuration: the proxy's pair (domain mode) or the
/// appliance's; HTTP/1.1 only (WebSocket upgrades are HTTP/1.1's).
fn tls(app: &App) -> Result<axum_server::tls_rustls::RustlsConfig, ServeError> {
    let p = &app.config.proxy;
    let (cert, key) = match (&p.cert, &p.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => crate::tls::ensure_pair(&app.config)?,
    };
    let mut cfg = (*crate::tls::server_config(&cert, &key)?).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        std::sync::Arc::new(cfg),
    ))
}

pub async fn serve(
    app: App,
    listeners: Vec<TcpListener>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let handle = axum_server::Handle::new();
    let tls = app.config.tls.enabled.then(|| tls(&app)).transpose()?;
    let client = upstream::client(&app);
    let port_mode = crate::reach::port_mode(&app);
    let mut servers = tokio::task::JoinSet::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        listener.set_nonblocking(true)?;
        let ctx = Ctx {
            app: app.clone(),
            client: client.clone(),
            slot: port_mode.then(|| u16::try_from(i).unwrap_or(u16::MAX)),
            port: listener.local_addr()?.port(),
        };
        let service = Router::new()
            .fallback(handle_request)
            .with_state(ctx)
            .into_make_service_with_connect_info::<SocketAddr>();
        let h = handle.clone();
        // TCP_NODELAY: without it a response's first bytes could wait for
        // the browser to acknowledge the TLS session tickets sent just
        // before (Nagle's rule against a delayed ACK: 40 ms).
        let plain = axum_server::from_tcp(listener).handle(h);
        match &tls {
            Some(tls) => {
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls.clone())
                    .acceptor(NoDelayAcceptor::new());
                let server = plain.acceptor(acceptor);
                servers.spawn(async move { server.serve(service).await });
            }
            None => {
                let server = plain.acceptor(NoDelayAcceptor::new());
                servers.spawn(async move { server.serve(service).await });
            }
        }
    }
    let h = handle.clone();
    let stopper = tokio::spawn(async move {
        cancel.cancelled().await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    while let Some(r) = servers.join_next().await {
        match r {
            Ok(Err(e)) => log::error!("proxy listener: {e}"),
            Err(e) => log::error!("proxy listener task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    stopper.abort();
    Ok(())
}

/// A page of the proxy's own (not the app's).
#[derive(Template)]
#[template(path = "proxy/message.html")]
struct Message<'a> {
    tr: Tr,
    title: &'a str,
    text: &'a str,
    detail: &'a str,
    link: Option<String>,
}

fn page(
    headers: &HeaderMap,
    status: StatusCode,
    key: &str,
    detail: &str,
    link: Option<String>,
) -> Response {
    let tr = Tr::new(Lang::from_headers(headers));
    let m = Message {
        tr,
        title: tr.t("proxy.title"),
        text: tr.t(key),
        detail,
        link,
    };
    let body = m.render().unwrap_or_else(|_| tr.t(key).to_string());
    let mut r = (status, axum::response::Html(body)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The host the browser named (HTTP/1.1: the Host header), without its
/// port; gpudock's public host when one is configured.
fn host_of(ctx: &Ctx, headers: &HeaderMap) -> String {
    let origin = crate::web::public::resolve(&ctx.app.config, &axum::http::Uri::default(), headers);
    crate::reach::browser_host(&origin)
}

/// Which service a request names: the proxy's port it came to (port
/// mode), or its host name (domain mode). None: a host that names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Slot(u16),
    At(InstanceId, u16),
}

fn wanted(ctx: &Ctx, headers: &HeaderMap) -> Option<Wanted> {
    match ctx.slot {
        Some(slot) => Some(Wanted::Slot(slot)),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let base = &ctx.app.config.proxy.base_domain;
            crate::reach::model::parse_domain_host(host, base)
                .map(|(port, id)| Wanted::At(InstanceId(id), port))
        }
    }
}

/// Where gpudock is, for a browser at `headers`' host.
fn appliance(ctx: &Ctx, headers: &HeaderMap) -> String {
    let c = &ctx.app.config;
    if !c.proxy.appliance_url.is_empty() {
        return c.proxy.appliance_url.trim_end_matches('/').to_string();
    }
    let scheme = if c.tls.enabled { "https" } else { "http" };
    let host = if crate::reach::port_mode(&ctx.app) {
        host_of(ctx, headers)
    } else {
        c.proxy.base_domain.clone()
    };
    format!("{scheme}://{host}:{}", c.listen.port())
}

/// gpudock's page that signs the browser in to `s` and comes back to `next`.
fn sign_in_url(ctx: &Ctx, headers: &HeaderMap, s: &WebService, next: &str) -> String {
    let q: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!(
        "{}/instances/{}/web/{}/open?next={q}",
        appliance(ctx, headers),
        s.instance_id,
        s.target_port
    )
}

fn cookie_name(s: &WebService) -> String {
    format!("{COOKIE_PREFIX}{}", s.id)
}

/// The proxy's sign-in cookies in the request (`gpudock_app_<service>`;
/// in port mode a browser sends those of every service on the host): the
/// service each names and the hash of its value, in the request's order.
fn sign_in_cookies(headers: &HeaderMap) -> Vec<(i64, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter_map(|(k, v)| {
            let suffix = k.strip_prefix(COOKIE_PREFIX)?;
            let id: i64 = suffix.parse().ok()?;
            (id.to_string() == suffix).then(|| (id, crate::auth::guard::token_hash(v)))
        })
        .collect()
}

async fn handle_request(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let Some(wanted) = wanted(&ctx, &headers) else {
        return no_service(&headers);
    };
    let found = match checked(&ctx, wanted, sign_in_cookies(&headers)).await {
        Ok(f) => f,
        Err(e) => return failed(&headers, &e),
    };
    let Some(service) = found.service else {
        return no_service(&headers);
    };
    let path = req.uri().path().to_string();
    if path.starts_with(OWN_PREFIX) {
        return if path == format!("{OWN_PREFIX}handoff") && req.method() == Method::GET {
            handoff(&ctx, &headers, &service, req.uri().query().unwrap_or("")).await
        } else {
            no_service(&headers)
        };
    }
    let next = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let Some((verdict, hash)) = found.verdict else {
        return not_signed_in(&ctx, &headers, &service, &next, req.method());
    };
    match verdict {
        Verdict::Pass(pass) => {
            let (user, inst) = *pass;
            forward(ctx, peer, req, user, inst, service, hash).await
        }
        Verdict::SignIn => not_signed_in(&ctx, &headers, &service, &next, req.method()),
        Verdict::Denied => page(&headers, StatusCode::FORBIDDEN, "proxy.denied", "", None),
        Verdict::NotRunning => page(
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy.unavailable",
            crate::i18n::Tr::new(Lang::from_headers(&headers)).t("err.not_running"),
            None,
        ),
    }
}

fn no_service(headers: &HeaderMap) -> Response {
    page(headers, StatusCode::NOT_FOUND, "proxy.no_service", "", None)
}

fn failed(headers: &HeaderMap, e: &AppError) -> Response {
    let reference = crate::error::incident(log::Level::Error, &format!("proxy: {e}"));
    page(
        headers,
        StatusCode::INTERNAL_SERVER_ERROR,
        "proxy.unavailable",
        &format!("reference {reference}"),
        None,
    )
}

/// A browser not signed in to the app: sent to gpudock to be (a page with
/// the link for what is not a plain navigation).
fn not_signed_in(
    ctx: &Ctx,
    headers: &HeaderMap,
    s: &WebService,
    next: &str,
    method: &Method,
) -> Response {
    let to = sign_in_url(ctx, headers, s, next);
    if method == Method::GET || method == Method::HEAD {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&to) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    page(
        headers,
        StatusCode::UNAUTHORIZED,
        "proxy.sign_in_hint",
        "",
        Some(to),
    )
}

/// `/.gpudock/handoff?t=TOKEN`: the one-time hand-off becomes this
/// origin's sign-in cookie, and the browser goes where it was going.
async fn handoff(ctx: &Ctx, headers: &HeaderMap, s: &WebService, query: &str) -> Response {
    let token = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let hash = crate::auth::guard::token_hash(&token);
    let (service, now) = (s.id, crate::db::now());
    let taken = ctx
        .app
        .db
        .write(move |c| store::take_handoff(c, &hash, service, now).map_err(AppError::from))
        .await;
    let h = match taken {
        Ok(Some(h)) => h,
        Ok(None) => {
            let again = sign_in_url(ctx, headers, s, "/");
            return page(
                headers,
                StatusCode::FORBIDDEN,
                "proxy.expired",
                "",
                Some(again),
            );
        }
        Err(e) => return failed(headers, &e),
    };
    let sid = crate::auth::guard::random_token();
    let sid_hash = crate::auth::guard::token_hash(&sid);
    let lasts = i64::from(ctx.app.config.security.session_idle_minutes) * 60;
    let sign_in = store::SignIn {
        user_id: h.user_id,
        epoch: h.epoch,
    };
    let stored = ctx
        .app
        .db
        .write(move |c| {
            store::insert_sign_in(c, &sid_hash, &sign_in, service, now, now + lasts)
                .map_err(AppError::from)
        })
        .await;
    if let Err(e) = stored {
        return failed(headers, &e);
    }
    let secure = if ctx.app.config.tls.enabled {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age={lasts}{secure}",
        cookie_name(s)
    );
    let mut r = StatusCode::SEE_OTHER.into_response();
    let hs = r.headers_mut();
    if let (Ok(c), Ok(l)) = (
        HeaderValue::from_str(&cookie),
        HeaderValue::from_str(&crate::web::redirect::local_path(&h.next)),
    ) {
        hs.insert(header::SET_COOKIE, c);
        hs.insert(header::LOCATION, l);
    }
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    hs.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// What the checks of a request found.
enum Verdict {
    Pass(Box<(User, Instance)>),
    /// No sign-in (any more), or the account changed: sign in again.
    SignIn,
    /// The role or the scope does not reach the app (any more).
    Denied,
    NotRunning,
}

/// What the one read of a request found: the service it names (web access
/// on), and, when the request carries a sign-in cookie of that service,
/// the verdict of the checks and the hash of the cookie's value.
struct Found {
    service: Option<WebService>,
    verdict: Option<(Verdict, String)>,
}

/// The checks of every request, in one turn of the database: the service
/// named (web access still on), the sign-in, the account as it is now
/// (revocation), the role's record, the instance in the user's scope and
/// running. A sign-in that no longer holds is dropped.
async fn checked(
    ctx: &Ctx,
    wanted: Wanted,
    cookies: Vec<(i64, String)>,
) -> Result<Found, AppError> {
    let now = crate::db::now();
    let found = ctx
        .app
        .db
        .read(move |c| check(c, wanted, &cookies, now).map_err(AppError::from))
        .await?;
    if let Some((Verdict::SignIn | Verdict::Denied, h)) = &found.verdict {
        let h = h.clone();
        ctx.app
            .db
            .write(move |c| store::delete_sign_in(c, &h).map_err(AppError::from))
            .await?;
    }
    Ok(found)
}

/// [`checked`]'s read.
fn check(
    c: &rusqlite::Connection,
    wanted: Wanted,
    cookies: &[(i64, String)],
    now: i64,
) -> rusqlite::Result<Found> {
    let service = match wanted {
        Wanted::Slot(slot) => crate::reach::service_in_slot_on(c, slot)?,
        Wanted::At(id, port) => crate::reach::service_on(c, id, port)?,
    };
    let Some(s) = service else {
        return Ok(Found {
            service: None,
            verdict: None,
        });
    };
    let Some((_, hash)) = cookies.iter().find(|(id, _)| *id == s.id) else {
        return Ok(Found {
            service: Some(s),
            verdict: None,
        });
    };
    let verdict = verdict_on(c, &s, hash, now)?;
    Ok(Found {
        service: Some(s),
        verdict: Some((verdict, hash.clone())),
    })
}

fn verdict_on(
    c: &rusqlite::Connection,
    s: &WebService,
    hash: &str,
    now: i64,
) -> rusqlite::Result<Verdict> {
    let Some(si) = store::sign_in(c, hash, s.id, now)? else {
        return Ok(Verdict::SignIn);
    };
    let uid = crate::ids::UserId(si.user_id);
    Ok(
        match crate::auth::resume_on(c, uid, si.epoch, Action::WebProxy, now)? {
            None | Some((_, Access::Revoked)) => Verdict::SignIn,
            Some((_, Access::Denied)) => Verdict::Denied,
            Some((user, Access::Allowed)) => {
                let scope = crate::ids::Scope::of(&user);
                match crate::instances::scoped_on(c, scope, s.instance_id)? {
                    Some(i)
                        if i.last_known == InstanceStatus::Running && i.container_id.is_some() =>
                    {
                        Verdict::Pass(Box::new((user, i)))
                    }
                    Some(_) => Verdict::NotRunning,
                    None => Verdict::Denied,
                }
            }
        },
    )
}

/// Headers that concern one hop only (RFC 9110 §7.6.1), never passed on.
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header is one of gpudock's cookies (never for the app).
fn ours(cookie_name: &str) -> bool {
    cookie_name.trim().to_ascii_lowercase().contains("gpudock")
}

/// The hop's headers out, and those the `Connection` header names.
fn strip_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for n in HOP.iter().copied().map(String::from).chain(named) {
        h.remove(n.as_str());
    }
}

fn is_upgrade(h: &HeaderMap) -> Option<HeaderValue> {
    let asks = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    asks.then(|| h.get(header::UPGRADE).cloned()).flatten()
}

/// The request's headers for the app: hop headers out, gpudock's cookies
/// out, the client's `X-Forwarded-*` replaced by the proxy's own.
fn upstream_headers(ctx: &Ctx, peer: SocketAddr, h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    strip_hop(&mut out);
    out.remove(header::COOKIE);
    let kept: Vec<&str> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !ours(c.split('=').next().unwrap_or("")))
        .collect();
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        out.insert(header::COOKIE, v);
    }
    for x in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
    ] {
        out.remove(x);
    }
    let proto = if ctx.app.config.tls.enabled {
        "https"
    } else {
        "http"
    };
    let host = h
        .get(header::HOST)
        .cloned()
        .unwrap_or(HeaderValue::from_static(""));
    let set = |out: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            out.insert(k, v);
        }
    };
    set(&mut out, "x-forwarded-for", peer.ip().to_string());
    set(&mut out, "x-forwarded-proto", proto.to_string());
    set(&mut out, "x-forwarded-port", ctx.port.to_string());
    out.insert("x-forwarded-host", host);
    out
}

/// The app's response headers for the browser: hop headers out (kept for
/// a switch of protocols), and no cookie the app sets under gpudock's names.
fn downstream_headers(h: &mut HeaderMap, switching: bool) {
    let keep = switching.then(|| {
        (
            h.get(header::CONNECTION).cloned(),
            h.get(header::UPGRADE).cloned(),
        )
    });
    strip_hop(h);
    if let Some((c, u)) = keep {
        if let Some(c) = c {
            h.insert(header::CONNECTION, c);
        }
        if let Some(u) = u {
            h.insert(header::UPGRADE, u);
        }
    }
    let cookies: Vec<HeaderValue> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            v.to_str()
                .map(|s| !ours(s.split('=').next().unwrap_or("")))
                .unwrap_or(false)
        })
        .cloned()
        .collect();
    h.remove(header::SET_COOKIE);
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
}

/// Resolves when `user`'s hold ends (revocation) or the server stops.
fn ended(
    app: &App,
    hold: &crate::live::Registration,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (w, stop) = (hold.watcher(), app.cancel.clone());
    async move {
        tokio::select! {
            () = w.stopped() => {}
            () = stop.cancelled_owned() => {}
        }
    }
}

async fn forward(
    ctx: Ctx,
    peer: SocketAddr,
    mut req: Request,
    user: User,
    inst: Instance,
    service: WebService,
    hash: String,
) -> Response {
    let headers = req.headers().clone();
    // Ended with the user's access, and with the instance (stop, delete).
    let hold = ctx.app.live.hold_on(crate::auth::holder(&user), inst.id.0);
    let upgrade = is_upgrade(&headers);
    let client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let container = inst.container_id.clone().unwrap_or_default();
    let authority = upstream::authority(inst.node_id, &container, service.target_port);
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut up_headers = upstream_headers(&ctx, peer, &headers);
    if let Some(u) = &upgrade {
        up_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        up_headers.insert(header::UPGRADE, u.clone());
    }
    let (parts, body) = req.into_parts();
    let mut up = hyper::Request::new(body);
    *up.method_mut() = parts.method;
    *up.headers_mut() = up_headers;
    match format!("http://{authority}{pq}").parse() {
        Ok(uri) => *up.uri_mut() = uri,
        Err(_) => {
            return page(
                &headers,
                StatusCode::BAD_REQUEST,
                "proxy.unavailable",
                "",
                None,
            );
        }
    }
    let mut resp = match ctx.client.request(up).await {
        Ok(r) => r,
        Err(e) => {
            let why = upstream::explain(&e);
            return page(
                &headers,
                StatusCode::BAD_GATEWAY,
                "proxy.unavailable",
                &why,
                None,
            );
        }
    };
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client_side)) = (switching, client_side) {
        let app_side = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        downstream_headers(&mut parts.headers, true);
        pipe(ctx, client_side, app_side, hold, service, hash);
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = resp.into_parts();
    downstream_headers(&mut parts.headers, false);
    let stop = ended(&ctx.app, &hold);
    let body = upstream::Ending::new(body, stop, hold);
    Response::from_parts(parts, upstream::body(body))
}

/// Carries an upgraded connection (a WebSocket) both ways until either side
/// closes, the user's access ends, a check every few seconds finds they may
/// no longer use the app (web access turned off, the role's record
/// withdrawn, the instance stopped), or the server stops. Tracked:
/// shutdown waits for it.
fn pipe(
    ctx: Ctx,
    client_side: hyper::upgrade::OnUpgrade,
    app_side: hyper::upgrade::OnUpgrade,
    hold: crate::live::Registration,
    service: WebService,
    hash: String,
) {
    let token = ctx.app.live.track();
    tokio::spawn(async move {
        let _token = token;
        let ended = ended(&ctx.app, &hold);
        let (a, b) = match tokio::join!(client_side, app_side) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                log::debug!("proxy: an upgrade failed: {:?} {:?}", a.err(), b.err());
                return;
            }
        };
        let mut a = hyper_util::rt::TokioIo::new(a);
        let mut b = hyper_util::rt::TokioIo::new(b);
        let recheck = async {
            loop {
                tokio::time::sleep(RECHECK).await;
                let again = Wanted::At(service.instance_id, service.target_port);
                let found = checked(&ctx, again, vec![(service.id, hash.clone())]).await;
                if !matches!(
                    found,
                    Ok(Found {
                        verdict: Some((Verdict::Pass(..), _)),
                        ..
                    })
                ) {
                    return;
                }
            }
        };
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut a, &mut b) => {
                if let Err(e) = r {
                    log::debug!("proxy: an upgraded connection ended: {e}");
                }
            }
            () = ended => {}
            () = recheck => {}
        }
        drop(hold);
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn gpudock_cookies_and_hop_headers_never_reach_the_app() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "a=1; gpudock_session=s; gpudock_app_3=x; __Host-gpudock_login=y; gpudock_app_04=z; b=2",
            ),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert(header::HOST, HeaderValue::from_static("gpu.lab:8444"));
        let mut out = h.clone();
        strip_hop(&mut out);
        assert!(out.get("x-secret").is_none() && out.get(header::CONNECTION).is_none());
        let mut resp = HeaderMap::new();
        resp.append(
            header::SET_COOKIE,
            HeaderValue::from_static("gpudock_session=evil; Path=/"),
        );
        resp.append(
            header::SET_COOKIE,
            HeaderValue::from_static("_xsrf=ok; Path=/"),
        );
        downstream_headers(&mut resp, false);
        let set: Vec<_> = resp.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(set, [HeaderValue::from_static("_xsrf=ok; Path=/")]);
        assert!(ours("gpudock_app_3") && ours("__Host-gpudock_login") && !ours("_xsrf"));
        let hash = crate::auth::guard::token_hash;
        assert_eq!(sign_in_cookies(&h), [(3, hash("x"))]);
    }
}
