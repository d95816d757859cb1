//! Accounts, tenants, roles, sign-in, sessions, API tokens and permissions.
//! Other capabilities use `CurrentUser`, `Scope` and `guard` from here.

pub mod accounts;
pub mod admin_pages;
pub mod api;
pub mod guard;
pub mod model;
pub mod pages;
pub mod password;
pub mod permissions;
pub mod reset;
pub mod service;
pub mod session_store;
pub mod store;

pub use guard::{AuthVia, CurrentUser};
pub use model::{Role, Scope, TenantId, User, UserId};

/// Keys in the tower-sessions record.
pub mod keys {
    pub const USER_ID: &str = "uid";
    pub const EPOCH: &str = "epoch";
    pub const CSRF: &str = "csrf";
}
