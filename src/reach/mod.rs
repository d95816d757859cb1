//! Reaching services inside instances (端口转发, 对外访问): the ports of an
//! instance that may be forwarded through the SSH jumpbox (every port
//! unless an admin restricts them), the ports served through the HTTPS
//! proxy as named web services, what the instance page shows of both (the
//! exact `ssh -L` line and URL), and the connection to a port inside the
//! instance's container (`docker::port`: nothing is ever published).
//! The jumpbox (tunnels) and the proxy (web apps) use this API.

pub mod api;
pub mod model;
pub mod pages;
pub mod store;

use rusqlite::TransactionBehavior;
use serde::Serialize;
use serde_json::json;

use crate::app::App;
use crate::audit::{self, Outcome, Source};
use crate::auth::{Action, CurrentUser};
use crate::docker::port::{PortError, PortStream};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::ids::InstanceId;
use crate::instances::{Instance, InstanceStatus};
pub use model::{PortRule, names_the_instance};
pub use store::WebService;

/// Why a port of an instance could not be reached.
#[derive(Debug)]
pub enum ConnectError {
    /// The port or the instance (not running, nothing listening...).
    Port(PortError),
    /// Gpudock's own side (the node unreachable, the database).
    App(AppError),
}

impl ConnectError {
    /// What the user is told (a node's details only for who may see them).
    pub fn message(&self, node_detail: bool) -> String {
        match self {
            ConnectError::Port(PortError::Docker(e)) => {
                crate::error::docker_error(e.clone()).user_text(node_detail)
            }
            ConnectError::Port(p) => p.to_string(),
            ConnectError::App(e) => e.user_text(node_detail),
        }
    }

    /// Nothing listens there, or the instance is not running: the user's
    /// business, not a fault of gpudock's.
    pub fn is_users(&self) -> bool {
        matches!(
            self,
            ConnectError::Port(PortError::NotListening { .. } | PortError::NotRunning)
        )
    }
}

impl From<AppError> for ConnectError {
    fn from(e: AppError) -> Self {
        ConnectError::App(e)
    }
}

/// Connects to `port` inside `inst`'s container (which must be running).
/// `tag` marks the relay's process, if one is used, like a session's.
pub async fn connect(
    app: &App,
    inst: &Instance,
    port: u16,
    tag: &str,
) -> Result<PortStream, ConnectError> {
    let Some(container) = inst
        .container_id
        .as_deref()
        .filter(|_| inst.last_known == InstanceStatus::Running)
    else {
        return Err(ConnectError::Port(PortError::NotRunning));
    };
    reach_container(app, inst.node_id, container, port, tag, false).await
}

/// Connects to `port` inside container `container` on node `node` (for a
/// caller that checked the instance before: the proxy's pooled
/// connections, which outlive one user's request). On the relay route,
/// warm relays are kept ready for the next connections to that port (see
/// `docker::port`): the proxy connects once per request to an app that
/// closes its connections.
pub async fn connect_container(
    app: &App,
    node: crate::ids::NodeId,
    container: &str,
    port: u16,
    tag: &str,
) -> Result<PortStream, ConnectError> {
    reach_container(app, node, container, port, tag, true).await
}

async fn reach_container(
    app: &App,
    node: crate::ids::NodeId,
    container: &str,
    port: u16,
    tag: &str,
    warm: bool,
) -> Result<PortStream, ConnectError> {
    // A namespace entered before: a socket, no call to the daemon.
    let key = format!("{node}/{container}");
    if let Some(s) = app.ports.connect_known(&key, port).await {
        return Ok(s);
    }
    let (d, local) = match app.ports.client(node.0) {
        Some(known) => known,
        None => {
            let local = crate::nodes::endpoint_of(app, node)
                .await?
                .is_some_and(|e| e.url.starts_with("unix://"));
            let d = crate::nodes::client(app, node).await?;
            app.ports.keep_client(node.0, &d, local);
            (d, local)
        }
    };
    let keeper = warm.then(|| crate::docker::port::Keeper {
        tasks: app.live.tasks(),
        stop: app.cancel.clone(),
    });
    let r = app
        .ports
        .connect(&d, container, &key, port, local, tag, keeper)
        .await;
    if let Err(PortError::Docker(_)) = &r {
        // The daemon may have moved: the next connection makes a client anew.
        app.ports.forget_client(node.0);
    }
    r.map_err(ConnectError::Port)
}

/// The forwarding rule of instance `id` (no scope: the caller found the
/// instance in its user's scope).
pub async fn forward_rule(app: &App, id: InstanceId) -> Result<PortRule, AppError> {
    let text = app
        .db
        .read(move |c| store::forward_ports(c, id).map_err(AppError::from))
        .await?;
    // What was stored was parsed when it was set.
    Ok(PortRule::parse(&text).unwrap_or(PortRule::Only(Vec::new())))
}

/// The web service on `port` of instance `id`, if web access is on.
pub async fn service(app: &App, id: InstanceId, port: u16) -> Result<Option<WebService>, AppError> {
    app.db
        .read(move |c| store::service(c, id, port).map_err(AppError::from))
        .await
}

/// [`service`] on `c`, for a caller that reads more in the same turn (the
/// proxy's check of a request).
pub fn service_on(
    c: &rusqlite::Connection,
    id: InstanceId,
    port: u16,
) -> rusqlite::Result<Option<WebService>> {
    store::service(c, id, port)
}

/// The web service the proxy's port `slot` serves (port mode), on `c`.
pub fn service_in_slot_on(
    c: &rusqlite::Connection,
    slot: u16,
) -> rusqlite::Result<Option<WebService>> {
    store::service_in_slot(c, slot)
}

/// Whether the proxy serves services on ports of their own (no base domain).
pub fn port_mode(app: &App) -> bool {
    app.config.proxy.base_domain.is_empty()
}

/// The host name (IPv6 in brackets) users reach gpudock by, for the URLs
/// and command lines shown to them.
pub fn browser_host(origin: &crate::web::public::PublicOrigin) -> String {
    if origin.ssh_host.contains(':') {
        format!("[{}]", origin.ssh_host)
    } else {
        origin.ssh_host.clone()
    }
}

/// The address a browser opens service `s` at, reaching gpudock at `host`;
/// `None` when the proxy is off or not listening.
pub fn url_of(app: &App, s: &WebService, host: &str) -> Option<String> {
    let ports = app.proxy_ports.get()?;
    let scheme = if app.config.tls.enabled {
        "https"
    } else {
        "http"
    };
    let (host, port) = if port_mode(app) {
        (host.to_string(), *ports.get(usize::from(s.slot?))?)
    } else {
        let base = &app.config.proxy.base_domain;
        let h = model::domain_host(s.target_port, s.instance_id.0, base);
        (h, *ports.first()?)
    };
    Some(match (scheme, port) {
        ("https", 443) | ("http", 80) => format!("{scheme}://{host}/"),
        _ => format!("{scheme}://{host}:{port}/"),
    })
}

/// The login that names instance `i` on the jumpbox: by name when it needs
/// no quoting in a shell, else by id.
pub fn login_target(i: &Instance) -> String {
    let plain = !i.name.is_empty()
        && i.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        i.name.clone()
    } else {
        i.id.to_string()
    }
}

/// A web service as the instance page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    #[serde(flatten)]
    pub service: WebService,
    /// Where the browser opens it (through the proxy's sign-in hand-off).
    pub url: Option<String>,
    /// The gpudock page that signs the browser in to it and opens it.
    pub open: String,
    /// The `ssh -L` line that forwards the same port.
    pub ssh: String,
}

/// What reaches an instance's ports, for the instance page and the API.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub instance_id: InstanceId,
    /// SSH port forwarding is on (`[forwarding] enabled`).
    pub forwarding: bool,
    /// The caller may forward ports (the `SSH port-forward` record).
    pub may_forward: bool,
    /// Which ports may be forwarded (`""`: all).
    pub forward_ports: String,
    /// The `ssh -L` line for a port (`PORT` stands for it) and `ssh -J`
    /// for a server inside the instance.
    pub ssh_template: String,
    pub ssh_jump: String,
    /// The HTTPS proxy is on.
    pub proxy: bool,
    /// The caller may open web apps (the hand-off route's record).
    pub may_open: bool,
    pub services: Vec<ServiceView>,
    pub running: bool,
}

/// The overview of instance `id` for `me`, who reached gpudock at `host`.
pub async fn overview(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    host: &str,
) -> Result<Overview, AppError> {
    let inst = crate::instances::get(app, me, id).await?;
    let user = me.user.clone();
    let (rule, services, may_forward, may_open) = app
        .db
        .read(move |c| {
            Ok::<_, AppError>((
                store::forward_ports(c, id)?,
                store::services(c, id)?,
                crate::auth::holds(c, &user, Action::PortForward)?,
                crate::auth::holds(c, &user, Action::WebProxy)?,
            ))
        })
        .await?;
    let ssh_port = app.config.ssh_listen.port();
    let login = format!("{}+{}", me.user.username, login_target(&inst));
    let ssh_line =
        |port: String| format!("ssh -p {ssh_port} -N -L {port}:localhost:{port} {login}@{host}");
    let services = services
        .into_iter()
        .map(|s| ServiceView {
            url: url_of(app, &s, host),
            open: format!("/instances/{id}/web/{}/open", s.target_port),
            ssh: ssh_line(s.target_port.to_string()),
            service: s,
        })
        .collect();
    Ok(Overview {
        instance_id: id,
        forwarding: app.config.forwarding.enabled,
        may_forward,
        forward_ports: rule,
        ssh_template: ssh_line("PORT".into()),
        ssh_jump: format!(
            "ssh -J {}@{host}:{ssh_port} root@{}",
            me.user.username,
            login_target(&inst)
        ),
        proxy: app.config.proxy.enabled && app.proxy_ports.get().is_some(),
        may_open,
        services,
        running: inst.status == InstanceStatus::Running,
    })
}

/// Restricts the ports of instance `id` that may be forwarded (`""`: all).
pub async fn set_forward_ports(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    text: &str,
    src: &Source,
) -> Result<String, AppError> {
    let rule = PortRule::parse(text).map_err(|why| {
        AppError::Validation(FieldErrors::from([(
            "ports",
            FieldError::with_detail("err.ports", why),
        )]))
    })?;
    let inst = crate::instances::get(app, me, id).await?;
    let canonical = rule.to_string();
    let (actor, src, text) = (me.actor(), src.clone(), canonical.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store::set_forward_ports(&tx, id, &text, crate::db::now())?;
            let detail = json!({"instance": inst.name, "ports": if text.is_empty() { "all" } else { &text }});
            audit::append(
                &tx,
                &audit::Event::new(&actor, &src, "forward.ports", "instance")
                    .id(id)
                    .detail(detail),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    Ok(canonical)
}

/// What turning web access on asks for.
pub struct NewService {
    pub port: u16,
    pub name: String,
}

/// Checks a form's or body's port and name (an empty name: the preset's).
pub fn new_service(port: Option<&serde_json::Value>, name: &str) -> Result<NewService, AppError> {
    let mut e = FieldErrors::new();
    let given =
        port.is_some_and(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()));
    let port = crate::validate::int_field(&mut e, "port", port, 0, 65535);
    if !given {
        e.insert("port", FieldError::new("err.required"));
    } else if port == 0 && !e.contains_key("port") {
        e.insert(
            "port",
            FieldError::with_detail("err.out_of_range", "1..65535"),
        );
    }
    let name = crate::validate::optional_text(&mut e, "name", name, 40);
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let port = u16::try_from(port).unwrap_or_default();
    let name = if name.is_empty() {
        model::default_name(port)
    } else {
        name
    };
    Ok(NewService { port, name })
}

/// Turns web access on for a port of instance `id`.
pub async fn enable_web(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    new: NewService,
    src: &Source,
) -> Result<WebService, AppError> {
    if !app.config.proxy.enabled {
        return Err(AppError::Conflict(FieldErrors::from([(
            "port",
            FieldError::new("err.proxy_off"),
        )])));
    }
    let inst = crate::instances::get(app, me, id).await?;
    let slots = port_mode(app).then_some(app.config.proxy.ports);
    let (actor, src, by) = (me.actor(), src.clone(), me.user.id.0);
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if store::service(&tx, id, new.port)?.is_some() {
                return Err(AppError::Conflict(FieldErrors::from([(
                    "port",
                    FieldError::new("err.web_on_already"),
                )])));
            }
            let now = crate::db::now();
            let Some(s) = store::insert_service(&tx, id, new.port, &new.name, slots, by, now)?
            else {
                return Err(AppError::Conflict(FieldErrors::from([(
                    "port",
                    FieldError::new("err.proxy_ports_full"),
                )])));
            };
            let detail = json!({"instance": inst.name, "port": new.port, "name": new.name});
            audit::append(
                &tx,
                &audit::Event::new(&actor, &src, "web.enable", "instance")
                    .id(id)
                    .detail(detail),
            )?;
            tx.commit()?;
            Ok(s)
        })
        .await
}

/// Turns web access off for a port of instance `id`: its sign-ins to the
/// proxy go with it, and open connections to it end within seconds.
pub async fn disable_web(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    port: u16,
    src: &Source,
) -> Result<(), AppError> {
    let inst = crate::instances::get(app, me, id).await?;
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !store::delete_service(&tx, id, port)? {
                return Err(AppError::NotFound);
            }
            let detail = json!({"instance": inst.name, "port": port});
            audit::append(
                &tx,
                &audit::Event::new(&actor, &src, "web.disable", "instance")
                    .id(id)
                    .detail(detail),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await
}

/// Audits a refused attempt to reach a port (a denial: another tenant's
/// instance, a port the rule forbids, a target that is not the instance).
pub async fn audit_denied(
    app: &App,
    actor: crate::audit::Actor,
    src: &Source,
    via: &str,
    detail: serde_json::Value,
) {
    let via = via.to_string();
    let r = audit::record(&app.db, actor, src.clone(), move |a, s| {
        audit::Event::new(a, s, "forward.denied", "instance")
            .outcome(Outcome::Denied)
            .detail(json!({"via": via, "detail": detail}))
    })
    .await;
    if let Err(e) = r {
        log::error!("auditing a refused forward: {e}");
    }
}
