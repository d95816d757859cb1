//! One try of one message to one channel, in that channel's own format:
//! the generic webhook (our JSON, `X-Gpudock-Signature`), e-mail over SMTP
//! (lettre), and the DingTalk, WeCom, Feishu, Slack and Telegram robots,
//! each with its vendor's published payload and signature. HTTP kinds go
//! through the channel's proxy when it has one; HTTPS always verifies the
//! receiver against the system's trusted roots.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::notify::{Event, Notice};
use crate::i18n::{Lang, Tr};

/// The kinds of channel (通知渠道).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Email,
    DingTalk,
    WeCom,
    Feishu,
    Slack,
    Telegram,
}
crate::text_enum!(Kind {
    Webhook => "webhook", Email => "email", DingTalk => "dingtalk", WeCom => "wecom",
    Feishu => "feishu", Slack => "slack", Telegram => "telegram",
});

impl Kind {
    /// Kinds whose URL carries the robot's token: it is stored sealed and
    /// shown masked.
    pub fn url_is_secret(self) -> bool {
        matches!(
            self,
            Kind::DingTalk | Kind::WeCom | Kind::Feishu | Kind::Slack
        )
    }
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain SMTP (a relay on a trusted network).
    None,
    /// Plain, then STARTTLS (required: refused if the server lacks it).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// A channel's plain (not secret) kind-specific fields, kept as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub chat_id: String,
    /// The language of the messages ("zh-CN" or "en"; zh-CN when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub language: String,
}

impl Settings {
    pub fn lang(&self) -> Lang {
        Lang::parse(&self.language).unwrap_or(Lang::ZhCn)
    }
}

/// A channel as the sender needs it (secrets unsealed).
pub struct Channel {
    pub id: i64,
    pub kind: Kind,
    /// The full URL (unsealed where it carries a token).
    pub url: String,
    pub secret: crate::secrets::Secret<Vec<u8>>,
    pub settings: Settings,
    /// An http:// proxy for the HTTP kinds ('' = none).
    pub proxy: String,
}

impl Channel {
    /// This e-mail channel addressed to one person, in their language.
    pub fn addressed(&self, to: &str, lang: Lang) -> Channel {
        Channel {
            id: self.id,
            kind: self.kind,
            url: self.url.clone(),
            secret: self.secret.clone(),
            settings: Settings {
                to: vec![to.to_string()],
                language: lang.code().to_string(),
                ..self.settings.clone()
            },
            proxy: self.proxy.clone(),
        }
    }
}

/// What one try did: the HTTP status where there was one, and why it
/// failed when it did (None: delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

impl Tried {
    fn failed(http_status: Option<u16>, error: impl Into<String>) -> Self {
        Tried {
            http_status,
            error: Some(error.into()),
        }
    }
}

/// One try of `n` to `ch`, within `timeout`.
pub async fn send(ch: &Channel, n: &Notice, timeout: Duration) -> Tried {
    let work = async {
        match ch.kind {
            Kind::Email => email(ch, n, timeout).await,
            _ => http(ch, n, timeout).await,
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Tried::failed(None, format!("no answer within {} s", timeout.as_secs()))
        })
}

/// The subject line of a message in `lang`.
pub fn subject(n: &Notice, lang: Lang) -> String {
    let tr = Tr::new(lang);
    let event = tr.t(match n.event {
        Event::Fired => "alerts.msg_fired",
        Event::Repeated => "alerts.msg_repeated",
        Event::Resolved => "alerts.msg_resolved",
        Event::Test => "alerts.msg_test",
    });
    let level = tr.t(super::pages::level_key(n.level.as_str()));
    let what = if n.rule.is_empty() {
        &n.message
    } else {
        &n.rule
    };
    format!("[gpudock] [{} {level}] {event}: {what}", n.level.as_str())
}

/// The text of a message in `lang`: the subject, the alert's message and
/// its facts, one per line.
pub fn text(n: &Notice, lang: Lang) -> String {
    let tr = Tr::new(lang);
    let mut lines = vec![subject(n, lang), message(n, tr)];
    if !n.target.is_empty() {
        lines.push(format!("{}: {}", tr.t("alerts.target_of"), n.target));
    }
    if let Some(v) = n.value {
        lines.push(format!("{}: {} = {v:.2}", tr.t("alerts.metric"), n.metric));
    }
    if n.event != Event::Test {
        let at = crate::web::render::fmt_ts(n.triggered_at);
        lines.push(format!("{}: {at} UTC", tr.t("alerts.triggered_at")));
    }
    if let Some(r) = n.resolved_at {
        let at = crate::web::render::fmt_ts(r);
        lines.push(format!("{}: {at} UTC", tr.t("alerts.resolved_at")));
    }
    if n.alert_id > 0 {
        lines.push(format!("#{}", n.alert_id));
    }
    lines.join("\n")
}

/// The alert's message in `tr`'s language, from its facts where it has
/// them (the stored English line otherwise).
fn message(n: &Notice, tr: Tr) -> String {
    use super::facts;
    match (&n.group, &n.facts) {
        (Some(g), _) => {
            let lines: Option<Vec<String>> = g
                .facts
                .iter()
                .map(|f| f.as_ref().map(|f| facts::line(f, &n.rule, tr)))
                .collect();
            match lines {
                Some(lines) if !lines.is_empty() => facts::group_line(&n.rule, g.count, &lines, tr),
                _ => n.message.clone(),
            }
        }
        (None, Some(f)) => facts::line(f, &n.rule, tr),
        (None, None) => n.message.clone(),
    }
}

/// DingTalk's signature: base64 of HMAC-SHA256 keyed with the secret over
/// "{timestamp ms}\n{secret}" (sent URL-encoded as `sign`).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Feishu's signature: base64 of HMAC-SHA256 keyed with
/// "{timestamp s}\n{secret}" over nothing.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    let mac = Hmac::<Sha256>::new_from_slice(format!("{timestamp_s}\n{secret}").as_bytes())
        .expect("any key length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Where an HTTP message goes, its extra headers and its body.
struct Request {
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// Where a message goes and what it carries, per HTTP kind.
fn request(ch: &Channel, n: &Notice) -> Result<Request, String> {
    let secret = String::from_utf8_lossy(ch.secret.expose()).into_owned();
    let body_text = text(n, ch.settings.lang());
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let now_ms = i64::try_from(now_ms).map_err(|e| e.to_string())?;
    let now_s = now_ms / 1000;
    let json_body = |v: Value| serde_json::to_vec(&v).map_err(|e| e.to_string());
    let mut headers = Vec::new();
    let (url, body) = match ch.kind {
        Kind::Webhook => {
            let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
            let sig = super::notify::signature(ch.secret.expose(), now_s, &body);
            headers.push(("x-gpudock-timestamp", now_s.to_string()));
            headers.push(("x-gpudock-signature", sig));
            (ch.url.clone(), body)
        }
        Kind::DingTalk => {
            let mut u = url::Url::parse(&ch.url).map_err(|e| format!("bad URL: {e}"))?;
            u.query_pairs_mut()
                .append_pair("timestamp", &now_ms.to_string())
                .append_pair("sign", &dingtalk_sign(&secret, now_ms));
            let body = json!({"msgtype": "text", "text": {"content": body_text}});
            (u.to_string(), json_body(body)?)
        }
        Kind::WeCom => {
            let body = json!({"msgtype": "text", "text": {"content": body_text}});
            (ch.url.clone(), json_body(body)?)
        }
        Kind::Feishu => {
            let body = json!({
                "timestamp": now_s.to_string(),
                "sign": feishu_sign(&secret, now_s),
                "msg_type": "text",
                "content": {"text": body_text},
            });
            (ch.url.clone(), json_body(body)?)
        }
        Kind::Slack => (ch.url.clone(), json_body(json!({"text": body_text}))?),
        Kind::Telegram => {
            let base = ch.url.trim_end_matches('/');
            let url = format!("{base}/bot{secret}/sendMessage");
            let body = json!({"chat_id": ch.settings.chat_id, "text": body_text});
            (url, json_body(body)?)
        }
        Kind::Email => return Err("e-mail is not sent over HTTP".into()),
    };
    Ok(Request { url, headers, body })
}

/// The HTTP client of one try: verified TLS, the channel's proxy or none
/// (the environment's proxy variables are not read: the setting is).
fn client(ch: &Channel, timeout: Duration) -> Result<reqwest::Client, String> {
    let b = reqwest::Client::builder()
        .use_preconfigured_tls(super::notify::verified_tls()?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent("gpudock-alerts")
        .redirect(reqwest::redirect::Policy::none());
    let b = if ch.proxy.is_empty() {
        b.no_proxy()
    } else {
        let p = reqwest::Proxy::all(&ch.proxy).map_err(|e| format!("bad proxy: {e}"))?;
        b.proxy(p)
    };
    b.build().map_err(|e| e.to_string())
}

async fn http(ch: &Channel, n: &Notice, timeout: Duration) -> Tried {
    let Request { url, headers, body } = match request(ch, n) {
        Ok(r) => r,
        Err(e) => return Tried::failed(None, e),
    };
    let client = match client(ch, timeout) {
        Ok(c) => c,
        Err(e) => return Tried::failed(None, e),
    };
    let mut req = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        // reqwest's error text can name the URL, which may carry a token
        Err(e) => return Tried::failed(None, describe(&e.without_url())),
    };
    let status = resp.status().as_u16();
    let answer = resp.bytes().await.unwrap_or_default();
    Tried {
        http_status: Some(status),
        error: refusal(ch.kind, status, &answer),
    }
}

fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Why an HTTP answer is not a delivery: a non-2xx status, or the robot's
/// own error code in a 200 answer (DingTalk and WeCom `errcode`, Feishu
/// `code`, Telegram `ok`).
pub fn refusal(kind: Kind, status: u16, answer: &[u8]) -> Option<String> {
    if !(200..300).contains(&status) {
        return Some(format!("answered HTTP {status}"));
    }
    let v: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let short = || String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
    let code_ok = |field: &str| v.get(field).and_then(Value::as_i64) == Some(0);
    match kind {
        Kind::DingTalk | Kind::WeCom if !code_ok("errcode") => {
            Some(format!("the robot refused: {}", short()))
        }
        Kind::Feishu if !(code_ok("code") || code_ok("StatusCode")) => {
            Some(format!("the robot refused: {}", short()))
        }
        Kind::Telegram if v.get("ok") != Some(&Value::Bool(true)) => {
            Some(format!("the bot API refused: {}", short()))
        }
        _ => None,
    }
}

async fn email(ch: &Channel, n: &Notice, timeout: Duration) -> Tried {
    match smtp(ch, n, timeout).await {
        Ok(()) => Tried {
            http_status: None,
            error: None,
        },
        Err(e) => Tried::failed(None, e),
    }
}

async fn smtp(ch: &Channel, n: &Notice, timeout: Duration) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let s = &ch.settings;
    let lang = s.lang();
    let mut m = Message::builder()
        .from(s.from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(subject(n, lang))
        .header(ContentType::TEXT_PLAIN);
    for to in &s.to {
        m = m.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
    }
    let mail = m.body(text(n, lang)).map_err(|e| e.to_string())?;
    let security = s.security.unwrap_or_default();
    let tls = || {
        TlsParameters::builder(s.host.clone())
            .build_rustls()
            .map_err(|e| format!("TLS: {e}"))
    };
    let tls = match security {
        Security::None => Tls::None,
        Security::Starttls => Tls::Required(tls()?),
        Security::Tls => Tls::Wrapper(tls()?),
    };
    let port = s.port.unwrap_or(match security {
        Security::Tls => 465,
        Security::Starttls => 587,
        Security::None => 25,
    });
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        .port(port)
        .tls(tls)
        .timeout(Some(timeout));
    if !s.user.is_empty() {
        let password = String::from_utf8_lossy(ch.secret.expose()).into_owned();
        t = t.credentials(Credentials::new(s.user.clone(), password));
    }
    t.build()
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// The masked form of a URL that carries a token: scheme, host and the
/// last four characters.
pub fn masked(url: &str) -> String {
    let tail: String = {
        let chars: Vec<char> = url.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}/…{tail}", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => format!("…{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_signature_is_hmac_keyed_with_the_secret() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SECabc").unwrap();
        mac.update(b"1700000000000\nSECabc");
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(dingtalk_sign("SECabc", 1_700_000_000_000), want);
    }

    #[test]
    fn feishu_signature_is_keyed_with_timestamp_and_secret() {
        let mac = Hmac::<Sha256>::new_from_slice(b"1700000000\nabc").unwrap();
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(feishu_sign("abc", 1_700_000_000), want);
        assert_ne!(feishu_sign("abc", 1_700_000_001), want);
    }

    #[test]
    fn robots_error_codes_in_a_200_are_failures() {
        assert_eq!(
            refusal(Kind::DingTalk, 200, br#"{"errcode":0,"errmsg":"ok"}"#),
            None
        );
        assert!(
            refusal(
                Kind::DingTalk,
                200,
                br#"{"errcode":310000,"errmsg":"sign"}"#
            )
            .is_some()
        );
        assert!(refusal(Kind::WeCom, 200, b"not json").is_some());
        assert_eq!(
            refusal(Kind::Feishu, 200, br#"{"code":0,"msg":"success"}"#),
            None
        );
        assert!(refusal(Kind::Feishu, 200, br#"{"code":19021}"#).is_some());
        assert!(refusal(Kind::Telegram, 200, br#"{"ok":false}"#).is_some());
        assert_eq!(refusal(Kind::Slack, 200, b"ok"), None);
        assert!(refusal(Kind::Slack, 500, b"").is_some());
    }

    #[test]
    fn token_urls_are_masked() {
        let m = masked("https://oapi.dingtalk.com/robot/send?access_token=abcdef123456");
        assert_eq!(m, "https://oapi.dingtalk.com/…3456");
        assert!(!m.contains("abcdef"));
    }
}
