//! The notification channel pages (通知渠道): the list with the create
//! form (a customer owner is offered only the kinds they may create), one
//! channel with its delivery log, its edit form and Test button, and
//! delete.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::channels::{self, ChannelIn, ChannelView, TestResult};
use super::pages::by;
use super::store::DeliveryRow;
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::web::extract::ApiPath;
use crate::web::form::FormValues;
use crate::web::render::{FormErrs, Layout, html};

pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/notification-channels",
            get(channels_page).post(create_channel),
        )
        .route(
            "/notification-channels/{id}",
            get(channel_page).post(update_channel),
        )
        .route("/notification-channels/{id}/test", post(test_channel))
        .route("/notification-channels/{id}/delete", post(delete_channel))
}

#[derive(Template)]
#[template(path = "alerts/channels.html")]
struct ChannelsPage {
    l: Layout,
    channels: Vec<ChannelView>,
    /// The kinds the reader may create (a customer: e-mail and webhook).
    kinds: &'static [&'static str],
    /// Whether the reader may set a proxy (the lab's administrators).
    proxy_allowed: bool,
    form: FormValues,
    errs: FormErrs,
}

async fn render_channels(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let scope = ctx.me.scope();
    let (kinds, proxy_allowed) = channels::kinds_for(scope);
    html(&ChannelsPage {
        l: ctx.nav("alerts").l,
        channels: channels::list(&app.db, scope).await?,
        kinds,
        proxy_allowed,
        form,
        errs,
    })
}

async fn channels_page(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    let form = FormValues::from_pairs(&[("kind", "webhook".to_string())]);
    render_channels(&app, ctx, form, FormErrs::default()).await
}

async fn create_channel(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let input = channel_input(&form, Value::Bool(true));
    match channels::create(&app.db, &app.sealer, by(&ctx, src), ctx.me.scope(), input).await {
        Ok(c) => Ok(Redirect::to(&format!("/notification-channels/{}", c.id)).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut shown = form;
            shown.remove("secret");
            let mut resp = render_channels(&app, ctx, FormValues::from_map(shown), errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

/// A channel as its form submits it (every kind's fields; the kind picks).
fn channel_input(form: &HashMap<String, String>, enabled: Value) -> ChannelIn {
    let v = |k: &str| form.get(k).cloned().unwrap_or_default();
    ChannelIn {
        name: v("name"),
        kind: v("kind"),
        url: v("url"),
        secret: Some(v("secret")),
        enabled: Some(enabled),
        host: v("host"),
        port: Some(Value::String(v("port"))),
        security: v("security"),
        user: v("user"),
        password: None,
        from: v("from"),
        to: Some(Value::String(v("to"))),
        chat_id: v("chat_id"),
        language: v("language"),
        proxy: v("proxy"),
        tenant_id: None,
    }
}

/// The form values of a channel as stored (never its secret).
fn channel_form(c: &ChannelView) -> FormValues {
    FormValues::from_pairs(&[
        ("name", c.name.clone()),
        ("kind", c.kind.clone()),
        ("url", c.url.clone()),
        ("host", c.settings.host.clone()),
        ("port", c.port_text()),
        ("security", c.security().to_string()),
        ("user", c.settings.user.clone()),
        ("from", c.settings.from.clone()),
        ("to", c.to_text()),
        ("chat_id", c.settings.chat_id.clone()),
        ("language", c.settings.language.clone()),
        ("proxy", c.proxy.clone()),
        ("enabled", if c.enabled { "1" } else { "" }.to_string()),
    ])
}

#[derive(Template)]
#[template(path = "alerts/channel.html")]
struct ChannelPage {
    l: Layout,
    channel: ChannelView,
    log: Vec<DeliveryRow>,
    test: Option<TestResult>,
    proxy_allowed: bool,
    form: FormValues,
    errs: FormErrs,
}

async fn render_channel(
    app: &App,
    ctx: PageCtx,
    id: i64,
    test: Option<TestResult>,
) -> Result<Response, AppError> {
    let channel = channels::get(&app.db, ctx.me.scope(), id).await?;
    let form = channel_form(&channel);
    render_channel_with(app, ctx, channel, test, form, FormErrs::default()).await
}

async fn render_channel_with(
    app: &App,
    ctx: PageCtx,
    channel: ChannelView,
    test: Option<TestResult>,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let id = channel.id;
    let scope = ctx.me.scope();
    html(&ChannelPage {
        l: ctx.nav("alerts").l,
        channel,
        log: channels::deliveries(&app.db, scope, id).await?,
        test,
        proxy_allowed: channels::kinds_for(scope).1,
        form,
        errs,
    })
}

async fn update_channel(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let cur = channels::get(&app.db, ctx.me.scope(), id).await?;
    let enabled = FormValues::from_map(form.clone()).bool_value("enabled");
    let mut input = channel_input(&form, enabled.unwrap_or(Value::Bool(false)));
    input.kind = cur.kind.clone();
    match channels::update(
        &app.db,
        &app.sealer,
        by(&ctx, src),
        ctx.me.scope(),
        id,
        input,
    )
    .await
    {
        Ok(c) => Ok(Redirect::to(&format!("/notification-channels/{}", c.id)).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut shown = form;
            shown.remove("secret");
            shown.insert("kind".into(), cur.kind.clone());
            let form = FormValues::from_map(shown);
            let mut resp = render_channel_with(&app, ctx, cur, None, form, errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

async fn channel_page(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    render_channel(&app, ctx, id, None).await
}

async fn test_channel(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let by = by(&ctx, src);
    let scope = ctx.me.scope();
    let r = channels::test(&app.db, app.sealer.clone(), by, scope, id, super::BACKOFF).await?;
    render_channel(&app, ctx, id, Some(r)).await
}

async fn delete_channel(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    channels::delete(&app.db, by(&ctx, src), ctx.me.scope(), id).await?;
    Ok(Redirect::to("/notification-channels").into_response())
}
