//! The "SSH public keys" page under My account: the caller's keys, an add
//! form that keeps what was typed on error, and a delete button per key.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::model::{KeyInput, SshKey};
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::paging::{Pager, Paging};
use crate::web::extract::ApiPath;
use crate::web::render::{FormErrs, Layout, html};

const PAGE: &str = "/account/ssh-keys";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/account/ssh-keys", get(page).post(add))
        .route("/account/ssh-keys/{id}/delete", post(delete))
}

#[derive(Template)]
#[template(path = "sshkeys/keys.html")]
struct KeysPage {
    l: Layout,
    keys: Vec<SshKey>,
    pager: Pager,
    form: KeyForm,
    errs: FormErrs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KeyForm {
    name: String,
    public_key: String,
}

async fn render(
    app: &App,
    ctx: PageCtx,
    paging: &Paging,
    form: KeyForm,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let page = super::list(app, &ctx.me, paging.window).await?;
    html(&KeysPage {
        l: ctx.nav("account").l,
        pager: paging.pager(page.total, page.items.len()),
        keys: page.items,
        form,
        errs,
    })
}

async fn page(State(app): State<App>, ctx: PageCtx, paging: Paging) -> Result<Response, AppError> {
    render(&app, ctx, &paging, KeyForm::default(), FormErrs::default()).await
}

async fn add(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(form): Form<KeyForm>,
) -> Result<Response, AppError> {
    let input = KeyInput {
        name: Some(form.name.clone()),
        public_key: Some(form.public_key.clone()),
    };
    match super::add(&app, &ctx.me, &input, &src).await {
        Ok(_) => Ok(Redirect::to(PAGE).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp = render(&app, ctx, &Paging::first(PAGE), form, errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

async fn delete(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    super::delete(&app, &me, id, &src).await?;
    Ok(Redirect::to(PAGE).into_response())
}
