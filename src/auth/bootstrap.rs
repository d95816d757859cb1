//! The accounts' life outside the web: the first admin on an empty database
//! and the operator's password reset from the host's command line.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use super::model::{Role, random_password};
use super::store;
use crate::app::{App, StartError};
use crate::audit::{self, Actor, Event, Source};
use crate::db::DbError;

/// The file (in the data directory, mode 0600) holding the first admin's
/// temporary password until it is changed.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

pub fn initial_password_path(data_dir: &Path) -> PathBuf {
    data_dir.join(INITIAL_PASSWORD_FILE)
}

/// On a database without users: creates `admin` with a random password that
/// must be changed, writes it to a 0600 file and logs it once.
pub async fn bootstrap_admin(app: &App) -> Result<(), StartError> {
    let has_users: bool = app
        .db
        .read(|c| {
            c.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))
                .map_err(StartError::from)
        })
        .await?;
    if has_users {
        return Ok(());
    }
    let password = random_password();
    let pw = password.clone();
    let hash = app
        .hasher
        .run(move |h| h.hash(&pw))
        .await
        .map_err(|e| StartError::Hasher(e.to_string()))?
        .map_err(|e| StartError::Hasher(e.to_string()))?;
    let path = initial_password_path(&app.config.data_dir);
    crate::fsutil::write_private(&path, format!("{password}\n").as_bytes()).map_err(|source| {
        StartError::Write {
            path: path.clone(),
            source,
        }
    })?;
    app.db
        .write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let user = store::NewUser {
                username: "admin",
                display_name: "Administrator",
                role: Role::Admin,
                tenant_id: None,
                password_hash: &hash,
                must_change_password: true,
            };
            let id = store::insert_user(&tx, &user, crate::db::now())?;
            let (actor, src) = (Actor::system(), Source::local());
            audit::append(
                &tx,
                &Event::new(&actor, &src, "user.create", "user")
                    .id(id.0)
                    .detail(
                        serde_json::json!({"username": "admin", "role": "admin", "initial": true}),
                    ),
            )?;
            tx.commit().map_err(StartError::from)
        })
        .await?;
    log::warn!(
        "created the first user 'admin' with a temporary password (also in {}, mode 0600): {password} \
         -- it must be changed at first sign-in",
        path.display()
    );
    Ok(())
}

/// The operator's reset (`gpudock admin reset-password`): sets `hash` as
/// `username`'s password, to be changed at next sign-in, audited as done
/// from the command line. `false` when there is no such user.
pub fn reset_password_offline(
    c: &mut Connection,
    username: &str,
    hash: &str,
) -> Result<bool, DbError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(user) = store::user_by_name(&tx, username)? else {
        return Ok(false);
    };
    let now = crate::db::now();
    store::set_password(&tx, user.id, hash, true, now)?;
    // A reset revokes the account's API tokens too (see `accounts::reset_password`);
    // a running server ends the user's live sessions within seconds
    // (`auth::end_stale_access`).
    let tokens = store::revoke_all_tokens(&tx, user.id, now)?;
    let (actor, src) = (Actor::cli(), Source::local());
    audit::append(
        &tx,
        &Event::new(&actor, &src, "admin.reset_password", "user")
            .id(user.id.0)
            .detail(serde_json::json!({"username": username, "tokens_revoked": tokens})),
    )?;
    tx.commit()?;
    Ok(true)
}
