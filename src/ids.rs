//! Typed row ids shared by every layer, and the tenant-scoping rule that every
//! store query takes. Infrastructure (the audit trail, the live-session
//! registry) records them without knowing the capabilities that own the rows.
//!
//! An id is its SQLite integer: `ToSql`/`FromSql` and serde are transparent,
//! so columns, JSON and audit `resource_id`s are the bare number as before.

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(v).map($name)
            }
        }
    };
}

id_type!(
    /// A row of `users`.
    UserId
);
id_type!(
    /// A row of `tenants`.
    TenantId
);
id_type!(
    /// A row of `nodes` (a Docker daemon).
    NodeId
);
id_type!(
    /// A row of `instances` (a container and its data volume).
    InstanceId
);
id_type!(
    /// A row of `remote_sessions` (a terminal or SSH session).
    SessionId
);
id_type!(
    /// A row of `account_opening_requests` (an application for an OS
    /// account on a node, 开户申请).
    OpeningId
);
id_type!(
    /// A row of `cloud_users` (an OS account gpudock opened on a node).
    CloudUserId
);

/// What rows a signed-in user may see: the tenant-scoping rule every store
/// query takes as a parameter (`auth` derives it from a user's role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Tenant(TenantId),
    User(UserId, Option<TenantId>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_number_in_sql_json_and_text() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let back: NodeId = c
            .query_row("SELECT ?1", [NodeId(42)], |r| r.get(0))
            .unwrap();
        assert_eq!(back, NodeId(42));
        assert_eq!(serde_json::to_string(&InstanceId(7)).unwrap(), "7");
        let s: SessionId = serde_json::from_str("9").unwrap();
        assert_eq!(s, SessionId(9));
        assert_eq!(UserId(3).to_string(), "3");
        assert!(
            c.query_row("SELECT 'x'", [], |r| r.get::<_, TenantId>(0))
                .is_err()
        );
    }
}
