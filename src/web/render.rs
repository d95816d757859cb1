//! Rendering: askama templates to responses, full page or htmx fragment, and
//! the layer that turns `AppError` responses into pages for browser requests.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use crate::error::{AppError, ErrorInfo};
use crate::i18n::{Lang, Tr};

/// What the base layout needs on every page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub tr: Tr,
    pub username: String,
    pub role_key: &'static str,
    pub csrf: String,
    /// The nav entry to highlight.
    pub nav: &'static str,
    /// Page routes the user may use: GET ones as their path, others as
    /// `METHOD path`; the nav and buttons show only these.
    pub allowed: std::sync::Arc<Vec<String>>,
    pub path: String,
    /// Banners for the signed-in user on every page (a lease ending or
    /// ended: "back up your data by ..."), in the page's language.
    pub notices: Vec<String>,
}

impl Layout {
    /// A layout that carries the language `tr` and nothing of any user:
    /// for parts rendered once and shared by every caller who reads that
    /// language (a kept list's rows).
    pub fn language_only(tr: Tr) -> Self {
        Layout {
            tr,
            username: String::new(),
            role_key: "",
            csrf: String::new(),
            nav: "",
            allowed: Default::default(),
            path: String::new(),
            notices: Vec::new(),
        }
    }
    pub fn can(&self, path: &str) -> bool {
        self.allowed.iter().any(|p| p == path)
    }
    pub fn t<'a>(&self, key: &'a str) -> &'a str {
        self.tr.t(key)
    }
    pub fn other_lang(&self) -> &'static str {
        match self.tr.lang {
            Lang::ZhCn => "en",
            Lang::En => "zh-CN",
        }
    }
}

pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// Renders a template; a template error is an internal error.
pub fn html(t: &impl Template) -> Result<Response, AppError> {
    Ok(Html(t.render().map_err(AppError::internal)?).into_response())
}

/// The full page, or only the fragment when htmx asks.
pub fn page_or_fragment(
    headers: &HeaderMap,
    full: &impl Template,
    fragment: &impl Template,
) -> Result<Response, AppError> {
    if is_htmx(headers) {
        html(fragment)
    } else {
        html(full)
    }
}

/// Makes htmx navigate to `href` (an empty answer with `HX-Redirect`).
pub fn hx_redirect(href: &str) -> Response {
    let mut r = ().into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(href) {
        r.headers_mut().insert("hx-redirect", v);
    }
    r
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    tr: Tr,
    status: u16,
    message: &'a str,
    password_change: bool,
}

/// For requests outside `/api/`, replaces a JSON error body with an error page
/// in the caller's language (htmx requests get just the message).
pub async fn error_pages(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let tr = Tr::new(Lang::from_headers(req.headers()));
    let htmx = is_htmx(req.headers());
    let resp = next.run(req).await;
    let Some(info) = resp.extensions().get::<ErrorInfo>().cloned() else {
        return resp;
    };
    if api {
        return resp;
    }
    let status = resp.status();
    // What the answer says beside its body (405's Allow, 429's Retry-After).
    let kept: Vec<_> = [header::ALLOW, header::RETRY_AFTER]
        .into_iter()
        .filter_map(|h| Some((h.clone(), resp.headers().get(&h)?.clone())))
        .collect();
    let message = match &info.detail {
        Some(d) => format!("{}: {d}", tr.t(info.message_key)),
        None => tr.t(info.message_key).to_string(),
    };
    let message = message.as_str();
    if htmx {
        let mut r = Html(format!(
            "<p class=\"error\">{}</p>",
            askama::filters::escape(message, askama::filters::Html)
                .map(|m| m.to_string())
                .unwrap_or_default()
        ))
        .into_response();
        *r.status_mut() = status;
        r.headers_mut().extend(kept);
        return r;
    }
    let page = ErrorPage {
        tr,
        status: status.as_u16(),
        message,
        password_change: info.code == "password_change_required",
    };
    match page.render() {
        Ok(body) => {
            let mut r = Html(body).into_response();
            *r.status_mut() = status;
            r.headers_mut().remove(header::CONTENT_LENGTH);
            r.headers_mut().extend(kept);
            r
        }
        Err(e) => {
            log::error!("rendering the error page: {e}");
            resp
        }
    }
}

/// Field errors of a form, already translated.
#[derive(Debug, Default, Clone)]
pub struct FormErrs(std::collections::BTreeMap<&'static str, String>);

impl FormErrs {
    /// The field errors of `err` (validation or conflict), in `tr`'s language.
    pub fn of_error(err: &AppError, tr: Tr) -> Self {
        Self(
            err.fields()
                .map(|f| f.iter().map(|(k, v)| (*k, v.text(tr))).collect())
                .unwrap_or_default(),
        )
    }
    pub fn one(field: &'static str, message: String) -> Self {
        Self(std::collections::BTreeMap::from([(field, message)]))
    }
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
    pub fn of(&self, field: &str) -> &str {
        self.0.get(field).map(String::as_str).unwrap_or("")
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn fmt_ts<T: std::borrow::Borrow<i64>>(ts: T) -> String {
    let ts = *ts.borrow();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// Re-renders a form on a validation/conflict error with its status; any other
/// error propagates to the error page.
pub fn form_error(
    err: AppError,
    page: impl FnOnce(FormErrs) -> Result<Response, AppError>,
    tr: Tr,
) -> Result<Response, AppError> {
    if err.fields().is_none() {
        return Err(err);
    }
    let status = err.status();
    let mut resp = page(FormErrs::of_error(&err, tr))?;
    *resp.status_mut() = status;
    Ok(resp)
}
