//! A tower-sessions store on our SQLite: records as JSON, work on blocking
//! threads through `Db`, expired rows purged by an owned background task.
//! A record's key is the SHA-256 of the session id, never the id the
//! cookie carries: a copy of the database signs nobody in.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use crate::db::{Db, DbError};

#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

/// The store's error type: database failures become tower-sessions backend errors.
struct StoreError(session_store::Error);

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        StoreError(session_store::Error::Backend(e.to_string()))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(session_store::Error::Backend(e.to_string()))
    }
}

/// The stored key of session `id`.
fn key(id: &Id) -> String {
    super::guard::token_hash(&id.to_string())
}

fn encode(record: &Record) -> Result<String, StoreError> {
    serde_json::to_string(&record.data)
        .map_err(|e| StoreError(session_store::Error::Encode(e.to_string())))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut rec = record.clone();
        let out = self
            .db
            .write(move |conn| {
                let data = encode(&rec)?;
                // Retry on the (astronomically unlikely) id collision.
                loop {
                    let n = conn.execute(
                        "INSERT OR IGNORE INTO sessions (id, data, expiry_date) VALUES (?1, ?2, ?3)",
                        params![key(&rec.id), data, rec.expiry_date.unix_timestamp()],
                    )?;
                    if n == 1 {
                        return Ok::<_, StoreError>(rec.id);
                    }
                    rec.id = Id::default();
                }
            })
            .await;
        match out {
            Ok(id) => {
                record.id = id;
                Ok(())
            }
            Err(StoreError(e)) => Err(e),
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let rec = record.clone();
        self.db
            .write(move |conn| {
                let data = encode(&rec)?;
                conn.execute(
                    "INSERT INTO sessions (id, data, expiry_date) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(id) DO UPDATE SET data = excluded.data, expiry_date = excluded.expiry_date",
                    params![key(&rec.id), data, rec.expiry_date.unix_timestamp()],
                )?;
                Ok::<_, StoreError>(())
            })
            .await
            .map_err(|StoreError(e)| e)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let id = *id;
        // Every signed-in request loads its session: kept until the next
        // commit (a sign-out, a save, a purge), checked for expiry here.
        let k = key(&id);
        let row = self
            .db
            .cached(k.clone(), move |conn| {
                let row: Option<(String, i64)> = conn
                    .prepare_cached("SELECT data, expiry_date FROM sessions WHERE id = ?1")?
                    .query_row(params![k], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                Ok::<_, StoreError>(row)
            })
            .await
            .map_err(|StoreError(e)| e)?;
        let Some((data, expiry)) = row.as_ref() else {
            return Ok(None);
        };
        if *expiry <= crate::db::now() {
            return Ok(None);
        }
        let data =
            serde_json::from_str(data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(*expiry)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let id = *id;
        self.db
            .write(move |conn| {
                conn.execute("DELETE FROM sessions WHERE id = ?1", [key(&id)])?;
                Ok::<_, StoreError>(())
            })
            .await
            .map_err(|StoreError(e)| e)
    }
}

#[async_trait]
impl ExpiredDeletion for SqliteStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM sessions WHERE expiry_date <= ?1",
                    [crate::db::now()],
                )?;
                Ok::<_, StoreError>(())
            })
            .await
            .map_err(|StoreError(e)| e)
    }
}

/// Purges expired sessions every `period` until `cancel` fires.
pub async fn purge_loop(
    store: SqliteStore,
    period: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = store.delete_expired().await {
                    log::warn!("purging expired sessions failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[tokio::test]
    async fn save_load_delete_and_expiry() {
        let store = SqliteStore::new(Db::open_memory().unwrap());
        let mut rec = Record {
            id: Id::default(),
            data: HashMap::from([("uid".to_string(), serde_json::json!(7))]),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut rec).await.unwrap();
        let loaded = store.load(&rec.id).await.unwrap().unwrap();
        assert_eq!(loaded.data["uid"], 7);
        let stored: String = store
            .db
            .read(|c| Ok::<_, DbError>(c.query_row("SELECT id FROM sessions", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_ne!(stored, rec.id.to_string(), "never the id itself");
        assert_eq!(stored, key(&rec.id));
        store.delete(&rec.id).await.unwrap();
        assert!(store.load(&rec.id).await.unwrap().is_none());

        rec.expiry_date = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
        store.save(&rec).await.unwrap();
        assert!(store.load(&rec.id).await.unwrap().is_none());
        store.delete_expired().await.unwrap();
        let left: i64 = store
            .db
            .read(|c| {
                Ok::<_, DbError>(c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(left, 0);
    }
}
