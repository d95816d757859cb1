//! SQL of the monitoring capability: where each node's figures come from
//! (agent, exporters) and the GPUs last seen on each node.

use rusqlite::{Connection, OptionalExtension, params};

use crate::ids::NodeId;

/// A GPU last seen on a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KnownGpu {
    pub node_id: NodeId,
    pub gpu: i64,
    pub uuid: String,
    pub name: String,
    pub seen_at: i64,
}

/// Records the GPUs a node reports now (those it no longer reports go).
pub fn set_gpus(
    conn: &Connection,
    node: NodeId,
    gpus: &[(i64, String, String)],
    now: i64,
) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute("DELETE FROM metrics_gpus WHERE node_id = ?1", [node])?;
    for (gpu, uuid, name) in gpus {
        tx.execute(
            "INSERT INTO metrics_gpus (node_id, gpu, uuid, name, seen_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![node, gpu, uuid, name, now],
        )?;
    }
    tx.commit()
}

pub fn gpus(conn: &Connection, node: Option<NodeId>) -> rusqlite::Result<Vec<KnownGpu>> {
    let mut stmt = conn.prepare_cached(
        "SELECT node_id, gpu, uuid, name, seen_at FROM metrics_gpus \
         WHERE ?1 IS NULL OR node_id = ?1 ORDER BY node_id, gpu",
    )?;
    stmt.query_map([node], |r| {
        Ok(KnownGpu {
            node_id: r.get(0)?,
            gpu: r.get(1)?,
            uuid: r.get(2)?,
            name: r.get(3)?,
            seen_at: r.get(4)?,
        })
    })?
    .collect()
}

/// Where a node's host and GPU figures come from (besides this host's own
/// collectors for a local node).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sources {
    pub agent_url: String,
    #[serde(skip)]
    pub agent_token_sealed: Option<Vec<u8>>,
    pub agent_fingerprint: String,
    pub agent_enrolled_at: Option<i64>,
    pub dcgm_url: String,
    pub node_exporter_url: String,
}

impl Sources {
    pub fn has_agent(&self) -> bool {
        !self.agent_url.is_empty() && self.agent_token_sealed.is_some()
    }
}

pub fn sources(conn: &Connection, node: NodeId) -> rusqlite::Result<Sources> {
    conn.query_row(
        "SELECT agent_url, agent_token_sealed, agent_fingerprint, agent_enrolled_at, dcgm_url, node_exporter_url \
         FROM metrics_sources WHERE node_id = ?1",
        [node],
        |r| {
            Ok(Sources {
                agent_url: r.get(0)?,
                agent_token_sealed: r.get(1)?,
                agent_fingerprint: r.get(2)?,
                agent_enrolled_at: r.get(3)?,
                dcgm_url: r.get(4)?,
                node_exporter_url: r.get(5)?,
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// Sets the exporter URLs and the agent URL (an agent URL change keeps the
/// token and the pinned certificate: the same agent moved).
pub fn set_urls(conn: &Connection, node: NodeId, s: &Sources, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO metrics_sources (node_id, agent_url, dcgm_url, node_exporter_url, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (node_id) DO UPDATE SET agent_url = ?2, dcgm_url = ?3, \
         node_exporter_url = ?4, updated_at = ?5",
        params![node, s.agent_url, s.dcgm_url, s.node_exporter_url, now],
    )?;
    Ok(())
}

/// A new enrolment: a fresh sealed token, no pinned certificate yet.
pub fn start_enrolment(
    conn: &Connection,
    node: NodeId,
    url: &str,
    sealed: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO metrics_sources (node_id, agent_url, agent_token_sealed, agent_fingerprint, agent_enrolled_at, updated_at) \
         VALUES (?1, ?2, ?3, '', NULL, ?4) ON CONFLICT (node_id) DO UPDATE SET agent_url = ?2, \
         agent_token_sealed = ?3, agent_fingerprint = '', agent_enrolled_at = NULL, updated_at = ?4",
        params![node, url, sealed, now],
    )?;
    Ok(())
}

/// Pins the certificate the agent proved itself with; false when the
/// enrolment changed meanwhile (another token was issued).
pub fn pin_agent(
    conn: &Connection,
    node: NodeId,
    sealed: &[u8],
    fingerprint: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE metrics_sources SET agent_fingerprint = ?3, agent_enrolled_at = ?4, updated_at = ?4 \
         WHERE node_id = ?1 AND agent_token_sealed = ?2 AND agent_fingerprint = ''",
        params![node, sealed, fingerprint, now],
    )? == 1)
}
