//! SSH to a compute node with its stored credentials: the private IP and
//! SSH port, the username and the sealed password. The node's host key is
//! pinned on the first successful sign-in and every later connection must
//! present the same key; an admin who knows the node was reinstalled forgets
//! the pin (audited). Capabilities that act on a node over SSH (opening
//! accounts) connect through here.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use russh::keys::PublicKey;
use serde::Serialize;
use serde_json::json;

use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::auth::CurrentUser;
use crate::error::{AppError, RemoteFailure};
use crate::ids::NodeId;
use crate::secrets::Secret;
use crate::sshclient::{self, SshError, Target};

/// A node's pinned SSH host key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PinnedKey {
    pub algorithm: String,
    pub public_key: String,
    pub fingerprint: String,
    pub pinned_at: i64,
}

impl PinnedKey {
    fn parse(&self) -> Result<PublicKey, AppError> {
        PublicKey::from_openssh(&self.public_key).map_err(AppError::internal)
    }
}

/// Why SSH to a node failed, in the classes an admin acts on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeSshError {
    /// The node lacks its SSH username or password.
    #[error("the node has no SSH {0}: set it on the node page")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    App(#[from] AppError),
}

/// The class of an SSH failure: the network's (cannot reach the node, the
/// connection broke) or the host's authentication (wrong password, changed
/// host key).
pub fn failure_of(e: &SshError) -> RemoteFailure {
    match e {
        SshError::Connect { .. } | SshError::Timeout { .. } | SshError::Protocol(_) => {
            RemoteFailure::Network
        }
        SshError::HostKeyChanged { .. } | SshError::AuthRejected { .. } => RemoteFailure::HostAuth,
    }
}

impl NodeSshError {
    /// The class of the failure; `None` for an internal error.
    pub fn kind(&self) -> Option<RemoteFailure> {
        match self {
            NodeSshError::NotConfigured(_) => Some(RemoteFailure::HostAuth),
            NodeSshError::Ssh(e) => Some(failure_of(e)),
            NodeSshError::App(_) => None,
        }
    }
}

impl From<NodeSshError> for AppError {
    fn from(e: NodeSshError) -> Self {
        match (e.kind(), e) {
            (_, NodeSshError::App(e)) => e,
            (Some(kind), e) => AppError::Remote {
                kind,
                detail: e.to_string(),
            },
            (None, e) => AppError::internal(e),
        }
    }
}

/// What connecting needs, read in one query.
struct Credentials {
    name: String,
    target: Target,
    password: Option<Vec<u8>>,
    pinned: Option<PinnedKey>,
}

fn pinned_row(conn: &Connection, node: NodeId) -> rusqlite::Result<Option<PinnedKey>> {
    conn.query_row(
        "SELECT algorithm, public_key, fingerprint, pinned_at FROM node_ssh_host_keys WHERE node_id = ?1",
        [node],
        |r| {
            Ok(PinnedKey {
                algorithm: r.get(0)?,
                public_key: r.get(1)?,
                fingerprint: r.get(2)?,
                pinned_at: r.get(3)?,
            })
        },
    )
    .optional()
}

fn credentials(conn: &Connection, node: NodeId) -> rusqlite::Result<Option<Credentials>> {
    let row = conn
        .query_row(
            "SELECT name, private_ip, ssh_port, username, password_sealed FROM nodes WHERE id = ?1",
            [node],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((name, host, port, username, password)) = row else {
        return Ok(None);
    };
    Ok(Some(Credentials {
        name,
        target: Target {
            host,
            port: u16::try_from(port).unwrap_or(22),
            username,
        },
        password,
        pinned: pinned_row(conn, node)?,
    }))
}

/// The node's pinned host key, if any. 404 when the node does not exist.
pub async fn host_key(app: &App, node: NodeId) -> Result<Option<PinnedKey>, AppError> {
    app.db
        .read(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM nodes WHERE id = ?1)",
                [node],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(AppError::NotFound);
            }
            pinned_row(c, node).map_err(AppError::from)
        })
        .await
}

fn timeout(app: &App) -> Duration {
    Duration::from_secs(app.config.nodes.ssh_timeout_secs)
}

/// An authenticated connection to a node as its admin user.
pub struct NodeSession {
    pub session: sshclient::Session,
    pub node_name: String,
    /// Who gpudock signs in as on the node.
    pub username: String,
    /// Whether this connection pinned the host key (first use).
    pub pinned_now: bool,
    pub fingerprint: String,
}

/// Signs in to `node` as its configured user. On the first success the
/// presented host key is pinned (audited as `node.ssh_host_key_pin` for
/// `actor`); later connections must present the same key.
pub async fn connect(
    app: &App,
    node: NodeId,
    actor: &Actor,
    src: &Source,
) -> Result<NodeSession, NodeSshError> {
    let creds = app
        .db
        .read(move |c| credentials(c, node).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    if creds.target.username.is_empty() {
        return Err(NodeSshError::NotConfigured("username"));
    }
    let sealed = creds
        .password
        .ok_or(NodeSshError::NotConfigured("password"))?;
    let opened = app.sealer.unseal(&sealed).map_err(AppError::from)?;
    let password = Secret::new(String::from_utf8_lossy(opened.expose()).into_owned());
    let pinned = creds.pinned.as_ref().map(PinnedKey::parse).transpose()?;
    let session =
        sshclient::connect(&creds.target, &password, pinned.as_ref(), timeout(app)).await?;
    let fingerprint = sshclient::fingerprint(&session.host_key);
    let pinned_now = pinned.is_none();
    if pinned_now {
        pin(app, node, &session.host_key, actor, src).await?;
    }
    Ok(NodeSession {
        session,
        node_name: creds.name,
        username: creds.target.username,
        pinned_now,
        fingerprint,
    })
}

/// Stores `key` as the node's pin unless another connection pinned one in
/// the meantime, which must then be the same key.
async fn pin(
    app: &App,
    node: NodeId,
    key: &PublicKey,
    actor: &Actor,
    src: &Source,
) -> Result<(), NodeSshError> {
    let public_key = key.to_openssh().map_err(AppError::internal)?;
    let p = PinnedKey {
        algorithm: key.algorithm().as_str().to_string(),
        public_key,
        fingerprint: sshclient::fingerprint(key),
        pinned_at: crate::db::now(),
    };
    let (actor, src, p2) = (actor.clone(), src.clone(), p.clone());
    let stored = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(existing) = pinned_row(&tx, node)? {
                return Ok::<_, AppError>(existing);
            }
            tx.execute(
                "INSERT INTO node_ssh_host_keys (node_id, algorithm, public_key, fingerprint, pinned_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![node, p2.algorithm, p2.public_key, p2.fingerprint, p2.pinned_at],
            )?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "node.ssh_host_key_pin", "node")
                    .id(node)
                    .detail(json!({"algorithm": p2.algorithm, "fingerprint": p2.fingerprint})),
            )?;
            tx.commit()?;
            Ok(p2)
        })
        .await?;
    if stored.public_key != p.public_key {
        return Err(NodeSshError::Ssh(SshError::HostKeyChanged {
            addr: format!("node {node}"),
            pinned: stored.fingerprint,
            presented: p.fingerprint,
        }));
    }
    Ok(())
}

/// Signs in to `node` (its private IP and SSH port) as another user, e.g. a
/// freshly created account, checking the pinned host key.
pub async fn connect_as(
    app: &App,
    node: NodeId,
    username: &str,
    password: &Secret<String>,
) -> Result<sshclient::Session, NodeSshError> {
    let creds = app
        .db
        .read(move |c| credentials(c, node).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    let pinned = creds.pinned.as_ref().map(PinnedKey::parse).transpose()?;
    let target = Target {
        username: username.to_string(),
        ..creds.target
    };
    Ok(sshclient::connect(&target, password, pinned.as_ref(), timeout(app)).await?)
}

/// Forgets the node's pinned host key (the next connection pins anew).
/// Returns whether one was pinned.
pub async fn forget(
    app: &App,
    me: &CurrentUser,
    node: NodeId,
    src: &Source,
) -> Result<bool, AppError> {
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM nodes WHERE id = ?1)",
                [node],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(AppError::NotFound);
            }
            let Some(old) = pinned_row(&tx, node)? else {
                return Ok(false);
            };
            tx.execute("DELETE FROM node_ssh_host_keys WHERE node_id = ?1", [node])?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "node.ssh_host_key_forget", "node")
                    .id(node)
                    .detail(json!({"fingerprint": old.fingerprint})),
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
}

/// The outcome of Test SSH.
#[derive(Debug, Clone, Serialize)]
pub struct SshTestResult {
    pub ok: bool,
    /// `network`, `host_auth`, `permission_denied` when not ok.
    pub error_kind: Option<RemoteFailure>,
    pub error: Option<String>,
    pub username: String,
    /// Whether the user is root or may use sudo without a password (needed
    /// to manage accounts).
    pub privileged: bool,
    pub fingerprint: Option<String>,
    pub pinned_now: bool,
    pub elapsed_ms: u128,
}

/// The prefix that runs a command with root rights for the node's user:
/// none for root, `sudo -n ` for a user with passwordless sudo; `None` when
/// the user has neither.
pub async fn privilege(session: &sshclient::Session) -> Result<Option<&'static str>, SshError> {
    let id = session.exec("id -u", None).await?;
    if id.out() == "0" {
        return Ok(Some(""));
    }
    let sudo = session.exec("sudo -n true", None).await?;
    Ok(sudo.success().then_some("sudo -n "))
}

/// Test SSH: sign in (pinning on first use), check the rights; audited.
pub async fn test(
    app: &App,
    me: &CurrentUser,
    node: NodeId,
    src: &Source,
) -> Result<SshTestResult, AppError> {
    crate::nodes::get(app, node).await?;
    let started = Instant::now();
    let actor = me.actor();
    let mut result = SshTestResult {
        ok: false,
        error_kind: None,
        error: None,
        username: String::new(),
        privileged: false,
        fingerprint: None,
        pinned_now: false,
        elapsed_ms: 0,
    };
    match connect(app, node, &actor, src).await {
        Ok(s) => {
            result.username = s.username.clone();
            result.fingerprint = Some(s.fingerprint.clone());
            result.pinned_now = s.pinned_now;
            match privilege(&s.session).await {
                Ok(Some(_)) => {
                    result.ok = true;
                    result.privileged = true;
                }
                Ok(None) => {
                    result.error_kind = Some(RemoteFailure::PermissionDenied);
                    result.error = Some(format!(
                        "{} is not root and cannot use sudo without a password",
                        s.username
                    ));
                }
                Err(e) => {
                    result.error_kind = Some(failure_of(&e));
                    result.error = Some(e.to_string());
                }
            }
            s.session.close().await;
        }
        Err(NodeSshError::App(e)) => return Err(e),
        Err(e) => {
            result.error_kind = e.kind();
            result.error = Some(e.to_string());
        }
    }
    result.elapsed_ms = started.elapsed().as_millis();
    let outcome = if result.ok {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let detail = json!({
        "error_kind": result.error_kind, "error": result.error, "username": result.username,
        "fingerprint": result.fingerprint, "ms": result.elapsed_ms,
    });
    audit::record(&app.db, actor, src.clone(), move |a, s| {
        Event::new(a, s, "node.ssh_test", "node")
            .id(node)
            .outcome(outcome)
            .detail(detail)
    })
    .await?;
    Ok(result)
}
