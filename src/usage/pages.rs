//! The usage page (`/usage`): GPU-hours, core-hours and cost per user and
//! per tenant per month, within what the viewer reaches, with CSV export.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::{Filter, UsageRow};
use crate::app::App;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::web::extract::ApiQuery;
use crate::web::render::{Layout, html};

pub fn routes() -> Router<App> {
    Router::new().route("/usage", get(page))
}

/// One line of a total: month, who (user or tenant), GPU-hours,
/// core-hours, cost, as shown.
pub struct Total {
    pub month: String,
    pub who: String,
    pub gpu_hours: String,
    pub cpu_core_hours: String,
    pub cost: String,
}

#[derive(Template)]
#[template(path = "usage/page.html")]
struct Page {
    l: Layout,
    month: String,
    csv: String,
    users: Vec<Total>,
    tenants: Vec<Total>,
}

async fn page(
    State(app): State<App>,
    ctx: PageCtx,
    ApiQuery(f): ApiQuery<Filter>,
) -> Result<Response, AppError> {
    let rows = super::list(&app, &ctx.me, &f).await?;
    let cur = &app.config.server.currency;
    let month = f.month.clone().unwrap_or_default();
    let csv = if month.is_empty() {
        "/api/v1/usage.csv".to_string()
    } else {
        format!("/api/v1/usage.csv?month={month}")
    };
    html(&Page {
        l: ctx.nav("usage").l,
        users: totals(&rows, cur, |r| r.username.clone()),
        tenants: totals(&rows, cur, |r| {
            r.tenant_name.clone().unwrap_or_else(|| "—".into())
        }),
        month,
        csv,
    })
}

/// Adds the rows up per month and `key`, months newest first.
fn totals(rows: &[UsageRow], currency: &str, key: impl Fn(&UsageRow) -> String) -> Vec<Total> {
    let mut sums: std::collections::BTreeMap<(String, String), (f64, f64, i64)> =
        Default::default();
    for r in rows {
        let e = sums.entry((r.month.clone(), key(r))).or_default();
        e.0 += r.gpu_hours;
        e.1 += r.cpu_core_hours;
        e.2 += r.cost_cents;
    }
    sums.into_iter()
        .rev()
        .map(|((month, who), (g, c, cents))| Total {
            month,
            who,
            gpu_hours: format!("{g:.2}"),
            cpu_core_hours: format!("{c:.2}"),
            cost: format!("{currency}{:.2}", cents as f64 / 100.0),
        })
        .collect()
}
