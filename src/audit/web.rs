//! The audit API: filtered reads and CSV/JSON export, scoped to the caller.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{AuditFilter, AuditRecord, query, records};
use crate::app::App;
use crate::auth::CurrentUser;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::paging::{API_LIMIT, MAX_LIMIT, Paging, Window};
use crate::web::extract::ApiQuery;
use crate::web::render::{Layout, page_or_fragment};

pub fn routes() -> Router<App> {
    Router::new().route("/api/v1/audit", get(list))
}

pub fn page_routes() -> Router<App> {
    Router::new().route("/audit", get(page))
}

/// `GET /api/v1/audit` parameters: the filter fields (`since`/`until` in Unix
/// seconds), `format=csv|json` to download, `limit` (default 100, max 1000)
/// and `offset` for paging.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: String,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// `csv` or `json` downloads the matching records (up to 100,000).
    pub format: String,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

impl AuditQuery {
    /// The rows its `limit` and `offset` ask for.
    fn window(&self) -> Window {
        Window {
            limit: self.limit.unwrap_or(API_LIMIT).clamp(1, MAX_LIMIT),
            offset: self.offset.unwrap_or(0),
        }
    }

    pub fn filter(&self) -> AuditFilter {
        AuditFilter {
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            outcome: self.outcome.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

pub const EXPORT_LIMIT: u32 = 100_000;

/// Reads records for `me` under their scope: those of `window`, or
/// (`None`) the newest [`EXPORT_LIMIT`] for a download.
pub async fn fetch(
    app: &App,
    me: &CurrentUser,
    q: &AuditQuery,
    window: Option<Window>,
) -> Result<Vec<AuditRecord>, AppError> {
    let window = window.unwrap_or(Window {
        limit: EXPORT_LIMIT,
        offset: 0,
    });
    let (scope, filter) = (me.scope(), q.filter());
    app.db
        .read(move |c| records(c, scope, &filter, window).map_err(AppError::from))
        .await
}

async fn list(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
    paging: Paging,
) -> Result<Response, AppError> {
    match q.format.as_str() {
        "" => {
            let (scope, filter, window) = (me.scope(), q.filter(), paging.window);
            let page = app
                .db
                .read(move |c| query(c, scope, &filter, window).map_err(AppError::from))
                .await?;
            Ok(paging.json(&page))
        }
        "json" => {
            let rows = fetch(&app, &me, &q, None).await?;
            Ok(download(
                serde_json::to_vec_pretty(&rows).map_err(AppError::internal)?,
                "json",
                "application/json",
            ))
        }
        "csv" => {
            let rows = fetch(&app, &me, &q, None).await?;
            Ok(download(to_csv(&rows)?, "csv", "text/csv; charset=utf-8"))
        }
        _ => Err(AppError::field("format", "err.format_unknown")),
    }
}

fn download(body: Vec<u8>, ext: &str, mime: &'static str) -> Response {
    let name = format!("attachment; filename=\"gpudock-audit.{ext}\"");
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response()
}

pub fn to_csv(rows: &[AuditRecord]) -> Result<Vec<u8>, AppError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "time",
        "actor_id",
        "actor",
        "tenant_id",
        "source_ip",
        "user_agent",
        "action",
        "resource_type",
        "resource_id",
        "outcome",
        "detail",
        "hash",
    ])
    .map_err(AppError::internal)?;
    for r in rows {
        let time = time::OffsetDateTime::from_unix_timestamp(r.ts)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let detail = r.detail.to_string();
        let cells = [
            r.id.to_string(),
            time,
            r.actor_id.map(|v| v.to_string()).unwrap_or_default(),
            r.actor_name.clone(),
            r.tenant_id.map(|v| v.to_string()).unwrap_or_default(),
            r.source_ip.clone(),
            r.user_agent.clone(),
            r.action.clone(),
            r.resource_type.clone(),
            r.resource_id.clone().unwrap_or_default(),
            r.outcome.clone(),
            detail,
            r.hash.clone(),
        ];
        // Failed sign-ins record whatever name was typed: never a formula.
        w.write_record(
            cells
                .iter()
                .map(|c| crate::escape::csv_cell(c).into_owned()),
        )
        .map_err(AppError::internal)?;
    }
    w.into_inner().map_err(AppError::internal)
}

/// The audit page's filter form; dates are `YYYY-MM-DD` (UTC days).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PageQuery {
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: String,
    pub from: String,
    pub to: String,
    pub page: u32,
}

const PAGE_SIZE: u32 = 50;

fn parse_day(s: &str) -> Result<Option<i64>, ()> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &fmt)
        .map(|d| Some(d.midnight().assume_utc().unix_timestamp()))
        .map_err(|_| ())
}

impl PageQuery {
    /// The API query for these filters, or the i18n key of what is wrong.
    fn to_api(&self) -> Result<AuditQuery, &'static str> {
        let since = parse_day(&self.from).map_err(|_| "err.date_format")?;
        let until = parse_day(&self.to)
            .map_err(|_| "err.date_format")?
            .map(|d| d + 86_400);
        Ok(AuditQuery {
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            outcome: self.outcome.clone(),
            since,
            until,
            format: String::new(),
            limit: Some(PAGE_SIZE + 1),
            // u32 pages of 50 fit a u64 offset: no overflow whatever is asked.
            offset: Some(u64::from(self.page) * u64::from(PAGE_SIZE)),
        })
    }

    /// The filters as a query string (for export links and paging).
    fn api_qs(q: &AuditQuery) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &q.actor),
            ("action", &q.action),
            ("resource_type", &q.resource_type),
            ("resource_id", &q.resource_id),
            ("outcome", &q.outcome),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if let Some(v) = q.since {
            s.append_pair("since", &v.to_string());
        }
        if let Some(v) = q.until {
            s.append_pair("until", &v.to_string());
        }
        s.finish()
    }

    fn page_qs(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource_type", &self.resource_type),
            ("resource_id", &self.resource_id),
            ("outcome", &self.outcome),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

#[derive(Template)]
#[template(path = "audit/audit.html")]
struct AuditPage {
    l: Layout,
    q: PageQuery,
    records: Vec<AuditRecord>,
    export_qs: String,
    page_qs: String,
    has_more: bool,
    next_page: u32,
    error: String,
}

#[derive(Template)]
#[template(path = "audit/rows.html")]
struct AuditRows {
    l: Layout,
    records: Vec<AuditRecord>,
    export_qs: String,
    page_qs: String,
    has_more: bool,
    next_page: u32,
    error: String,
}

async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, AppError> {
    let ctx = ctx.nav("audit");
    let (mut records, export_qs, error) = match q.to_api() {
        Ok(api) => (
            fetch(&app, &ctx.me, &api, Some(api.window())).await?,
            PageQuery::api_qs(&api),
            String::new(),
        ),
        Err(key) => (Vec::new(), String::new(), ctx.tr().t(key).to_string()),
    };
    let has_more = records.len() > PAGE_SIZE as usize;
    records.truncate(PAGE_SIZE as usize);
    let (page_qs, next_page) = (q.page_qs(), q.page.saturating_add(1));
    let rows = AuditRows {
        l: ctx.l.clone(),
        records: records.clone(),
        export_qs: export_qs.clone(),
        page_qs: page_qs.clone(),
        has_more,
        next_page,
        error: error.clone(),
    };
    let full = AuditPage {
        l: ctx.l,
        q,
        records,
        export_qs,
        page_qs,
        has_more,
        next_page,
        error,
    };
    page_or_fragment(&headers, &full, &rows)
}
