//! The delivery desk (交付): connection summaries (连接信息摘要) of an
//! instance and of an opened account — what a delivery engineer copies with
//! one click (一键复制) and sends to the customer. Every address in them comes
//! from `web::public::PublicOrigin` (the configured public host, else the
//! address the browser used). Sending a summary by e-mail waits for the
//! notification channels.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;

use crate::accounts::Request;
use crate::app::App;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::i18n::Tr;
use crate::ids::InstanceId;
use crate::secrets::Secret;
use crate::web::extract::ApiPath;
use crate::web::public::PublicOrigin;

pub fn routes() -> Router<App> {
    Router::new().route("/api/v1/instances/{id}/connection", get(instance_api))
}

/// Labelled lines, rendered as plain text in the reader's language.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub lines: Vec<(&'static str, String)>,
}

impl Summary {
    pub fn text(&self, tr: &Tr) -> String {
        self.lines
            .iter()
            .map(|(k, v)| format!("{}: {v}", tr.t(k)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How to reach an instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceConnection {
    pub instance_id: InstanceId,
    pub instance: String,
    /// The instance's page.
    pub web_url: String,
    pub terminal_url: String,
    /// The gpudock user who owns the instance (the jumpbox login).
    pub username: String,
    pub ssh_host: String,
    pub ssh_port: u16,
    pub ssh_command: String,
    /// The jumpbox host key's SHA-256 fingerprint and algorithm.
    pub jumpbox_host_key: Option<String>,
    pub jumpbox_key_algorithm: Option<String>,
}

impl InstanceConnection {
    pub fn summary(&self) -> Summary {
        let mut lines = vec![
            ("delivery.instance", self.instance.clone()),
            ("delivery.web", self.web_url.clone()),
            ("delivery.terminal", self.terminal_url.clone()),
            ("delivery.username", self.username.clone()),
            ("delivery.ssh", self.ssh_command.clone()),
        ];
        if let (Some(fp), Some(alg)) = (&self.jumpbox_host_key, &self.jumpbox_key_algorithm) {
            lines.push(("delivery.jumpbox_key", format!("{fp} ({alg})")));
        }
        Summary { lines }
    }
}

/// The connection facts of instance `id` as the caller may see it.
pub async fn instance(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    origin: &PublicOrigin,
) -> Result<InstanceConnection, AppError> {
    let (i, n) = crate::instances::named(app, me, Some(id))
        .await?
        .pop()
        .ok_or(AppError::NotFound)?;
    let key = crate::jumpbox::hostkey::fingerprint(&app.config.data_dir);
    Ok(InstanceConnection {
        instance_id: i.id,
        web_url: origin.url(&format!("/instances/{}", i.id)),
        terminal_url: origin.url(&format!("/instances/{}/terminal", i.id)),
        ssh_command: format!(
            "ssh -p {} {}+{}@{}",
            origin.ssh_port, n.user, i.name, origin.ssh_host
        ),
        instance: i.name,
        username: n.user,
        ssh_host: origin.ssh_host.clone(),
        ssh_port: origin.ssh_port,
        jumpbox_key_algorithm: key.as_ref().map(|k| k.0.clone()),
        jumpbox_host_key: key.map(|k| k.1),
    })
}

async fn instance_api(
    State(app): State<App>,
    me: CurrentUser,
    origin: PublicOrigin,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<impl IntoResponse, AppError> {
    let c = instance(&app, &me, id, &origin).await?;
    let text = c.summary().text(&Tr::english());
    let mut v = serde_json::to_value(&c).map_err(AppError::internal)?;
    v["text"] = serde_json::Value::String(text);
    Ok(Json(v))
}

/// The summary of an opened account: the node's public address and SSH
/// port, the account, its host key, the request; the password only in the
/// one answer that reveals it.
pub async fn account(
    app: &App,
    r: &Request,
    origin: &PublicOrigin,
    password: Option<&Secret<String>>,
) -> Result<Summary, AppError> {
    let mut lines = vec![("delivery.node", r.target_host_name.clone())];
    if let Some(node) = r.target_host {
        let n = crate::nodes::get(app, node).await?;
        lines.push(("delivery.host", n.public_ip.clone()));
        lines.push(("delivery.port", n.ssh_port.to_string()));
        lines.push(("delivery.username", r.username.clone()));
        if let Some(p) = password {
            lines.push(("delivery.password", p.expose().clone()));
        }
        lines.push((
            "delivery.ssh",
            format!("ssh -p {} {}@{}", n.ssh_port, r.username, n.public_ip),
        ));
        if let Some(k) = crate::nodes::ssh::host_key(app, node).await? {
            lines.push((
                "delivery.host_key",
                format!("{} ({})", k.fingerprint, k.algorithm),
            ));
        }
    }
    lines.push((
        "delivery.request",
        origin.url(&format!("/operations/account-openings/{}/", r.id)),
    ));
    Ok(Summary { lines })
}
