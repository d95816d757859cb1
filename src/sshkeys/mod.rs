//! SSH public keys (SSH 公钥): each user registers their own keys for
//! public-key sign-in at the jumpbox. Keys are personal: every operation is
//! scoped to the caller, admins included. A user holds a key (by its SHA-256
//! fingerprint) once; whether other users hold it too is nobody's business
//! (the jumpbox looks a key up among the keys of the user the login names).
//!
//! The jumpbox uses `find` and `touch`; the pages and the API use the rest.

pub mod api;
pub mod model;
pub mod pages;
pub mod store;

use rusqlite::TransactionBehavior;
use serde_json::json;

use crate::app::App;
use crate::audit::{self, Event, Source};
use crate::auth::{CurrentUser, UserId};
use crate::error::{AppError, FieldError, FieldErrors};
use model::{KeyInput, NewKey, SshKey};

/// The caller's own keys of `window`, oldest first, and how many there are.
pub async fn list(
    app: &App,
    me: &CurrentUser,
    window: crate::paging::Window,
) -> Result<crate::paging::Page<SshKey>, AppError> {
    let uid = me.user.id;
    app.db
        .read(move |c| store::list(c, uid, window).map_err(AppError::from))
        .await
}

/// Registers a key for the caller. A key the caller registered already is a
/// 409 on `public_key` whatever its comment; other users' keys do not count.
pub async fn add(
    app: &App,
    me: &CurrentUser,
    input: &KeyInput,
    src: &Source,
) -> Result<SshKey, AppError> {
    let key = NewKey::from_input(input).map_err(AppError::Validation)?;
    let (uid, actor, src) = (me.user.id, me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = store::insert(&tx, uid, &key, crate::db::now()).map_err(on_taken)?;
            let detail = detail(&key.name, &key.algorithm, &key.fingerprint);
            audit::append(
                &tx,
                &Event::new(&actor, &src, "sshkey.create", "ssh_key")
                    .id(id)
                    .detail(detail),
            )?;
            let saved = store::get(&tx, uid, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(saved)
        })
        .await
}

/// What the audit records of a key: enough to recognise it, not the key itself.
fn detail(name: &str, algorithm: &str, fingerprint: &str) -> serde_json::Value {
    json!({"name": name, "algorithm": algorithm, "fingerprint": fingerprint})
}

/// A duplicate fingerprint (of the caller's) is a conflict on the pasted key.
fn on_taken(e: rusqlite::Error) -> AppError {
    if crate::db::is_unique_violation(&e) {
        let err = FieldError::new("err.ssh_key_taken");
        AppError::Conflict(FieldErrors::from([("public_key", err)]))
    } else {
        AppError::from(e)
    }
}

/// Deletes one of the caller's keys; another user's key is `NotFound`.
pub async fn delete(app: &App, me: &CurrentUser, id: i64, src: &Source) -> Result<(), AppError> {
    let (uid, actor, src) = (me.user.id, me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let key = store::get(&tx, uid, id)?.ok_or(AppError::NotFound)?;
            store::delete(&tx, uid, id)?;
            let detail = detail(&key.name, &key.algorithm, &key.fingerprint);
            audit::append(
                &tx,
                &Event::new(&actor, &src, "sshkey.delete", "ssh_key")
                    .id(id)
                    .detail(detail),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await
}

/// The key matching `key` (by SHA-256 fingerprint, so the comment does not
/// matter) among the keys of the user named `username`: its id and the
/// user's. `None` when that user has no such key (or there is no such user).
///
/// This says only that the user registered the key: the caller (the
/// jumpbox) still checks that the user is enabled, not locked and in an
/// enabled tenant, and that the client proved possession of the private key.
pub async fn find(
    app: &App,
    username: &str,
    key: &russh::keys::PublicKey,
) -> Result<Option<(i64, UserId)>, AppError> {
    let (fp, name) = (model::fingerprint(key), username.to_string());
    app.db
        .read(move |c| store::find(c, &name, &fp).map_err(AppError::from))
        .await
}

/// Records that key `key_id` was just used to sign in. A key deleted in the
/// meantime is no error.
pub async fn touch(app: &App, key_id: i64) -> Result<(), AppError> {
    app.db
        .write(move |c| {
            store::touch(c, key_id, crate::db::now())
                .map(|_| ())
                .map_err(AppError::from)
        })
        .await
}
