//! The audit trail: append-only, hash-chained records of every sign-in, sign-out,
//! lock, password change and every create/update/delete. Records are written in
//! the same transaction as the change they describe.

mod chain;
mod store;
pub mod web;
pub mod words;

pub use chain::{VerifyReport, append, verify};
pub use store::{AuditFilter, AuditRecord, count_since, query, records};

use serde::Serialize;

use crate::ids::{TenantId, UserId};

/// Who did it.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    pub id: Option<UserId>,
    pub name: String,
    pub tenant: Option<TenantId>,
}

impl Actor {
    /// Someone not (yet) identified, e.g. a failed login for `name`.
    pub fn anonymous(name: &str) -> Self {
        Self {
            id: None,
            name: name.to_string(),
            tenant: None,
        }
    }

    /// The operator on the host's command line.
    pub fn cli() -> Self {
        Self::anonymous("cli")
    }

    pub fn system() -> Self {
        Self::anonymous("system")
    }
}

/// Where the request came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Source {
    pub ip: String,
    pub user_agent: String,
}

impl Source {
    pub fn local() -> Self {
        Self {
            ip: "local".into(),
            user_agent: "gpudock-cli".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Appends one event in a write of its own: for what changes nothing else
/// in the database (a refusal, a failure, an observation). `event` builds
/// the event from the actor and source it is given.
pub async fn record<F>(
    db: &crate::db::Db,
    actor: Actor,
    source: Source,
    event: F,
) -> Result<(), crate::db::DbError>
where
    F: for<'a> FnOnce(&'a Actor, &'a Source) -> Event<'a> + Send + 'static,
{
    db.write(move |c| {
        append(c, &event(&actor, &source))
            .map(|_| ())
            .map_err(crate::db::DbError::from)
    })
    .await
}

/// One event to record. `detail` must never hold a secret.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub actor: &'a Actor,
    pub source: &'a Source,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

impl<'a> Event<'a> {
    pub fn new(
        actor: &'a Actor,
        source: &'a Source,
        action: &'a str,
        resource_type: &'a str,
    ) -> Self {
        Self {
            actor,
            source,
            action,
            resource_type,
            resource_id: None,
            outcome: Outcome::Success,
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn id(mut self, id: impl ToString) -> Self {
        self.resource_id = Some(id.to_string());
        self
    }

    pub fn outcome(mut self, o: Outcome) -> Self {
        self.outcome = o;
        self
    }

    pub fn detail(mut self, d: serde_json::Value) -> Self {
        self.detail = d;
        self
    }
}
