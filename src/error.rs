//! The HTTP-boundary error. Every variant maps to one status and one code; the
//! user sees a translatable message (and per-field errors), the log sees the
//! full internal text. API requests get JSON; `web::render` turns the same
//! error into a page for browser requests.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
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
    /// The message in `tr`'s language.
    pub fn text(&self, tr: Tr) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", tr.t(self.key)),
            None => tr.t(self.key).to_string(),
        }
    }
}

pub type FieldErrors = BTreeMap<&'static str, FieldError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("not signed in")]
    Unauthenticated,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("account locked")]
    Locked,
    #[error("password change required")]
    PasswordChangeRequired,
    #[error("forbidden")]
    Forbidden,
    #[error("CSRF check failed")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0:?}")]
    Conflict(FieldErrors),
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("server busy")]
    Busy,
    /// A node's Docker daemon could not be reached; the text says why.
    #[error("node: {0}")]
    Upstream(String),
    /// A node's Docker daemon refused an operation; the text says why.
    #[error("docker: {0}")]
    Docker(String),
    /// Work on a node over SSH failed; `kind` says how (the classes an
    /// admin acts on), `detail` what the node or the network said.
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
    /// Untranslated detail shown after the message (e.g. a daemon's error).
    pub detail: Option<String>,
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
            AppError::Locked => StatusCode::LOCKED,
            AppError::PasswordChangeRequired | AppError::Forbidden | AppError::Csrf => {
                StatusCode::FORBIDDEN
            }
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Busy => StatusCode::SERVICE_UNAVAILABLE,
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
            AppError::Locked => "account_locked",
            AppError::PasswordChangeRequired => "password_change_required",
            AppError::Forbidden => "forbidden",
            AppError::Csrf => "csrf_failed",
            AppError::NotFound => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::Validation(_) => "validation_failed",
            AppError::BadRequest(_) => "bad_request",
            AppError::Busy => "busy",
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
            AppError::Locked => "err.locked",
            AppError::PasswordChangeRequired => "err.password_change_required",
            AppError::Forbidden => "err.forbidden",
            AppError::Csrf => "err.csrf",
            AppError::NotFound => "err.not_found",
            AppError::Conflict(_) => "err.conflict",
            AppError::Validation(_) => "err.validation",
            AppError::BadRequest(key) => key,
            AppError::Busy => "err.busy",
            AppError::Upstream(_) => "err.node_unreachable",
            AppError::Docker(_) => "err.docker",
            AppError::Remote { kind, .. } => kind.message_key(),
            AppError::Internal(_) => "err.internal",
        }
    }

    /// The whole message for a user in `tr`'s language: the error's own,
    /// each field's, and what the node or daemon said.
    pub fn user_text(&self, tr: &Tr) -> String {
        let mut text = tr.t(self.message_key()).to_string();
        for f in self.fields().into_iter().flat_map(|f| f.values()) {
            text.push_str(": ");
            text.push_str(&f.text(*tr));
        }
        if let AppError::Upstream(d) | AppError::Docker(d) | AppError::Remote { detail: d, .. } =
            self
        {
            text.push_str(": ");
            text.push_str(d);
        }
        text
    }

    pub fn fields(&self) -> Option<&FieldErrors> {
        match self {
            AppError::Conflict(f) | AppError::Validation(f) => Some(f),
            AppError::Unauthenticated
            | AppError::InvalidCredentials
            | AppError::Locked
            | AppError::PasswordChangeRequired
            | AppError::Forbidden
            | AppError::Csrf
            | AppError::NotFound
            | AppError::BadRequest(_)
            | AppError::Busy
            | AppError::Upstream(_)
            | AppError::Docker(_)
            | AppError::Remote { .. }
            | AppError::Internal(_) => None,
        }
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
    fields: Option<BTreeMap<&'a str, String>>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(detail) = &self {
            log::error!("internal error: {detail}");
        }
        let en = Tr::english();
        let fields = self
            .fields()
            .map(|f| f.iter().map(|(k, v)| (*k, v.text(en))).collect());
        let message = match &self {
            AppError::Upstream(why)
            | AppError::Docker(why)
            | AppError::Remote { detail: why, .. } => {
                format!("{}: {why}", en.t(self.message_key()))
            }
            _ => en.t(self.message_key()).to_string(),
        };
        let body = Body {
            error: BodyInner {
                code: self.code(),
                message: &message,
                fields,
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        let detail = match &self {
            AppError::Upstream(why)
            | AppError::Docker(why)
            | AppError::Remote { detail: why, .. } => Some(why.clone()),
            _ => None,
        };
        resp.extensions_mut().insert(ErrorInfo {
            code: self.code(),
            message_key: self.message_key(),
            detail,
        });
        resp
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
