//! Metering (计费/用量): running intervals of instances (recorded by the
//! schema's triggers on `instances.status`, which follows the lifecycle and
//! the Docker event stream), turned into GPU-hours, CPU-core-hours and cost
//! at the price per hour copied at placement.

pub mod api;
mod model;
pub mod pages;
mod store;

pub use model::{UsageRow, month_bounds};

use crate::app::App;
use crate::auth::CurrentUser;
use crate::error::{AppError, FieldError, FieldErrors};

/// Filters of a usage listing (`user`, `tenant` ids; `month` `YYYY-MM`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    pub user: Option<i64>,
    pub tenant: Option<i64>,
    pub month: Option<String>,
    pub format: Option<String>,
}

/// Per instance and month, what `me` may see, filtered.
pub async fn list(app: &App, me: &CurrentUser, f: &Filter) -> Result<Vec<UsageRow>, AppError> {
    let window = match f.month.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match model::month_bounds(m) {
            Some(w) => Some(w),
            None => {
                let mut e = FieldErrors::new();
                e.insert("month", FieldError::new("err.usage.month"));
                return Err(AppError::Validation(e));
            }
        },
    };
    let (scope, user, tenant) = (me.scope(), f.user, f.tenant);
    let ivs = app
        .db
        .read(move |c| {
            store::intervals(c, scope, user, tenant, window, None).map_err(AppError::from)
        })
        .await?;
    Ok(model::per_month(&ivs, crate::db::now(), window))
}

/// What one instance has run so far: (running seconds, cost in cents), all
/// months together; the caller has checked that `me` reaches the instance.
pub async fn of_instance(
    app: &App,
    instance: crate::ids::InstanceId,
) -> Result<(i64, i64), AppError> {
    let ivs = app
        .db
        .read(move |c| {
            store::intervals(
                c,
                crate::ids::Scope::All,
                None,
                None,
                None,
                Some(instance.0),
            )
            .map_err(AppError::from)
        })
        .await?;
    let rows = model::per_month(&ivs, crate::db::now(), None);
    Ok(rows.iter().fold((0, 0), |(s, c), r| {
        (s + r.running_seconds, c + r.cost_cents)
    }))
}

/// Closes open intervals whose instance is not running and opens one for
/// running instances without (run at start, after the usage recount).
pub fn reconcile(conn: &rusqlite::Connection, now: i64) -> rusqlite::Result<(usize, usize)> {
    store::reconcile(conn, now)
}

/// The rows as CSV, every text cell through `escape::csv_cell`.
pub fn to_csv(rows: &[UsageRow], currency: &str) -> Result<Vec<u8>, AppError> {
    use crate::escape::csv_cell;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "month",
        "user",
        "tenant",
        "instance_id",
        "instance",
        "running_hours",
        "gpu_hours",
        "cpu_core_hours",
        "cost",
        "currency",
    ])
    .map_err(AppError::internal)?;
    for r in rows {
        let cells = [
            r.month.clone(),
            r.username.clone(),
            r.tenant_name.clone().unwrap_or_default(),
            r.instance_id.to_string(),
            r.instance_name.clone(),
            format!("{:.3}", r.running_seconds as f64 / 3600.0),
            format!("{:.3}", r.gpu_hours),
            format!("{:.3}", r.cpu_core_hours),
            format!("{:.2}", r.cost),
            currency.to_string(),
        ];
        w.write_record(cells.iter().map(|c| csv_cell(c).into_owned()))
            .map_err(AppError::internal)?;
    }
    w.into_inner().map_err(AppError::internal)
}
