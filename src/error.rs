//! The HTTP-boundary error. Every variant maps to one status and one code; the
//! user sees a translatable message (and per-field errors), the log sees the
//! full internal text. API requests get JSON; `web::render` turns the same
//! error into a page for browser requests.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::i18n::Tr;

/// One field's problem: an i18n key plus optional untranslated detail
/// (e.g. the password estimator's feedback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub key: &'static str,
    pub detail: Option<String>,
}

impl FieldError {
    pub fn new(key: &'static str) -> Self {
        Self { key, detail: None }
    }
    pub fn with_detail(key: &'static str, detail: impl Into<String>) -> Self {
        Self {
            key,
            detail: Some(detail.into()),
        }
    }
    /// A detail made of catalogue keys, each said in the reader's language
    /// (e.g. the password estimator's feedback).
    pub fn with_detail_keys(key: &'static str, keys: &[String]) -> Self {
        Self::with_detail(key, format!("{DETAIL_KEYS}{}", keys.join(" ")))
    }

    /// The message in `tr`'s language.
    pub fn text(&self, tr: Tr) -> String {
        match &self.detail {
            Some(d) => match d.strip_prefix(DETAIL_KEYS) {
                Some(keys) => {
                    let said: Vec<&str> = keys.split(' ').map(|k| tr.t(k)).collect();
                    format!("{}: {}", tr.t(self.key), said.join(" "))
                }
                None => format!("{}: {d}", tr.t(self.key)),
            },
            None => tr.t(self.key).to_string(),
        }
    }
}

/// How a detail of catalogue keys begins ([`FieldError::with_detail_keys`]).
const DETAIL_KEYS: &str = "\u{1f}keys:";

pub type FieldErrors = BTreeMap<&'static str, FieldError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("not signed in")]
    Unauthenticated,
    /// Wrong name or password, an unknown or disabled account, a locked one:
    /// one answer, so that none of them can be told apart from outside.
    #[error("wrong username or password")]
    InvalidCredentials,
    /// The right password for an account that is disabled, or whose tenant
    /// is (`tenant`): said only once the password is verified, so it tells
    /// nothing to someone guessing.
    #[error("the account is disabled")]
    AccountDisabled { tenant: bool },
    /// Too many failed sign-ins from one address; retry after that many seconds.
    #[error("too many sign-in attempts; retry in {0} s")]
    TooManyAttempts(u64),
    #[error("password change required")]
    PasswordChangeRequired,
    #[error("forbidden")]
    Forbidden,
    #[error("CSRF check failed")]
    Csrf,
    #[error("not found")]
    NotFound,
    /// The route exists, not with this method; the methods it has.
    #[error("method not allowed")]
    MethodNotAllowed(Vec<String>),
    #[error("conflict: {0:?}")]
    Conflict(FieldErrors),
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// A JSON body named fields the endpoint does not have.
    #[error("unknown fields: {0:?}")]
    UnknownFields(Vec<String>),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A body over the limit of its route (the limit, in bytes).
    #[error("too large (the limit is {0} bytes)")]
    TooLarge(u64),
    #[error("server busy")]
    Busy,
    /// The server is stopping; the work asked for was not done (or undone).
    #[error("shutting down")]
    ShuttingDown,
    /// A node's Docker daemon could not be reached; the text says why (it
    /// names the node's endpoint: shown only to who may see nodes).
    #[error("node: {0}")]
    Upstream(String),
    /// A node's Docker daemon refused an operation; the text says why.
    #[error("docker: {0}")]
    Docker(String),
    /// Work on a node over SSH failed; `kind` says how (the classes an
    /// admin acts on), `detail` what the node or the network said (a node's
    /// detail, like a daemon's: shown only to who may see nodes).
    #[error("{kind:?}: {detail}")]
    Remote { kind: RemoteFailure, detail: String },
    #[error("internal: {0}")]
    Internal(String),
}

/// How work on a remote host failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteFailure {
    /// The host could not be reached (refused, no route, timeout).
    Network,
    /// The host refused the credentials, has none set, or its host key changed.
    HostAuth,
    /// The host refused to create (or change) the account.
    UserCreation,
    /// The credentials work but lack the rights the work needs.
    PermissionDenied,
}

impl RemoteFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteFailure::Network => "network",
            RemoteFailure::HostAuth => "host_auth",
            RemoteFailure::UserCreation => "user_creation",
            RemoteFailure::PermissionDenied => "permission_denied",
        }
    }
    /// The i18n key naming the class.
    pub fn message_key(self) -> &'static str {
        match self {
            RemoteFailure::Network => "err.remote.network",
            RemoteFailure::HostAuth => "err.remote.host_auth",
            RemoteFailure::UserCreation => "err.remote.user_creation",
            RemoteFailure::PermissionDenied => "err.remote.permission_denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            RemoteFailure::Network,
            RemoteFailure::HostAuth,
            RemoteFailure::UserCreation,
            RemoteFailure::PermissionDenied,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// What a rendered error carries for the page layer (set as a response extension).
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message_key: &'static str,
    /// Untranslated detail shown after the message (a daemon's error, or
    /// the reference of what only the log holds).
    pub detail: Option<String>,
    /// The detail is a node's (see [`hide_node_detail`]).
    pub node_detail: bool,
}

/// Logs `detail` under a fresh reference and returns the reference, which
/// the user is shown instead of the detail (so that an admin can find it).
pub fn incident(level: log::Level, detail: &dyn std::fmt::Display) -> String {
    use rand::Rng;
    let reference = format!("{:08x}", rand::rng().random::<u32>());
    log::log!(level, "error {reference}: {detail}");
    reference
}

impl AppError {
    pub fn field(name: &'static str, key: &'static str) -> Self {
        AppError::Validation(FieldErrors::from([(name, FieldError::new(key))]))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        AppError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated | AppError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AppError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::PasswordChangeRequired
            | AppError::Forbidden
            | AppError::Csrf
            | AppError::AccountDisabled { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Validation(_) | AppError::UnknownFields(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Busy | AppError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Upstream(_) | AppError::Docker(_) | AppError::Remote { .. } => {
                StatusCode::BAD_GATEWAY
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "unauthenticated",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::AccountDisabled { .. } => "account_disabled",
            AppError::TooManyAttempts(_) => "too_many_attempts",
            AppError::PasswordChangeRequired => "password_change_required",
            AppError::Forbidden => "forbidden",
            AppError::Csrf => "csrf_failed",
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed(_) => "method_not_allowed",
            AppError::Conflict(_) => "conflict",
            AppError::Validation(_) | AppError::UnknownFields(_) => "validation_failed",
            AppError::BadRequest(_) => "bad_request",
            AppError::TooLarge(_) => "too_large",
            AppError::Busy => "busy",
            AppError::ShuttingDown => "shutting_down",
            AppError::Upstream(_) => "node_unreachable",
            AppError::Docker(_) => "docker_error",
            AppError::Remote { kind, .. } => match kind {
                RemoteFailure::Network => "network_error",
                RemoteFailure::HostAuth => "host_auth_failed",
                RemoteFailure::UserCreation => "user_creation_failed",
                RemoteFailure::PermissionDenied => "permission_denied",
            },
            AppError::Internal(_) => "internal",
        }
    }

    /// The i18n key of the user-facing message.
    pub fn message_key(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "err.unauthenticated",
            AppError::InvalidCredentials => "err.invalid_credentials",
            AppError::AccountDisabled { tenant: false } => "err.account_disabled",
            AppError::AccountDisabled { tenant: true } => "err.tenant_disabled",
            AppError::TooManyAttempts(_) => "err.too_many_attempts",
            AppError::PasswordChangeRequired => "err.password_change_required",
            AppError::Forbidden => "err.forbidden",
            AppError::Csrf => "err.csrf",
            AppError::NotFound => "err.not_found",
            AppError::MethodNotAllowed(_) => "err.method_not_allowed",
            AppError::Conflict(_) => "err.conflict",
            AppError::Validation(_) | AppError::UnknownFields(_) => "err.validation",
            AppError::BadRequest(key) => key,
            AppError::TooLarge(_) => "err.too_large",
            AppError::Busy => "err.busy",
            AppError::ShuttingDown => "err.shutting_down",
            AppError::Upstream(_) => "err.node_unreachable",
            AppError::Docker(_) => "err.docker",
            AppError::Remote { kind, .. } => kind.message_key(),
            AppError::Internal(_) => "err.internal",
        }
    }

    pub fn fields(&self) -> Option<&FieldErrors> {
        match self {
            AppError::Conflict(f) | AppError::Validation(f) => Some(f),
            AppError::Unauthenticated
            | AppError::InvalidCredentials
            | AppError::AccountDisabled { .. }
            | AppError::TooManyAttempts(_)
            | AppError::PasswordChangeRequired
            | AppError::Forbidden
            | AppError::Csrf
            | AppError::NotFound
            | AppError::MethodNotAllowed(_)
            | AppError::UnknownFields(_)
            | AppError::BadRequest(_)
            | AppError::TooLarge(_)
            | AppError::Busy
            | AppError::ShuttingDown
            | AppError::Upstream(_)
            | AppError::Docker(_)
            | AppError::Remote { .. }
            | AppError::Internal(_) => None,
        }
    }

    /// The fields named in the answer, with their messages in `tr`'s language.
    fn field_texts(&self, tr: Tr) -> Option<BTreeMap<String, String>> {
        if let AppError::UnknownFields(names) = self {
            let text = tr.t("err.unknown_field");
            return Some(
                names
                    .iter()
                    .map(|n| (n.clone(), text.to_string()))
                    .collect(),
            );
        }
        self.fields()
            .map(|f| f.iter().map(|(k, v)| (k.to_string(), v.text(tr))).collect())
    }

    /// What follows the message: a daemon's text (only when `node_detail`),
    /// or the reference under which the log holds what the user may not see.
    fn shown_detail(&self, node_detail: bool) -> Option<String> {
        match self {
            AppError::Upstream(why)
            | AppError::Docker(why)
            | AppError::Remote { detail: why, .. }
                if node_detail =>
            {
                Some(why.clone())
            }
            AppError::Upstream(why)
            | AppError::Docker(why)
            | AppError::Remote { detail: why, .. } => Some(format!(
                "ref {}",
                incident(log::Level::Warn, &format_args!("node: {why}"))
            )),
            AppError::Internal(why) => Some(format!(
                "ref {}",
                incident(log::Level::Error, &format_args!("internal: {why}"))
            )),
            AppError::TooLarge(limit) => Some(format!("{limit} bytes")),
            _ => None,
        }
    }

    /// The error as one line in `tr`'s language for a page that shows it as
    /// text (a background job's outcome): message, fields, then a node's
    /// detail when `node_detail`, else the reference of what was left out.
    pub fn text(&self, tr: Tr, node_detail: bool) -> String {
        self.compose(tr.t(self.message_key()).to_string(), tr, node_detail)
    }

    /// The error as one line for a client that gets no page (an SSH
    /// channel, a WebSocket), in English and Chinese: never an internal
    /// detail, a node's only when `node_detail`. What is left out goes to
    /// the log under the reference the line names.
    pub fn user_text(&self, node_detail: bool) -> String {
        let key = self.message_key();
        let zh = Tr::new(crate::i18n::Lang::ZhCn);
        let both = format!("{} ({})", Tr::english().t(key), zh.t(key));
        self.compose(both, Tr::english(), node_detail)
    }

    /// Whether the error carries a node's detail (its endpoint, its
    /// daemon's or sshd's words).
    pub fn is_node_error(&self) -> bool {
        matches!(
            self,
            AppError::Upstream(_) | AppError::Docker(_) | AppError::Remote { .. }
        )
    }

    fn compose(&self, mut text: String, tr: Tr, node_detail: bool) -> String {
        for (field, why) in self.field_texts(tr).unwrap_or_default() {
            text.push_str(&format!("; {field}: {why}"));
        }
        if let Some(d) = self.shown_detail(node_detail) {
            text.push_str(&format!(": {d}"));
        }
        text
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: BodyInner<'a>,
}

#[derive(Serialize)]
struct BodyInner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<BTreeMap<String, String>>,
}

impl AppError {
    /// The answer; `node_detail`: whether a node's text may be in it.
    fn respond(&self, node_detail: bool) -> Response {
        let en = Tr::english();
        let detail = self.shown_detail(node_detail);
        let message = match &detail {
            Some(d) => format!("{}: {d}", en.t(self.message_key())),
            None => en.t(self.message_key()).to_string(),
        };
        let body = Body {
            error: BodyInner {
                code: self.code(),
                message: &message,
                fields: self.field_texts(en),
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        let headers = resp.headers_mut();
        match self {
            AppError::MethodNotAllowed(methods) => {
                if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
                    headers.insert(header::ALLOW, v);
                }
            }
            AppError::TooManyAttempts(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            _ => {}
        }
        let node = node_detail && self.is_node_error();
        resp.extensions_mut().insert(ErrorInfo {
            code: self.code(),
            message_key: self.message_key(),
            detail,
            node_detail: node,
        });
        if node {
            resp.extensions_mut().insert(self.clone());
        }
        resp
    }
}

/// Answers with the node's detail; the auth guard takes it out again for
/// callers who may not see nodes ([`hide_node_detail`]).
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.respond(true)
    }
}

/// `resp` without a node's detail: a node error's answer is made again
/// with the detail in the log and a reference in its place. Callers who
/// may not see nodes (their endpoints, their daemons' words) get this.
pub fn hide_node_detail(resp: Response) -> Response {
    let shown = resp
        .extensions()
        .get::<ErrorInfo>()
        .is_some_and(|i| i.node_detail);
    match resp.extensions().get::<AppError>() {
        Some(err) if shown => err.respond(false),
        _ => resp,
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Internal(format!("database: {e}"))
    }
}

impl From<crate::secrets::SecretError> for AppError {
    fn from(e: crate::secrets::SecretError) -> Self {
        AppError::Internal(e.to_string())
    }
}

/// Maps a UNIQUE violation to a 409 on `field`; any other database error stays
/// internal (never "not found", never a 400).
pub fn on_unique(field: &'static str) -> impl FnOnce(rusqlite::Error) -> AppError {
    move |e| {
        if crate::db::is_unique_violation(&e) {
            AppError::Conflict(FieldErrors::from([(field, FieldError::new("err.taken"))]))
        } else {
            AppError::from(e)
        }
    }
}

/// Maps a FOREIGN KEY violation (deleting what instances still use) to a 409
/// on `field`; any other database error stays internal.
pub fn on_in_use(field: &'static str) -> impl FnOnce(rusqlite::Error) -> AppError {
    move |e| {
        if crate::db::is_foreign_key_violation(&e) {
            AppError::Conflict(FieldErrors::from([(field, FieldError::new("err.in_use"))]))
        } else {
            AppError::from(e)
        }
    }
}

/// A daemon error for the user: unreachable when the node could not be
/// talked to, a refusal otherwise.
pub fn docker_error(e: crate::docker::DockerError) -> AppError {
    match e {
        crate::docker::DockerError::Api(m) => AppError::Docker(m),
        other @ (crate::docker::DockerError::BadEndpoint(_)
        | crate::docker::DockerError::BadPem { .. }
        | crate::docker::DockerError::Tls(_)
        | crate::docker::DockerError::Unreachable(_)
        | crate::docker::DockerError::Timeout(_)) => AppError::Upstream(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn clients_without_pages_get_a_reference_never_the_detail() {
        let e = AppError::internal("database: disk I/O error at /var/lib/gpudock/gpudock.db");
        let text = e.user_text(true);
        assert!(text.starts_with("internal error"), "{text}");
        assert!(
            text.contains("ref ") && !text.contains("disk I/O"),
            "{text}"
        );
        assert!(!text.contains("internal:"), "{text}");

        let e = AppError::Upstream("connection refused to 10.0.0.7:2376".into());
        let hidden = e.user_text(false);
        assert!(
            hidden.contains("ref ") && !hidden.contains("10.0.0.7"),
            "{hidden}"
        );
        assert!(e.user_text(true).contains("10.0.0.7:2376"));
        assert!(
            e.text(Tr::english(), false)
                .starts_with("cannot reach the node")
        );
    }

    #[test]
    fn node_details_are_taken_out_of_answers_for_those_who_may_not_see_them() {
        let e = AppError::Docker("dockerd refused the request: 500: tcp://10.0.0.7:2376".into());
        let shown = body(e.clone().into_response());
        assert!(shown.contains("10.0.0.7"), "{shown}");
        let hidden = hide_node_detail(e.into_response());
        assert_eq!(hidden.status(), StatusCode::BAD_GATEWAY);
        let info = hidden.extensions().get::<ErrorInfo>().cloned().unwrap();
        assert!(!info.node_detail);
        let text = body(hidden);
        assert!(
            !text.contains("10.0.0.7") && text.contains("ref "),
            "{text}"
        );
        // Other answers pass unchanged.
        let nf = hide_node_detail(AppError::NotFound.into_response());
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
    }
}
