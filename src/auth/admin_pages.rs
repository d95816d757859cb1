//! Pages for managing users, tenants and the role/permission matrix. Forms
//! post to the same operations as the JSON API (`accounts`).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::accounts::{self, TenantInput, TenantPatch, UserInput, UserPatch};
use super::features::{self, ActionRow, Held};
use super::model::{Role, Tenant, TenantId, User, UserId};
use super::pages::PageCtx;
use super::permissions::{self, Permission};
use super::store;
use crate::app::App;
use crate::audit::Source;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::paging::{Pager, Paging, SearchForm};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::render::{FormErrs, Layout, form_error, html, is_htmx};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/users", get(users).post(user_create))
        .route("/users/{id}", get(user_edit).post(user_save))
        .route("/users/{id}/reset-password", post(user_reset))
        .route("/users/{id}/unlock", post(user_unlock))
        .route("/tenants", get(tenants).post(tenant_create))
        .route("/tenants/{id}", get(tenant_edit).post(tenant_save))
        .route("/permissions", get(matrix))
        .route("/permissions/{role}/{id}", post(toggle))
        .route(
            "/permissions/{role}/action/{feature}/{action}",
            post(toggle_action),
        )
}

/// Roles the caller may hand out.
fn assignable_roles(me: &User) -> Vec<Role> {
    if me.role == Role::Admin {
        Role::ALL.to_vec()
    } else {
        Role::CUSTOMER.to_vec()
    }
}

/// Empty form fields mean "none" for optional numbers.
fn opt_id(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct UserForm {
    username: String,
    display_name: String,
    role: String,
    tenant_id: String,
    password: String,
    enabled: Option<String>,
    email: String,
    phone: String,
    /// The language of what is sent to the user ("" = the default).
    language: String,
}

/// What the user forms show back.
#[derive(Debug, Default, Clone)]
struct UserFormView {
    username: String,
    display_name: String,
    role: String,
    tenant_id: Option<i64>,
    enabled: bool,
    email: String,
    phone: String,
    language: String,
}

impl UserFormView {
    fn is_tenant(&self, id: &TenantId) -> bool {
        self.tenant_id == Some(id.0)
    }
}

impl From<&UserForm> for UserFormView {
    fn from(f: &UserForm) -> Self {
        Self {
            username: f.username.clone(),
            display_name: f.display_name.clone(),
            role: f.role.clone(),
            tenant_id: opt_id(&f.tenant_id),
            enabled: f.enabled.is_some(),
            email: f.email.clone(),
            phone: f.phone.clone(),
            language: f.language.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "auth/users.html")]
struct UsersPage {
    l: Layout,
    users: Vec<User>,
    pager: Pager,
    sf: SearchForm,
    tenants: Vec<Tenant>,
    roles: Vec<Role>,
    is_admin: bool,
    can_create: bool,
    now: i64,
    form: UserFormView,
    errs: FormErrs,
    created: String,
    temp_password: String,
}

impl UsersPage {
    fn tenant_name(&self, id: &Option<TenantId>) -> String {
        match id {
            None => "–".into(),
            Some(id) => self
                .tenants
                .iter()
                .find(|t| t.id == *id)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| format!("#{}", id.0)),
        }
    }
}

async fn users_page(
    app: &App,
    ctx: PageCtx,
    paging: &Paging,
    form: UserFormView,
    errs: FormErrs,
    created: (String, String),
) -> Result<Response, AppError> {
    let (scope, w, search) = (ctx.me.scope(), paging.window, paging.search());
    search.status_of(&store::USER_STATUSES)?;
    // All tenants: the form offers them and the rows name them.
    let (users, tenants) = app
        .db
        .read(move |c| {
            Ok::<_, AppError>((
                store::users_page(c, scope, &search, w)?,
                store::list_tenants(c, scope)?,
            ))
        })
        .await?;
    let pager = paging.pager(users.total, users.items.len());
    let users = users.items;
    let me = ctx.me.user.clone();
    let can_create = me.role != Role::CustomerMember;
    html(&UsersPage {
        l: ctx.nav("users").l,
        users,
        pager,
        sf: SearchForm::new(
            "/users",
            paging,
            store::USER_STATUSES.map(|s| (s, status_key(s))),
        ),
        tenants,
        roles: assignable_roles(&me),
        is_admin: me.role == Role::Admin,
        can_create,
        now: crate::db::now(),
        form,
        errs,
        created: created.0,
        temp_password: created.1,
    })
}

/// The i18n key of a user status word ([`store::USER_STATUSES`]).
fn status_key(s: &str) -> &'static str {
    match s {
        "disabled" => "status.disabled",
        "locked" => "status.locked",
        _ => "status.enabled",
    }
}

async fn users(State(app): State<App>, ctx: PageCtx, paging: Paging) -> Result<Response, AppError> {
    let form = UserFormView {
        role: Role::CustomerMember.as_str().into(),
        ..Default::default()
    };
    users_page(
        &app,
        ctx,
        &paging,
        form,
        FormErrs::default(),
        Default::default(),
    )
    .await
}

async fn user_create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<UserForm>,
) -> Result<Response, AppError> {
    let input = UserInput {
        username: f.username.clone(),
        display_name: f.display_name.clone(),
        role: f.role.clone(),
        tenant_id: opt_id(&f.tenant_id),
        password: Some(f.password.clone()),
        email: f.email.clone(),
        phone: f.phone.clone(),
    };
    match accounts::create_user(&app, &ctx.me, input, &src).await {
        Ok((user, temp)) => {
            let form = UserFormView {
                role: f.role,
                ..Default::default()
            };
            users_page(
                &app,
                ctx,
                &Paging::first("/users"),
                form,
                FormErrs::default(),
                (user.username, temp.unwrap_or_default()),
            )
            .await
        }
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let (first, form) = (Paging::first("/users"), UserFormView::from(&f));
            let mut resp = users_page(&app, ctx, &first, form, errs, Default::default()).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "auth/user_edit.html")]
struct UserEditPage {
    l: Layout,
    user: User,
    tenants: Vec<Tenant>,
    roles: Vec<Role>,
    is_admin: bool,
    form: UserFormView,
    errs: FormErrs,
    /// Editing oneself: no reset (that is a password change).
    is_self: bool,
    /// The temporary password of a reset just done (shown once).
    temp_password: String,
}

impl UserFormView {
    fn of(user: &User) -> Self {
        Self {
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            role: user.role.as_str().into(),
            tenant_id: user.tenant_id.map(|t| t.0),
            enabled: user.enabled,
            email: user.email.clone(),
            phone: user.phone.clone(),
            language: user.language.clone(),
        }
    }
}

async fn load_user(app: &App, ctx: &PageCtx, id: i64) -> Result<(User, Vec<Tenant>), AppError> {
    let scope = ctx.me.scope();
    app.db
        .read(move |c| {
            let user = store::get_user(c, scope, UserId(id))?.ok_or(AppError::NotFound)?;
            Ok((user, store::list_tenants(c, scope)?))
        })
        .await
}

async fn user_edit(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let (user, tenants) = load_user(&app, &ctx, id).await?;
    edit_page(ctx, user, tenants, String::new())
}

fn edit_page(
    ctx: PageCtx,
    user: User,
    tenants: Vec<Tenant>,
    temp_password: String,
) -> Result<Response, AppError> {
    let me = ctx.me.user.clone();
    html(&UserEditPage {
        l: ctx.nav("users").l,
        form: UserFormView::of(&user),
        is_self: user.id == me.id,
        user,
        tenants,
        roles: assignable_roles(&me),
        is_admin: me.role == Role::Admin,
        errs: FormErrs::default(),
        temp_password,
    })
}

/// Resets the user's password; the page shows the temporary one once.
async fn user_reset(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let (_, temp) = accounts::reset_password(&app, &ctx.me, UserId(id), &src).await?;
    let (user, tenants) = load_user(&app, &ctx, id).await?;
    edit_page(ctx, user, tenants, temp)
}

/// Lifts the user's lockout, then shows their page again.
async fn user_unlock(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    accounts::unlock(&app, &ctx.me, UserId(id), &src).await?;
    Ok(Redirect::to(&format!("/users/{id}")).into_response())
}

async fn user_save(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<UserForm>,
) -> Result<Response, AppError> {
    let is_admin = ctx.me.user.role == Role::Admin;
    let patch = UserPatch {
        display_name: Some(f.display_name.clone()),
        role: Some(f.role.clone()),
        tenant_id: is_admin.then(|| opt_id(&f.tenant_id)),
        enabled: Some(f.enabled.is_some()),
        email: Some(f.email.clone()),
        phone: Some(f.phone.clone()),
        language: Some(f.language.clone()),
    };
    match accounts::update_user(&app, &ctx.me, UserId(id), patch, &src).await {
        Ok(_) => Ok(Redirect::to("/users").into_response()),
        Err(e) => {
            let (user, tenants) = load_user(&app, &ctx, id).await?;
            let mut form = UserFormView::from(&f);
            form.username = user.username.clone();
            let (tr, me) = (ctx.tr(), ctx.me.user.clone());
            let l = ctx.nav("users").l;
            form_error(
                e,
                |errs| {
                    html(&UserEditPage {
                        l,
                        user,
                        tenants,
                        roles: assignable_roles(&me),
                        is_admin,
                        form,
                        errs,
                        is_self: id == me.id.0,
                        temp_password: String::new(),
                    })
                },
                tr,
            )
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct TenantForm {
    name: String,
    company_code: String,
    remark: String,
    enabled: Option<String>,
    contact_person: String,
    contact_email: String,
    contact_phone: String,
    /// Quotas (admins only; absent when the form has no quota inputs).
    quota_gpus: Option<String>,
    quota_instances: Option<String>,
    quota_cpu_cores: Option<String>,
    quota_memory_gb: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct TenantFormView {
    name: String,
    company_code: String,
    remark: String,
    enabled: bool,
    contact_person: String,
    contact_email: String,
    contact_phone: String,
    quota: [String; 4],
    /// Whether the form shows the quota inputs (an admin editing).
    quota_edit: bool,
}

impl From<&TenantForm> for TenantFormView {
    fn from(f: &TenantForm) -> Self {
        Self {
            name: f.name.clone(),
            company_code: f.company_code.clone(),
            remark: f.remark.clone(),
            enabled: f.enabled.is_some(),
            contact_person: f.contact_person.clone(),
            contact_email: f.contact_email.clone(),
            contact_phone: f.contact_phone.clone(),
            quota: [
                &f.quota_gpus,
                &f.quota_instances,
                &f.quota_cpu_cores,
                &f.quota_memory_gb,
            ]
            .map(|q| q.clone().unwrap_or_default()),
            quota_edit: false,
        }
    }
}

#[derive(Template)]
#[template(path = "auth/tenants.html")]
struct TenantsPage {
    l: Layout,
    tenants: Vec<Tenant>,
    pager: Pager,
    can_create: bool,
    can_edit: bool,
    action: String,
    editing: bool,
    form: TenantFormView,
    errs: FormErrs,
}

async fn tenants_page(
    app: &App,
    ctx: PageCtx,
    paging: &Paging,
    form: TenantFormView,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let (scope, w) = (ctx.me.scope(), paging.window);
    let tenants = app
        .db
        .read(move |c| store::tenants_page(c, scope, w).map_err(AppError::from))
        .await?;
    let admin = ctx.me.user.role == Role::Admin;
    html(&TenantsPage {
        l: ctx.nav("tenants").l,
        pager: paging.pager(tenants.total, tenants.items.len()),
        tenants: tenants.items,
        can_create: admin,
        can_edit: admin,
        action: "/tenants".into(),
        editing: false,
        form,
        errs,
    })
}

async fn tenants(
    State(app): State<App>,
    ctx: PageCtx,
    paging: Paging,
) -> Result<Response, AppError> {
    let form = TenantFormView::default();
    tenants_page(&app, ctx, &paging, form, FormErrs::default()).await
}

async fn tenant_create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<TenantForm>,
) -> Result<Response, AppError> {
    let input = TenantInput {
        name: f.name.clone(),
        company_code: f.company_code.clone(),
        remark: f.remark.clone(),
        contact_person: f.contact_person.clone(),
        contact_email: f.contact_email.clone(),
        contact_phone: f.contact_phone.clone(),
    };
    match accounts::create_tenant(&app, &ctx.me, input, &src).await {
        Ok(_) => Ok(Redirect::to("/tenants").into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let (first, form) = (Paging::first("/tenants"), TenantFormView::from(&f));
            let mut resp = tenants_page(&app, ctx, &first, form, errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "auth/tenant_edit.html")]
struct TenantEditPage {
    l: Layout,
    action: String,
    editing: bool,
    form: TenantFormView,
    errs: FormErrs,
    /// The quotas with current use, for everyone who sees the page:
    /// (label key, quota or blank for unlimited, in use).
    quota_rows: Vec<(&'static str, String, i64)>,
}

async fn tenant_edit(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let scope = ctx.me.scope();
    let t = app
        .db
        .read(move |c| store::get_tenant(c, scope, TenantId(id)).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    let quota_rows = super::quota::rows(&t);
    let form = TenantFormView {
        quota: [0, 1, 2, 3].map(|i| quota_rows[i].1.clone()),
        quota_edit: ctx.me.user.role == Role::Admin,
        name: t.name,
        company_code: t.company_code,
        remark: t.remark,
        enabled: t.enabled,
        contact_person: t.contact_person,
        contact_email: t.contact_email,
        contact_phone: t.contact_phone,
    };
    html(&TenantEditPage {
        l: ctx.nav("tenants").l,
        action: format!("/tenants/{id}"),
        editing: true,
        form,
        errs: FormErrs::default(),
        quota_rows,
    })
}

async fn tenant_save(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<TenantForm>,
) -> Result<Response, AppError> {
    let patch = TenantPatch {
        name: Some(f.name.clone()),
        company_code: Some(f.company_code.clone()),
        remark: Some(f.remark.clone()),
        enabled: Some(f.enabled.is_some()),
        contact_person: Some(f.contact_person.clone()),
        contact_email: Some(f.contact_email.clone()),
        contact_phone: Some(f.contact_phone.clone()),
        quota_gpus: super::quota::from_form(f.quota_gpus.as_deref()),
        quota_instances: super::quota::from_form(f.quota_instances.as_deref()),
        quota_cpu_cores: super::quota::from_form(f.quota_cpu_cores.as_deref()),
        quota_memory_gb: super::quota::from_form(f.quota_memory_gb.as_deref()),
    };
    let quota_edit = ctx.me.user.role == Role::Admin;
    match accounts::update_tenant(&app, &ctx.me, TenantId(id), patch, &src).await {
        Ok(_) => Ok(Redirect::to("/tenants").into_response()),
        Err(e) => {
            let tr = ctx.tr();
            let l = ctx.nav("tenants").l;
            let form = TenantFormView {
                quota_edit,
                ..TenantFormView::from(&f)
            };
            form_error(
                e,
                |errs| {
                    html(&TenantEditPage {
                        l,
                        action: format!("/tenants/{id}"),
                        editing: true,
                        form,
                        errs,
                        quota_rows: Vec::new(),
                    })
                },
                tr,
            )
        }
    }
}

#[derive(Template)]
#[template(path = "auth/permissions.html")]
struct MatrixPage {
    l: Layout,
    /// The raw routes (the detail view, `?view=routes`).
    perms: Vec<Permission>,
    /// The matrix in words: each action, and whether it starts a feature.
    rows: Vec<(bool, ActionRow)>,
    routes: bool,
    zh: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MatrixQuery {
    view: String,
}

async fn matrix(
    State(app): State<App>,
    ctx: PageCtx,
    ApiQuery(q): ApiQuery<MatrixQuery>,
) -> Result<Response, AppError> {
    let perms = app
        .db
        .read(|c| permissions::list(c).map_err(AppError::from))
        .await?;
    let zh = ctx.tr().lang == Lang::ZhCn;
    let mut last = "";
    let rows = features::rows(perms.clone())
        .into_iter()
        .map(|r| {
            let first = r.feature != last;
            last = r.feature;
            (first, r)
        })
        .collect();
    html(&MatrixPage {
        l: ctx.nav("permissions").l,
        perms,
        rows,
        routes: q.view == "routes",
        zh,
    })
}

#[derive(Template)]
#[template(path = "auth/action_cell.html")]
struct ActionCell<'a> {
    l: Layout,
    r: ActionRow,
    role: &'a str,
    held: Held,
}

async fn toggle_action(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath((role, feature, action)): ApiPath<(String, String, String)>,
    Form(f): Form<ToggleForm>,
) -> Result<Response, AppError> {
    let granted = f.granted == "1";
    let r =
        accounts::set_action_grant(&app, &ctx.me, &role, &feature, &action, granted, &src).await?;
    if !is_htmx(&headers) {
        return Ok(Redirect::to("/permissions").into_response());
    }
    let held = r.held(&role);
    html(&ActionCell {
        l: ctx.l,
        r,
        role: &role,
        held,
    })
}

#[derive(Template)]
#[template(path = "auth/permission_cell.html")]
struct CellFragment<'a> {
    l: Layout,
    p: Permission,
    role: &'a str,
    granted: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToggleForm {
    granted: String,
}

async fn toggle(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath((role, id)): ApiPath<(String, i64)>,
    Form(f): Form<ToggleForm>,
) -> Result<Response, AppError> {
    let p = accounts::set_grant(&app, &ctx.me, &role, id, f.granted == "1", &src).await?;
    if !is_htmx(&headers) {
        return Ok(Redirect::to("/permissions").into_response());
    }
    let granted = if role == "customer_owner" {
        p.customer_owner
    } else {
        p.customer_member
    };
    html(&CellFragment {
        l: ctx.l,
        p,
        role: &role,
        granted,
    })
}
