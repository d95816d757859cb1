//! SQL for SSH keys. Every read and change made for a user names that user in
//! the query, so another user's key is simply not found.

use crate::paging::{Page, Window};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::model::{NewKey, SshKey};
use crate::auth::UserId;

const COLS: &str = "id, name, algorithm, fingerprint, public_key, created_at, last_used_at";

fn key_row(r: &Row<'_>) -> rusqlite::Result<SshKey> {
    Ok(SshKey {
        id: r.get(0)?,
        name: r.get(1)?,
        algorithm: r.get(2)?,
        fingerprint: r.get(3)?,
        public_key: r.get(4)?,
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
    })
}

/// The user's keys of `window`, oldest first, and how many there are.
pub fn list(conn: &Connection, user: UserId, window: Window) -> rusqlite::Result<Page<SshKey>> {
    let sql = format!("SELECT {COLS} FROM ssh_keys WHERE user_id = ?1 ORDER BY id");
    crate::paging::query(conn, &sql, &[&user.0], window, key_row)
}

pub fn get(conn: &Connection, user: UserId, id: i64) -> rusqlite::Result<Option<SshKey>> {
    conn.query_row(
        &format!("SELECT {COLS} FROM ssh_keys WHERE id = ?1 AND user_id = ?2"),
        params![id, user.0],
        key_row,
    )
    .optional()
}

/// Inserts `key` for `user`; a fingerprint `user` registered already is a
/// UNIQUE violation (other users' keys do not matter).
pub fn insert(conn: &Connection, user: UserId, key: &NewKey, now: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO ssh_keys (user_id, name, algorithm, public_key, fingerprint, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user.0,
            key.name,
            key.algorithm,
            key.public_key,
            key.fingerprint,
            now
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Deletes `user`'s key `id`; false when `user` has no such key.
pub fn delete(conn: &Connection, user: UserId, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM ssh_keys WHERE id = ?1 AND user_id = ?2",
        params![id, user.0],
    )? == 1)
}

/// The key id and owner of the key with `fingerprint` among the keys of the
/// user named `username` (sign-in lookup).
pub fn find(
    conn: &Connection,
    username: &str,
    fingerprint: &str,
) -> rusqlite::Result<Option<(i64, UserId)>> {
    conn.query_row(
        "SELECT k.id, k.user_id FROM ssh_keys k JOIN users u ON u.id = k.user_id \
         WHERE u.username = ?1 AND k.fingerprint = ?2",
        [username, fingerprint],
        |r| Ok((r.get(0)?, UserId(r.get(1)?))),
    )
    .optional()
}

/// Records a sign-in with key `id`; false when the key is gone.
pub fn touch(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE ssh_keys SET last_used_at = ?2 WHERE id = ?1",
        params![id, now],
    )? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    fn user(conn: &Connection, name: &str) -> UserId {
        conn.execute(
            "INSERT INTO users (username, role, password_hash, created_at, updated_at) \
             VALUES (?1, 'admin', 'x', 0, 0)",
            [name],
        )
        .unwrap();
        UserId(conn.last_insert_rowid())
    }

    fn key(fp: &str) -> NewKey {
        NewKey {
            name: "laptop".into(),
            algorithm: "ssh-ed25519".into(),
            public_key: "ssh-ed25519 AAAA".into(),
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn keys_are_scoped_to_their_owner() {
        let conn = db::memory().unwrap();
        let (alice, bob) = (user(&conn, "alice"), user(&conn, "bob"));
        let a = insert(&conn, alice, &key("SHA256:a"), 10).unwrap();
        let b = insert(&conn, bob, &key("SHA256:b"), 11).unwrap();
        assert_eq!(
            list(&conn, alice, Window::first(10))
                .unwrap()
                .items
                .iter()
                .map(|k| k.id)
                .collect::<Vec<_>>(),
            [a]
        );
        assert!(get(&conn, alice, b).unwrap().is_none());
        assert!(!delete(&conn, alice, b).unwrap());
        assert!(get(&conn, bob, b).unwrap().is_some());
        let got = get(&conn, alice, a).unwrap().unwrap();
        assert_eq!((got.created_at, got.last_used_at), (10, None));
        assert!(delete(&conn, alice, a).unwrap());
        assert_eq!(list(&conn, alice, Window::first(10)).unwrap().total, 0);
    }

    #[test]
    fn a_fingerprint_is_unique_per_user_and_found_by_user() {
        let conn = db::memory().unwrap();
        let (alice, bob) = (user(&conn, "alice"), user(&conn, "bob"));
        let a = insert(&conn, alice, &key("SHA256:same"), 1).unwrap();
        let e = insert(&conn, alice, &key("SHA256:same"), 2).unwrap_err();
        assert!(db::is_unique_violation(&e), "{e}");
        let b = insert(&conn, bob, &key("SHA256:same"), 2).unwrap();
        assert_eq!(
            find(&conn, "alice", "SHA256:same").unwrap(),
            Some((a, alice))
        );
        assert_eq!(find(&conn, "bob", "SHA256:same").unwrap(), Some((b, bob)));
        assert_eq!(find(&conn, "carol", "SHA256:same").unwrap(), None);
        assert_eq!(find(&conn, "alice", "SHA256:other").unwrap(), None);
        assert!(touch(&conn, a, 99).unwrap());
        assert_eq!(
            get(&conn, alice, a).unwrap().unwrap().last_used_at,
            Some(99)
        );
        assert!(!touch(&conn, a + 100, 99).unwrap());
    }
}
