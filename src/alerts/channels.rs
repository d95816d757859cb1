//! Notification channels as the API and pages manage them: create, change
//! (the secret kept unless a new one is given), delete, send a test
//! message, read the delivery log. Secrets (and URLs that carry a robot's
//! token) are sealed before they are stored and never shown in full.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::manage::By;
use super::model::{Level, RuleId};
use super::notify::{self, Event, Notice};
use super::sealed;
use super::send::{Kind, Security, Settings};
use super::store::{self, DeliveryRow};
use crate::audit::{self, Event as AuditEvent};
use crate::db::Db;
use crate::error::{AppError, FieldError, FieldErrors};
use crate::i18n::{Lang, Tr};
use crate::ids::Scope;
use crate::secrets::Sealer;

/// A channel as submitted. `kind` is fixed at creation; on a change an
/// absent (or empty) `secret` keeps the stored one, and so does a token
/// URL left as shown (masked) or empty. Kind-specific fields sit beside the
/// common ones: e-mail `host`, `port`, `security` (none / starttls / tls),
/// `user`, `password` (or `secret`), `from`, `to` (addresses); Telegram
/// `chat_id` (the `secret` is the bot token, the `url` the Bot API server,
/// https://api.telegram.org when empty); every kind `language` (zh-CN, en)
/// and, for the HTTP kinds, `proxy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChannelIn {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret: Option<String>,
    pub enabled: Option<Value>,
    pub host: String,
    pub port: Option<Value>,
    pub security: String,
    pub user: String,
    pub password: Option<String>,
    pub from: String,
    /// An array of addresses, or one text with addresses separated by
    /// commas or new lines.
    pub to: Option<Value>,
    pub chat_id: String,
    pub language: String,
    pub proxy: String,
    /// The tenant whose own channel this is (admins may set it; a customer
    /// owner's channels are always their tenant's).
    pub tenant_id: Option<i64>,
}

/// A channel as shown: never its secret, a token URL masked, a proxy's
/// password masked.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub enabled: bool,
    pub has_secret: bool,
    #[serde(flatten)]
    pub settings: Settings,
    pub proxy: String,
    /// A customer's own channel: its tenant (None: the lab's).
    pub tenant_id: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ChannelView {
    /// The recipients as a form shows them.
    pub fn to_text(&self) -> String {
        self.settings.to.join(", ")
    }
    pub fn security(&self) -> &'static str {
        match self.settings.security.unwrap_or_default() {
            Security::None => "none",
            Security::Starttls => "starttls",
            Security::Tls => "tls",
        }
    }
    pub fn port_text(&self) -> String {
        self.settings
            .port
            .map(|p| p.to_string())
            .unwrap_or_default()
    }
}

/// Every kind of channel.
pub const KINDS: &[&str] = &[
    "webhook", "email", "dingtalk", "wecom", "feishu", "slack", "telegram",
];

/// The kinds a customer owner's own channel may be.
pub const CUSTOMER_KINDS: &[&str] = &["webhook", "email"];

/// The kinds `scope` may create (one rule for the API and the form), and
/// whether it may set a proxy: the lab's administrators only.
pub fn kinds_for(scope: Scope) -> (&'static [&'static str], bool) {
    match scope {
        Scope::All => (KINDS, true),
        Scope::Tenant(_) | Scope::User(..) => (CUSTOMER_KINDS, false),
    }
}

/// The Bot API server a Telegram channel without a URL uses.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

struct Valid {
    name: String,
    kind: Kind,
    url: String,
    secret: Option<String>,
    enabled: bool,
    settings: Settings,
    proxy: String,
}

/// A refused field: what is wrong (an i18n key).
fn field(errors: &mut FieldErrors, name: &'static str, key: &'static str) {
    errors.insert(name, FieldError::new(key));
}

fn addresses(errors: &mut FieldErrors, to: Option<&Value>) -> Vec<String> {
    let list: Vec<String> = match to {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split([',', '\n', ';']).map(str::to_string).collect(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => {
            field(errors, "to", "err.ch_to_list");
            return Vec::new();
        }
    };
    let list: Vec<String> = list
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if list.is_empty() {
        field(errors, "to", "err.ch_to_empty");
    }
    for a in &list {
        if a.parse::<lettre::Address>().is_err() || a.chars().any(char::is_control) {
            errors.insert("to", FieldError::with_detail("err.ch_not_email", a.clone()));
        }
    }
    list
}

fn email_settings(errors: &mut FieldErrors, input: &ChannelIn) -> Settings {
    let host = crate::validate::required_text(errors, "host", &input.host, 253);
    let port = match &input.port {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|n| (1..=65535).contains(n));
            match (n, v.as_str().map(str::trim)) {
                (_, Some("")) => None,
                (Some(n), _) => u16::try_from(n).ok(),
                (None, _) => {
                    field(errors, "port", "err.ch_port");
                    None
                }
            }
        }
    };
    let security = match input.security.trim() {
        "" | "starttls" => Security::Starttls,
        "none" => Security::None,
        "tls" => Security::Tls,
        _ => {
            errors.insert(
                "security",
                FieldError::with_detail("err.one_of", "none, starttls, tls"),
            );
            Security::Starttls
        }
    };
    let user = crate::validate::optional_text(errors, "user", &input.user, 200);
    let from = crate::validate::required_text(errors, "from", &input.from, 300);
    if !from.is_empty() && from.parse::<lettre::message::Mailbox>().is_err() {
        field(errors, "from", "err.ch_from");
    }
    let to = addresses(errors, input.to.as_ref());
    Settings {
        host,
        port,
        security: Some(security),
        user,
        from,
        to,
        ..Settings::default()
    }
}

fn validate(input: &ChannelIn, creating: bool) -> Result<Valid, AppError> {
    let mut errors = FieldErrors::new();
    let name = crate::validate::required_text(&mut errors, "name", &input.name, 100);
    let kind = Kind::parse(input.kind.trim());
    if kind.is_none() {
        errors.insert(
            "kind",
            FieldError::with_detail("err.one_of", KINDS.join(", ")),
        );
    }
    let kind = kind.unwrap_or(Kind::Webhook);
    let url = match kind {
        Kind::Email => String::new(),
        Kind::Telegram => {
            let u = crate::validate::optional_text(&mut errors, "url", &input.url, 2000);
            if u.is_empty() {
                TELEGRAM_API.to_string()
            } else {
                u
            }
        }
        _ if !creating && kind.url_is_secret() && input.url.trim().is_empty() => String::new(),
        _ => crate::validate::required_text(&mut errors, "url", &input.url, 2000),
    };
    if !url.is_empty() && notify::valid_url(&url).is_err() {
        errors.insert("url", FieldError::new("err.alert_url"));
    }
    let secret = input
        .secret
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| input.password.clone().filter(|s| !s.is_empty()));
    if secret
        .as_deref()
        .is_some_and(|s| s.chars().any(char::is_control))
    {
        errors.insert("secret", FieldError::new("err.alert_secret"));
    }
    let needs_secret = match kind {
        Kind::Webhook | Kind::DingTalk | Kind::Feishu | Kind::Telegram => true,
        Kind::Email => !input.user.trim().is_empty(),
        Kind::WeCom | Kind::Slack => false,
    };
    match &secret {
        Some(s) if kind == Kind::Webhook && s.chars().count() < 16 => {
            errors.insert("secret", FieldError::new("err.alert_secret"));
        }
        Some(s) if kind == Kind::Telegram && !valid_bot_token(s) => {
            field(&mut errors, "secret", "a bot token such as 123456:ABC-DEF…");
        }
        None if creating && needs_secret => {
            let key = if kind == Kind::Email {
                "password"
            } else {
                "secret"
            };
            errors.insert(key, FieldError::new("err.alert_secret"));
        }
        _ => {}
    }
    let mut settings = match kind {
        Kind::Email => email_settings(&mut errors, input),
        Kind::Telegram => {
            let chat = crate::validate::required_text(&mut errors, "chat_id", &input.chat_id, 100);
            if chat.contains(char::is_whitespace) {
                field(&mut errors, "chat_id", "err.ch_chat_id");
            }
            Settings {
                chat_id: chat,
                ..Settings::default()
            }
        }
        _ => Settings::default(),
    };
    settings.language = match input.language.trim() {
        "" => String::new(),
        l => match Lang::parse(l) {
            Some(l) => l.code().to_string(),
            None => {
                field(&mut errors, "language", "zh-CN or en");
                String::new()
            }
        },
    };
    let proxy = crate::validate::optional_text(&mut errors, "proxy", &input.proxy, 500);
    if !proxy.is_empty() {
        if kind == Kind::Email {
            field(&mut errors, "proxy", "err.ch_no_proxy_mail");
        } else if notify::valid_url(&proxy).is_err() {
            errors.insert("proxy", FieldError::new("err.alert_url"));
        }
    }
    let enabled = crate::validate::bool_field(&mut errors, "enabled", input.enabled.as_ref(), true);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    Ok(Valid {
        name,
        kind,
        url: url.trim().to_string(),
        secret,
        enabled,
        settings,
        proxy,
    })
}

fn valid_bot_token(s: &str) -> bool {
    s.split_once(':').is_some_and(|(id, key)| {
        !id.is_empty()
            && id.chars().all(|c| c.is_ascii_digit())
            && !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// The tenant filter of a scope: None for admins (every channel), the
/// tenant for a customer owner, and one that matches nothing for anyone
/// else (fails closed).
fn owner(scope: Scope) -> Option<i64> {
    match scope {
        Scope::All => None,
        Scope::Tenant(t) => Some(t.0),
        Scope::User(..) => Some(-1),
    }
}

fn views(c: &Connection, only: Option<i64>, scope: Scope) -> rusqlite::Result<Vec<ChannelView>> {
    c.prepare_cached(
        "SELECT id, name, kind, url, enabled, length(secret_sealed) > 0, created_by, created_at,
                updated_at, settings, proxy, tenant_id
         FROM notification_channels WHERE (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR tenant_id = ?2)
         ORDER BY id",
    )?
    .query_map(params![only, owner(scope)], |r| {
        let settings: String = r.get(9)?;
        let proxy: String = r.get(10)?;
        Ok(ChannelView {
            id: r.get(0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            url: r.get(3)?,
            enabled: r.get(4)?,
            has_secret: r.get(5)?,
            created_by: r.get(6)?,
            created_at: r.get(7)?,
            updated_at: r.get(8)?,
            settings: serde_json::from_str(&settings).unwrap_or_default(),
            proxy: sealed::masked_proxy(&proxy),
            tenant_id: r.get(11)?,
        })
    })?
    .collect()
}

/// The channels `scope` reaches (a customer owner: their tenant's own).
pub async fn list(db: &Db, scope: Scope) -> Result<Vec<ChannelView>, AppError> {
    db.read(move |c| views(c, None, scope).map_err(AppError::from))
        .await
}

/// One channel `scope` reaches; not found otherwise.
pub async fn get(db: &Db, scope: Scope, id: i64) -> Result<ChannelView, AppError> {
    db.read(move |c| views(c, Some(id), scope).map_err(AppError::from))
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)
}

fn audit(
    tx: &rusqlite::Transaction<'_>,
    by: &By,
    action: &str,
    id: i64,
    d: Value,
) -> Result<(), AppError> {
    let e = AuditEvent::new(&by.actor, &by.source, action, "notification_channel");
    audit::append(tx, &e.id(id).detail(d))?;
    Ok(())
}

fn settings_json(s: &Settings) -> Result<String, AppError> {
    serde_json::to_string(s).map_err(|e| AppError::Internal(e.to_string()))
}

/// A host of this machine or of a private network, named literally: a
/// customer's channel may not make the appliance send there (its own
/// services, the nodes' agents, the lab's LAN).
fn internal_host(host: &str) -> bool {
    use std::net::IpAddr;
    let h = host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") || h.is_empty() {
        return true;
    }
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64
        }
        Ok(IpAddr::V6(a)) => {
            let seg = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (seg & 0xfe00) == 0xfc00
                || (seg & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped()
                    .is_some_and(|m| internal_host(&m.to_string()))
        }
        Err(_) => false,
    }
}

/// What a customer owner's channel may be: their tenant's, an e-mail or a
/// webhook, no proxy, to no internal host. Admins may give any channel to
/// a tenant that exists.
async fn owner_of(db: &Db, scope: Scope, input: &ChannelIn) -> Result<Option<i64>, AppError> {
    let mut errors = FieldErrors::new();
    let tenant = match scope {
        Scope::All => input.tenant_id,
        Scope::Tenant(t) => {
            let (kinds, proxy_allowed) = kinds_for(scope);
            if !kinds.contains(&input.kind.trim()) {
                field(&mut errors, "kind", "one of: email, webhook");
            }
            if !proxy_allowed && !input.proxy.trim().is_empty() {
                field(&mut errors, "proxy", "set by the lab's administrators only");
            }
            let url_host = url::Url::parse(input.url.trim())
                .ok()
                .and_then(|u| u.host_str().map(str::to_string));
            if url_host.is_some_and(|h| internal_host(&h)) {
                field(&mut errors, "url", "err.ch_internal_url");
            }
            if input.kind.trim() == "email" && internal_host(&input.host) {
                field(&mut errors, "host", "err.ch_internal_host");
            }
            if input.tenant_id.is_some_and(|x| x != t.0) {
                field(&mut errors, "tenant_id", "your own tenant only");
            }
            Some(t.0)
        }
        Scope::User(..) => return Err(AppError::Forbidden),
    };
    if let (Scope::All, Some(t)) = (scope, tenant) {
        let exists = db
            .read(move |c| {
                c.query_row("SELECT 1 FROM tenants WHERE id = ?1", [t], |_| Ok(()))
                    .optional()
                    .map_err(AppError::from)
            })
            .await?;
        if exists.is_none() {
            field(&mut errors, "tenant_id", "no such tenant");
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    Ok(tenant)
}

/// Creates a channel in `scope` (a customer owner's is their tenant's);
/// returns it.
pub async fn create(
    db: &Db,
    sealer: &Sealer,
    by: By,
    scope: Scope,
    input: ChannelIn,
) -> Result<ChannelView, AppError> {
    let tenant = owner_of(db, scope, &input).await?;
    let v = validate(&input, true)?;
    let sealed = sealer.seal(v.secret.as_deref().unwrap_or_default().as_bytes())?;
    let (url, url_sealed) = sealed::url(sealer, v.kind, &v.url)?;
    let (proxy, proxy_sealed) = sealed::proxy(sealer, &v.proxy)?;
    let settings = settings_json(&v.settings)?;
    let id = db
        .write(move |c| {
            let tx = c.transaction()?;
            let now = crate::db::now();
            let id: i64 = tx
                .query_row(
                    "INSERT INTO notification_channels (name, kind, url, url_sealed, secret_sealed,
                         settings, proxy, enabled, created_by, created_at, updated_at, tenant_id,
                         proxy_sealed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12) RETURNING id",
                    params![
                        v.name,
                        v.kind,
                        url,
                        url_sealed,
                        sealed,
                        settings,
                        proxy,
                        v.enabled,
                        by.actor.id.map(|u| u.0),
                        now,
                        tenant,
                        proxy_sealed
                    ],
                    |r| r.get(0),
                )
                .map_err(crate::error::on_unique("name"))?;
            let d = json!({"name": v.name, "kind": v.kind, "url": url, "enabled": v.enabled,
                           "settings": v.settings, "proxy": proxy, "tenant_id": tenant});
            audit(&tx, &by, "notification_channel.create", id, d)?;
            tx.commit()?;
            Ok::<_, AppError>(id)
        })
        .await?;
    get(db, scope, id).await
}

/// Changes a channel (its kind stays); a new secret replaces the old one, a
/// token URL or proxy given back as shown (masked) keeps the stored one.
pub async fn update(
    db: &Db,
    sealer: &Sealer,
    by: By,
    scope: Scope,
    id: i64,
    input: ChannelIn,
) -> Result<ChannelView, AppError> {
    let cur = get(db, scope, id).await?;
    if input.kind.trim() != cur.kind {
        return Err(AppError::Validation(FieldErrors::from([(
            "kind",
            FieldError::new("err.ch_kind_fixed"),
        )])));
    }
    let mut input = input;
    // a channel stays whose it is
    input.tenant_id = cur.tenant_id;
    owner_of(db, scope, &input).await?;
    let kind = Kind::parse(&cur.kind).unwrap_or(Kind::Webhook);
    let keep_url =
        kind.url_is_secret() && (input.url.trim().is_empty() || input.url.trim() == cur.url);
    if keep_url {
        input.url = String::new();
    }
    let keep_proxy = !cur.proxy.is_empty() && input.proxy.trim() == cur.proxy;
    if keep_proxy {
        input.proxy = String::new();
    }
    let v = validate(&input, false)?;
    let sealed = match &v.secret {
        Some(s) => Some(sealer.seal(s.as_bytes())?),
        None => None,
    };
    let (url, url_sealed) = match keep_url {
        true => (None, None),
        false => {
            let (u, s) = sealed::url(sealer, kind, &v.url)?;
            (Some(u), s)
        }
    };
    let (proxy, proxy_sealed) = match keep_proxy {
        true => (None, None),
        false => {
            let (p, s) = sealed::proxy(sealer, &v.proxy)?;
            (Some(p), s)
        }
    };
    let settings = settings_json(&v.settings)?;
    db.write(move |c| {
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE notification_channels SET name = ?2, url = COALESCE(?3, url),
                 url_sealed = CASE WHEN ?3 IS NULL THEN url_sealed ELSE ?4 END, enabled = ?5,
                 secret_sealed = COALESCE(?6, secret_sealed), settings = ?7,
                 proxy = COALESCE(?8, proxy), updated_at = ?9,
                 proxy_sealed = CASE WHEN ?8 IS NULL THEN proxy_sealed ELSE ?10 END WHERE id = ?1",
            params![
                id,
                v.name,
                url,
                url_sealed,
                v.enabled,
                sealed,
                settings,
                proxy,
                crate::db::now(),
                proxy_sealed
            ],
        )
        .map_err(crate::error::on_unique("name"))?;
        let d = json!({"name": v.name, "url": url, "enabled": v.enabled,
                       "settings": v.settings, "proxy": proxy,
                       "secret_changed": sealed.is_some()});
        audit(&tx, &by, "notification_channel.update", id, d)?;
        tx.commit()?;
        Ok::<_, AppError>(())
    })
    .await?;
    get(db, scope, id).await
}

pub async fn delete(db: &Db, by: By, scope: Scope, id: i64) -> Result<(), AppError> {
    get(db, scope, id).await?;
    db.write(move |c| {
        let tx = c.transaction()?;
        let name: String = tx
            .query_row(
                "DELETE FROM notification_channels WHERE id = ?1 RETURNING name",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(AppError::NotFound)?;
        audit(
            &tx,
            &by,
            "notification_channel.delete",
            id,
            json!({ "name": name }),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await
}

/// The delivery log of a channel, newest first (at most 200 rows).
pub async fn deliveries(db: &Db, scope: Scope, id: i64) -> Result<Vec<DeliveryRow>, AppError> {
    get(db, scope, id).await?;
    let mut rows = db
        .read(move |c| store::deliveries(c, id).map_err(AppError::from))
        .await?;
    rows.reverse();
    rows.truncate(200);
    Ok(rows)
}

/// What a test message did.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub sent: bool,
    /// This test's tries, in order.
    pub tries: Vec<DeliveryRow>,
}

/// Sends a test message to a channel now, with the retries and log of a
/// real one (the tries have no alert).
pub async fn test(
    db: &Db,
    sealer: Arc<Sealer>,
    by: By,
    scope: Scope,
    id: i64,
    backoff: Duration,
) -> Result<TestResult, AppError> {
    let ch = get(db, scope, id).await?;
    let row = db
        .read(move |c| store::sealed_channel(c, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    let before = db
        .read(move |c| store::deliveries(c, id).map_err(AppError::from))
        .await?
        .len();
    let s = notify::Sender {
        db: db.clone(),
        sealer: sealer.clone(),
        backoff,
    };
    let target = tokio::task::spawn_blocking(move || row.unseal(&sealer))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let lang = target.settings.lang();
    let now = crate::db::now();
    let notice = Notice {
        event: Event::Test,
        alert_id: 0,
        rule_id: RuleId(0),
        rule: String::new(),
        level: Level::P3,
        message: format!("{} {}", Tr::new(lang).t("alerts.msg_test_body"), ch.name),
        target: String::new(),
        node_id: None,
        instance_id: None,
        metric: String::new(),
        value: None,
        triggered_at: now,
        resolved_at: None,
        reason: None,
        group: None,
        tenant_id: None,
        facts: None,
    };
    let sent = notify::deliver(&s, &target, None, &notice).await;
    let tries = db
        .read(move |c| store::deliveries(c, id).map_err(AppError::from))
        .await?
        .split_off(before);
    let d = json!({ "sent": sent, "tries": tries.len() });
    db.write(move |c| {
        let tx = c.transaction()?;
        audit(&tx, &by, "notification_channel.test", id, d)?;
        tx.commit().map_err(AppError::from)
    })
    .await?;
    Ok(TestResult { sent, tries })
}
