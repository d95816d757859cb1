//! SQL of the proxy's sign-ins: one-time hand-offs and the browser's
//! sign-in on an app's origin, both kept as hashes of their secrets.

use rusqlite::{Connection, OptionalExtension, params};

/// A hand-off taken (it is gone from the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub user_id: i64,
    pub epoch: i64,
    pub next: String,
}

/// A browser's sign-in to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub user_id: i64,
    pub epoch: i64,
}

pub fn insert_handoff(
    c: &Connection,
    hash: &str,
    user_id: i64,
    epoch: i64,
    service: i64,
    next: &str,
    expires: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "DELETE FROM proxy_handoffs WHERE expires_at <= ?1",
        [expires - super::HANDOFF_SECS],
    )?;
    c.execute(
        "INSERT INTO proxy_handoffs (token_hash, user_id, epoch, service_id, next, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![hash, user_id, epoch, service, next, expires],
    )?;
    Ok(())
}

/// Takes the hand-off `hash` for `service` if it has not expired: a second
/// use finds nothing.
pub fn take_handoff(
    c: &Connection,
    hash: &str,
    service: i64,
    now: i64,
) -> rusqlite::Result<Option<Handoff>> {
    let found = c
        .query_row(
            "DELETE FROM proxy_handoffs WHERE token_hash = ?1 RETURNING user_id, epoch, service_id, next, expires_at",
            [hash],
            |r| {
                Ok((
                    Handoff {
                        user_id: r.get(0)?,
                        epoch: r.get(1)?,
                        next: r.get(3)?,
                    },
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    Ok(found.and_then(|(h, s, exp)| (s == service && exp > now).then_some(h)))
}

pub fn insert_sign_in(
    c: &Connection,
    hash: &str,
    s: &SignIn,
    service: i64,
    now: i64,
    expires: i64,
) -> rusqlite::Result<()> {
    c.execute("DELETE FROM proxy_sessions WHERE expires_at <= ?1", [now])?;
    c.execute(
        "INSERT INTO proxy_sessions (id_hash, user_id, epoch, service_id, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![hash, s.user_id, s.epoch, service, now, expires],
    )?;
    Ok(())
}

/// The sign-in `hash` to `service`, while it lasts.
pub fn sign_in(
    c: &Connection,
    hash: &str,
    service: i64,
    now: i64,
) -> rusqlite::Result<Option<SignIn>> {
    c.prepare_cached(
        "SELECT user_id, epoch FROM proxy_sessions WHERE id_hash = ?1 AND service_id = ?2 AND expires_at > ?3",
    )?
    .query_row(
        params![hash, service, now],
        |r| {
            Ok(SignIn {
                user_id: r.get(0)?,
                epoch: r.get(1)?,
            })
        },
    )
    .optional()
}

pub fn delete_sign_in(c: &Connection, hash: &str) -> rusqlite::Result<()> {
    c.execute("DELETE FROM proxy_sessions WHERE id_hash = ?1", [hash])?;
    Ok(())
}

/// Ends every sign-in (and hand-off) of user `user` to the proxy's apps:
/// its sign-out from gpudock.
pub fn delete_sign_ins_of(c: &Connection, user: i64) -> rusqlite::Result<usize> {
    c.execute("DELETE FROM proxy_handoffs WHERE user_id = ?1", [user])?;
    c.execute("DELETE FROM proxy_sessions WHERE user_id = ?1", [user])
}
