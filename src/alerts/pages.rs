//! Alert pages: the alert list (filters by level, status, node and time;
//! acknowledge and close with a note, close confirmed), rules (create,
//! switch on/off, delete confirmed), channels (create, test, delivery log,
//! delete confirmed), maintenance windows, and the dashboard's count of
//! firing alerts by level. Forms go through the same service calls as the
//! API (validation, audit).

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::channels::{self, ChannelView};
use super::manage::{
    self, AlertFilter, AlertView, By, Handle, RuleIn, RuleView, WindowIn, WindowView,
};
use super::model::{Level, RuleId};
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::ids::NodeId;
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::form::FormValues;
use crate::web::render::{FormErrs, Layout, fmt_ts, html};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/alerts", get(alerts_page))
        .route("/alerts/summary", get(summary))
        .route("/alerts/{id}/ack", post(ack))
        .route("/alerts/{id}/close", post(close))
        .route("/alert-rules", get(rules_page).post(create_rule))
        .route("/alert-rules/{id}", get(edit_rule_page).post(save_rule))
        .route("/alert-rules/{id}/enabled", post(switch_rule))
        .route("/nodes/{id}/maintenance-windows", get(node_windows))
        .route("/alert-rules/{id}/delete", post(delete_rule))
        .route(
            "/maintenance-windows",
            get(windows_page).post(create_window),
        )
        .route("/maintenance-windows/{id}/delete", post(delete_window))
        .merge(super::channel_pages::routes())
}

pub(super) fn by(ctx: &PageCtx, source: Source) -> By {
    By {
        actor: ctx.me.actor(),
        source,
    }
}

/// A time as the pages show it (UTC); a dash for none.
pub fn when<T: std::borrow::Borrow<Option<i64>>>(ts: T) -> String {
    ts.borrow().map_or_else(|| "–".to_string(), fmt_ts)
}

/// The text key of a level (P0 紧急 ... P3 提示).
pub fn level_key<S: AsRef<str>>(level: S) -> &'static str {
    match level.as_ref() {
        "P0" => "alerts.p0",
        "P1" => "alerts.p1",
        "P2" => "alerts.p2",
        _ => "alerts.p3",
    }
}

/// The text key of an alert status (or the "open" filter).
pub fn status_key<S: AsRef<str>>(status: S) -> &'static str {
    match status.as_ref() {
        "firing" => "alerts.firing",
        "acknowledged" => "alerts.acknowledged",
        "resolved" => "alerts.resolved",
        _ => "alerts.open",
    }
}

/// The text key of why an alert resolved.
pub fn reason_key<S: AsRef<str>>(reason: S) -> &'static str {
    match reason.as_ref() {
        "cleared" => "alerts.reason_cleared",
        "no_data" => "alerts.reason_no_data",
        "rule_off" => "alerts.reason_rule_off",
        _ => "alerts.reason_closed",
    }
}

#[derive(Template)]
#[template(path = "alerts/alerts.html")]
struct AlertsPage {
    l: Layout,
    alerts: Vec<AlertView>,
    nodes: Vec<(i64, String)>,
    q: ListQuery,
}

/// The list's filters as the form sends them (empty: any).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct ListQuery {
    level: String,
    status: String,
    node: String,
    /// Only the last N hours (empty: any time).
    hours: String,
}

impl ListQuery {
    fn filter(&self) -> Result<AlertFilter, AppError> {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let num = |f: &'static str, s: &str| -> Result<Option<i64>, AppError> {
            match s.trim() {
                "" => Ok(None),
                t => t
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| AppError::field(f, "err.alert_field")),
            }
        };
        Ok(AlertFilter {
            level: opt(&self.level),
            status: opt(&self.status),
            node: num("node", &self.node)?,
            since: num("hours", &self.hours)?.map(|h| crate::db::now() - h * 3600),
            until: None,
            limit: Some(500),
        })
    }
}

async fn node_names(app: &App) -> Result<Vec<(i64, String)>, AppError> {
    app.db
        .read(|c| {
            c.prepare("SELECT id, name FROM nodes ORDER BY name")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(AppError::from)
        })
        .await
}

async fn alerts_page(
    State(app): State<App>,
    ctx: PageCtx,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, AppError> {
    let alerts = manage::alerts(&app.db, ctx.me.scope(), q.filter()?).await?;
    let nodes = if ctx.l.can("/alert-rules") {
        node_names(&app).await?
    } else {
        Vec::new()
    };
    html(&AlertsPage {
        l: ctx.nav("alerts").l,
        alerts,
        nodes,
        q,
    })
}

#[derive(Template)]
#[template(path = "alerts/summary.html")]
struct Summary {
    l: Layout,
    counts: [(Level, i64); 4],
}

/// The dashboard's part: firing alerts by level.
async fn summary(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    let counts = manage::firing_by_level(&app.db, ctx.me.scope()).await?;
    html(&Summary { l: ctx.l, counts })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NoteForm {
    note: String,
}

async fn handle(
    app: &App,
    ctx: PageCtx,
    src: Source,
    id: i64,
    how: Handle,
    note: &str,
) -> Result<Response, AppError> {
    manage::handle(&app.db, by(&ctx, src), id, how, note).await?;
    Ok(Redirect::to("/alerts").into_response())
}

async fn ack(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<NoteForm>,
) -> Result<Response, AppError> {
    handle(&app, ctx, src, id, Handle::Ack, &f.note).await
}

async fn close(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<NoteForm>,
) -> Result<Response, AppError> {
    handle(&app, ctx, src, id, Handle::Close, &f.note).await
}

#[derive(Template)]
#[template(path = "alerts/rules.html")]
struct RulesPage {
    l: Layout,
    rules: Vec<RuleView>,
    channels: Vec<ChannelView>,
    nodes: Vec<(i64, String)>,
    /// The users a rule may notify (id, name).
    users: Vec<(i64, String)>,
    form: FormValues,
    errs: FormErrs,
    /// The rule being edited (the form then saves it; the list is hidden).
    editing: Option<i64>,
}

impl RulesPage {
    fn node_on<T: std::borrow::Borrow<i64>>(&self, id: T) -> bool {
        self.form.checked(&format!("node_{}", id.borrow()))
    }
    fn channel_on<T: std::borrow::Borrow<i64>>(&self, id: T) -> bool {
        self.form.checked(&format!("channel_{}", id.borrow()))
    }
    fn user_on<T: std::borrow::Borrow<i64>>(&self, id: T) -> bool {
        self.form.checked(&format!("user_{}", id.borrow()))
    }
    fn channel_names(&self, r: &RuleView) -> String {
        let ids = &r.channels;
        let names: Vec<&str> = self
            .channels
            .iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| c.name.as_str())
            .collect();
        if names.is_empty() {
            "–".into()
        } else {
            names.join(", ")
        }
    }
    fn scope_text(&self, r: &RuleView) -> String {
        match r.scope.as_str() {
            "all" => self.l.t("alerts.scope_all").to_string(),
            "nodes" => self
                .nodes
                .iter()
                .filter(|(id, _)| r.scope_ids.contains(id))
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            _ => format!("{} {:?}", self.l.t("alerts.scope_instances"), r.scope_ids),
        }
    }
}

async fn render_rules(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    render_rule_form(app, ctx, form, errs, None).await
}

async fn render_rule_form(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
    editing: Option<i64>,
) -> Result<Response, AppError> {
    html(&RulesPage {
        editing,
        l: ctx.nav("alerts").l,
        rules: manage::rules(&app.db).await?,
        // the lab's channels (a customer's own get their tenant's alerts)
        channels: channels::list(&app.db, crate::ids::Scope::All)
            .await?
            .into_iter()
            .filter(|c| c.tenant_id.is_none())
            .collect(),
        nodes: node_names(app).await?,
        users: manage::notify_choices(&app.db).await?,
        form,
        errs,
    })
}

async fn rules_page(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    let mut form = HashMap::new();
    for (k, v) in [
        ("level", "P2"),
        ("condition", ">"),
        ("duration", "60"),
        ("silence", "3600"),
        ("enabled", "on"),
    ] {
        form.insert(k.to_string(), v.to_string());
    }
    render_rules(&app, ctx, FormValues::from_map(form), FormErrs::default()).await
}

/// Ids of the ticked `prefix{id}` checkboxes.
fn ticked(form: &HashMap<String, String>, prefix: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = form
        .keys()
        .filter_map(|k| k.strip_prefix(prefix)?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// A number field as the API's JSON would carry it (text that is not a
/// number stays text, so the validators refuse it by name).
fn number(s: &str) -> Option<Value> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    Some(match s.parse::<f64>() {
        Ok(x) if s.parse::<i64>().is_ok() => Value::from(x as i64),
        Ok(x) => Value::from(x),
        Err(_) => Value::String(s.to_string()),
    })
}

fn rule_input(form: &HashMap<String, String>) -> RuleIn {
    let v = |k: &str| form.get(k).cloned().unwrap_or_default();
    let nodes = ticked(form, "node_");
    let event = Some(v("event")).filter(|e| !e.is_empty());
    let input = RuleIn {
        name: v("name"),
        description: v("description"),
        scope: Some(if nodes.is_empty() { "all" } else { "nodes" }.to_string()),
        scope_ids: nodes,
        target: Some(v("target")).filter(|s| !s.is_empty()),
        metric: Some(v("metric")),
        condition: Some(v("condition")),
        threshold: Some(number(&v("threshold")).unwrap_or(Value::Null)),
        duration: number(&v("duration")),
        level: v("level"),
        enabled: Some(Value::Bool(form.contains_key("enabled"))),
        channels: ticked(form, "channel_"),
        notify_users: ticked(form, "user_"),
        silence: number(&v("silence")),
        tags: v("tags")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        ..RuleIn::default()
    };
    // An event rule: the event, and N where one was given.
    match event {
        Some(e) => RuleIn {
            event: Some(e),
            target: None,
            metric: None,
            condition: None,
            threshold: number(&v("threshold")),
            ..input
        },
        None => input,
    }
}

async fn create_rule(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    match manage::create_rule(&app.db, by(&ctx, src), rule_input(&form)).await {
        Ok(_) => Ok(Redirect::to("/alert-rules").into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp = render_rules(&app, ctx, FormValues::from_map(form), errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

/// The form's fields of a stored rule (its first condition; the others
/// are kept on save).
fn rule_form(r: &RuleView) -> FormValues {
    let first = r.conditions.first();
    let mut form: HashMap<String, String> = [
        ("name", r.name.clone()),
        ("description", r.description.clone()),
        ("level", r.level.as_str().to_string()),
        ("event", r.event.clone().unwrap_or_default()),
        (
            "target",
            if r.event.is_some() {
                String::new()
            } else {
                r.target.clone()
            },
        ),
        (
            "metric",
            first.map(|c| c.metric.clone()).unwrap_or_default(),
        ),
        (
            "condition",
            first.map_or_else(|| ">".into(), |c| c.condition.clone()),
        ),
        (
            "threshold",
            match (&r.event, first) {
                (Some(_), _) => r.threshold.to_string(),
                (None, Some(c)) => c.threshold.to_string(),
                (None, None) => String::new(),
            },
        ),
        ("duration", r.duration.to_string()),
        ("silence", r.silence.to_string()),
        ("tags", r.tags.join(", ")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if r.enabled {
        form.insert("enabled".into(), "on".into());
    }
    if r.scope == "nodes" {
        for id in &r.scope_ids {
            form.insert(format!("node_{id}"), "on".into());
        }
    }
    for id in &r.channels {
        form.insert(format!("channel_{id}"), "on".into());
    }
    for id in &r.notify_users {
        form.insert(format!("user_{id}"), "on".into());
    }
    FormValues::from_map(form)
}

/// The rule's edit page: the create form, filled with the rule.
async fn edit_rule_page(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let r = manage::rule(&app.db, RuleId(id)).await?;
    render_rule_form(&app, ctx, rule_form(&r), FormErrs::default(), Some(id)).await
}

/// Saves the edit form. A rule's further conditions (the form shows the
/// first), its AND/OR and a scope of chosen instances are kept.
async fn save_rule(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let stored = manage::rule(&app.db, RuleId(id)).await?;
    let mut input = rule_input(&form);
    if input.event.is_none() && stored.conditions.len() > 1 {
        let mut all = vec![manage::ConditionIn {
            metric: input.metric.take().unwrap_or_default(),
            condition: input.condition.take().unwrap_or_default(),
            threshold: input.threshold.take().unwrap_or(Value::Null),
        }];
        all.extend(
            stored
                .conditions
                .iter()
                .skip(1)
                .map(|c| manage::ConditionIn {
                    metric: c.metric.clone(),
                    condition: c.condition.clone(),
                    threshold: Value::from(c.threshold),
                }),
        );
        input.conditions = Some(all);
        input.combine = Some(stored.combine.clone());
    }
    if stored.scope == "instances" && input.scope_ids.is_empty() {
        input.scope = Some(stored.scope.clone());
        input.scope_ids = stored.scope_ids.clone();
    }
    match manage::update_rule(&app.db, by(&ctx, src), RuleId(id), input).await {
        Ok(_) => Ok(Redirect::to("/alert-rules").into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp =
                render_rule_form(&app, ctx, FormValues::from_map(form), errs, Some(id)).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

/// Switches a rule on or off (the rest of it unchanged).
async fn switch_rule(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let r = manage::rule(&app.db, RuleId(id)).await?;
    // An event rule keeps its event and N (none where the event has none).
    let event = r.event.clone().map(|e| {
        let has_n = super::EventKind::parse(&e).is_some_and(|k| k.default_threshold().is_some());
        (e, has_n.then(|| Value::from(r.threshold)))
    });
    let input = RuleIn {
        name: r.name,
        description: r.description,
        scope: Some(r.scope),
        scope_ids: r.scope_ids,
        target: Some(r.target),
        conditions: Some(
            r.conditions
                .into_iter()
                .map(|c| manage::ConditionIn {
                    metric: c.metric,
                    condition: c.condition,
                    threshold: Value::from(c.threshold),
                })
                .collect(),
        ),
        combine: Some(r.combine),
        duration: Some(Value::from(r.duration)),
        level: r.level.as_str().to_string(),
        enabled: Some(Value::Bool(!r.enabled)),
        channels: r.channels,
        notify_users: r.notify_users,
        silence: Some(Value::from(r.silence)),
        tags: r.tags,
        ..RuleIn::default()
    };
    let input = match event {
        Some((e, threshold)) => RuleIn {
            threshold,
            event: Some(e),
            target: None,
            conditions: None,
            combine: None,
            ..input
        },
        None => input,
    };
    manage::update_rule(&app.db, by(&ctx, src), RuleId(id), input).await?;
    Ok(Redirect::to("/alert-rules").into_response())
}

async fn delete_rule(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    manage::delete_rule(&app.db, by(&ctx, src), RuleId(id)).await?;
    Ok(Redirect::to("/alert-rules").into_response())
}

/// The text key of a channel kind.
pub fn kind_key<S: AsRef<str>>(kind: S) -> &'static str {
    match kind.as_ref() {
        "email" => "alerts.kind_email",
        "dingtalk" => "alerts.kind_dingtalk",
        "wecom" => "alerts.kind_wecom",
        "feishu" => "alerts.kind_feishu",
        "slack" => "alerts.kind_slack",
        "telegram" => "alerts.kind_telegram",
        _ => "alerts.kind_webhook",
    }
}

#[derive(Template)]
#[template(path = "alerts/windows.html")]
struct WindowsPage {
    l: Layout,
    windows: Vec<WindowView>,
    nodes: Vec<(i64, String)>,
    form: FormValues,
    errs: FormErrs,
}

async fn render_windows(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    html(&WindowsPage {
        l: ctx.nav("alerts").l,
        windows: manage::windows(&app.db, None).await?,
        nodes: node_names(app).await?,
        form,
        errs,
    })
}

#[derive(Template)]
#[template(path = "alerts/node_windows.html")]
struct NodeWindows {
    l: Layout,
    windows: Vec<WindowView>,
}

/// The node page's list of the node's maintenance windows (htmx).
async fn node_windows(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let windows = manage::windows(&app.db, Some(NodeId(id))).await?;
    html(&NodeWindows {
        l: ctx.nav("nodes").l,
        windows,
    })
}

async fn windows_page(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    let now = crate::db::now();
    let form = FormValues::from_pairs(&[
        ("starts_at", fmt_minute(now)),
        ("ends_at", fmt_minute(now + 7200)),
    ]);
    render_windows(&app, ctx, form, FormErrs::default()).await
}

const MINUTE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");

/// A time for a `datetime-local` input (UTC, to the minute).
fn fmt_minute(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(MINUTE).ok())
        .unwrap_or_default()
}

/// A `datetime-local` value (UTC) as unix seconds.
fn parse_minute(s: &str) -> Option<i64> {
    time::PrimitiveDateTime::parse(s.trim(), MINUTE)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

async fn create_window(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let v = |k: &str| form.get(k).cloned().unwrap_or_default();
    let input = WindowIn {
        node_id: v("node_id").parse().ok(),
        starts_at: parse_minute(&v("starts_at")),
        ends_at: parse_minute(&v("ends_at")),
        reason: v("reason"),
    };
    match manage::save_window(&app.db, by(&ctx, src), None, input).await {
        Ok(_) => Ok(Redirect::to("/maintenance-windows").into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp = render_windows(&app, ctx, FormValues::from_map(form), errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

async fn delete_window(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    manage::delete_window(&app.db, by(&ctx, src), id).await?;
    Ok(Redirect::to("/maintenance-windows").into_response())
}
