//! Sending alerts to the channels of their rules (通知渠道). The engine
//! hands each announcement to a bounded queue and never waits for a
//! receiver; one owned task sends them, each to every enabled channel of
//! the rule, up to three tries with a growing pause, every try written to
//! the delivery log. Each kind's format is in [`send`]; a generic webhook
//! gets a JSON body signed with its channel's secret: `X-Gpudock-Signature`
//! is the lowercase hex HMAC-SHA256 of `X-Gpudock-Timestamp` followed by
//! the body.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::model::{Level, RuleId};
use super::recipients;
use super::send::{self, Channel};
use super::store;
use crate::db::Db;
use crate::error::AppError;
use crate::secrets::Sealer;

/// How many tries a delivery gets.
pub const TRIES: u32 = 3;
/// One try may take this long (connect, send, answer).
pub const TRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Announcements waiting for the sender; more are dropped (and logged).
const QUEUE: usize = 1024;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 16;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Fired,
    Repeated,
    Resolved,
    /// A channel's test message (no alert).
    Test,
}
crate::text_enum!(Event { Fired => "fired", Repeated => "repeated", Resolved => "resolved", Test => "test" });

/// One announcement of an alert, as every channel receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub event: Event,
    pub alert_id: i64,
    pub rule_id: RuleId,
    pub rule: String,
    pub level: Level,
    pub message: String,
    pub target: String,
    pub node_id: Option<i64>,
    pub instance_id: Option<i64>,
    pub metric: String,
    pub value: Option<f64>,
    pub triggered_at: i64,
    pub resolved_at: Option<i64>,
    /// Why it resolved, when it did.
    pub reason: Option<String>,
    /// A storm (告警收敛): this one message stands for several alerts of
    /// the rule (this one first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
    /// The tenant of the instance it is about (not sent): a storm groups
    /// only alerts of one tenant, since a tenant's own channels get it.
    #[serde(skip)]
    pub tenant_id: Option<i64>,
    /// The message's facts, for recipients of other languages (not sent:
    /// `message` is the English line).
    #[serde(skip)]
    pub facts: Option<super::facts::Facts>,
}

/// The alerts a storm's one message stands for.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub count: usize,
    pub alert_ids: Vec<i64>,
    pub targets: Vec<String>,
    /// The facts of the alerts spelled out (not sent).
    #[serde(skip)]
    pub facts: Vec<Option<super::facts::Facts>>,
}

/// The engine's side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notice>,
}

impl Notifier {
    /// Queues a notice; a full queue drops it with a log line rather than
    /// stalling the engine.
    pub fn send(&self, n: Notice) {
        if let Err(e) = self.tx.try_send(n) {
            log::error!("alert notifications: queue full or closed, one dropped: {e}");
        }
    }
}

/// The sender's parts: where it reads channels, how it unseals their
/// secrets, and the pause before the second try (doubled for the third).
pub struct Sender {
    pub db: Db,
    pub sealer: Arc<Sealer>,
    pub backoff: Duration,
}

/// Makes the queue and its sender task (owned by the caller, ended by
/// `cancel`: deliveries in flight get `TRY_TIMEOUT` to finish).
pub fn start(s: Sender, cancel: CancellationToken) -> (Notifier, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(Arc::new(s), rx, cancel));
    (Notifier { tx }, task)
}

async fn run(s: Arc<Sender>, mut rx: mpsc::Receiver<Notice>, cancel: CancellationToken) {
    let mut tasks = JoinSet::new();
    let mut closing = false;
    loop {
        while tasks.len() >= IN_FLIGHT {
            tasks.join_next().await;
        }
        // Once cancelled, what is already queued is still sent.
        let next = if closing {
            rx.recv().await
        } else {
            tokio::select! {
                _ = cancel.cancelled() => {
                    rx.close();
                    closing = true;
                    continue;
                }
                n = rx.recv() => n,
            }
        };
        let Some(notice) = next else { break };
        let s = s.clone();
        tasks.spawn(async move {
            if let Err(e) = deliver_all(&s, &notice).await {
                log::warn!("alert {} notification: {e}", notice.alert_id);
            }
        });
    }
    let ends = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(TRY_TIMEOUT, ends).await.is_err() {
        log::warn!("alert notifications still sending at shutdown were stopped");
        tasks.shutdown().await;
    }
}

/// Sends one notice to every enabled channel of its rule, and by e-mail
/// to the users it notifies who may see it, side by side.
async fn deliver_all(s: &Sender, n: &Notice) -> Result<(), AppError> {
    let (rule, alert) = (n.rule_id, n.alert_id);
    let alerts = n
        .group
        .as_ref()
        .map_or_else(|| vec![alert], |g| g.alert_ids.clone());
    let (rows, users, mail) =
        s.db.read(move |c| {
            let users = recipients::for_alerts(c, rule, &alerts)?;
            let mail = if users.is_empty() {
                Vec::new()
            } else {
                recipients::mail_channels(c, rule)?
            };
            Ok::<_, AppError>((store::channels_of(c, rule, alert)?, users, mail))
        })
        .await?;
    let sealer = s.sealer.clone();
    let (targets, mail) = tokio::task::spawn_blocking(move || {
        let unseal = |rows: Vec<store::SealedChannel>| {
            rows.into_iter()
                .map(|row| row.unseal(&sealer))
                .collect::<Result<Vec<_>, crate::secrets::SecretError>>()
        };
        Ok::<_, crate::secrets::SecretError>((unseal(rows)?, unseal(mail)?))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    let sends = targets.iter().map(|t| deliver(s, t, Some(alert), n));
    let mails = users.iter().map(|u| mail_user(s, &mail, u, n));
    futures_util::future::join(
        futures_util::future::join_all(sends),
        futures_util::future::join_all(mails),
    )
    .await;
    Ok(())
}

/// E-mails a notice to one user through the first lab e-mail channel that
/// delivers it.
async fn mail_user(s: &Sender, mail: &[Channel], to: &recipients::Recipient, n: &Notice) {
    for ch in mail {
        if deliver(s, &ch.addressed(&to.email, to.lang), Some(n.alert_id), n).await {
            return;
        }
    }
    log::warn!(
        "alert {}: user {} not reached by e-mail ({} mail channel(s))",
        n.alert_id,
        to.user_id,
        mail.len()
    );
}

/// Up to [`TRIES`] tries to one channel, each logged; true when one was
/// delivered.
pub async fn deliver(s: &Sender, t: &Channel, alert: Option<i64>, n: &Notice) -> bool {
    let mut pause = s.backoff;
    for attempt in 1..=TRIES {
        let tried = send::send(t, n, TRY_TIMEOUT).await;
        let ok = tried.error.is_none();
        let (status, error) = (tried.http_status, tried.error);
        let (channel, at) = (t.id, crate::db::now());
        let logged =
            s.db.write(move |c| {
                store::log_delivery(c, channel, alert, attempt, status, error.as_deref(), at)
                    .map_err(AppError::from)
            })
            .await;
        if let Err(e) = logged {
            log::error!("alert delivery log: {e}");
        }
        if ok {
            return true;
        }
        if attempt < TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    false
}

/// A notifier whose queue the caller reads (tests of what is sent).
#[cfg(test)]
pub(super) fn queue() -> (Notifier, mpsc::Receiver<Notice>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Notifier { tx }, rx)
}

/// The signature of a webhook body sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// TLS that verifies the receiver against this system's trusted roots.
pub(super) fn verified_tls() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("reading the system's trusted certificates: {e}");
    }
    roots.add_parsable_certificates(found.certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Checks a webhook URL: http or https with a host.
pub fn valid_url(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err("an http:// or https:// URL is needed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_of_timestamp_then_body() {
        // Recomputed independently: HMAC-SHA256(key "k", "1700000000{}").
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000{}");
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(signature(b"k", 1_700_000_000, b"{}"), want);
        assert_ne!(signature(b"k", 1_700_000_001, b"{}"), want);
    }

    #[test]
    fn only_http_urls_with_a_host() {
        assert!(valid_url("https://hooks.example.com/x").is_ok());
        assert!(valid_url("http://127.0.0.1:9/").is_ok());
        assert!(valid_url("ftp://example.com/").is_err());
        assert!(valid_url("file:///etc/passwd").is_err());
        assert!(valid_url("example.com").is_err());
    }
}
