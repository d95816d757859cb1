//! Instances (实例管理): placement of a product spec on a node with room
//! (GPU-exact), and the containers behind them. Every read and operation is
//! scoped in SQL: members see their own, owners their tenant's, admins all.

pub mod api;
pub mod placement;
pub mod store;

use serde::Deserialize;

use crate::app::App;
use crate::auth::CurrentUser;
use crate::error::AppError;
use placement::{Candidate, Capacity, Request};

/// The request a spec makes of a node.
pub fn request_of(spec: &crate::catalog::model::Spec) -> Request {
    Request {
        gpu_model: spec.gpu_model.clone(),
        need: Capacity {
            gpus: spec.gpu_count,
            cpu_cores: spec.cpu_cores,
            memory_gb: spec.memory_gb,
            system_disk_gb: spec.system_disk_gb,
            data_disk_gb: spec.data_disk_gb,
        },
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CandidateQuery {
    pub spec_id: Option<i64>,
}

/// Listed, online nodes whose GPU model matches and whose free capacity
/// covers the spec (listed specs only for customers).
pub async fn candidate_nodes(
    app: &App,
    me: &CurrentUser,
    spec_id: i64,
) -> Result<Vec<Candidate>, AppError> {
    let spec = crate::catalog::get_spec(app, me, spec_id)
        .await
        .map_err(|e| match e {
            AppError::NotFound => AppError::field("spec_id", "err.no_such_spec"),
            other => other,
        })?;
    let req = request_of(&spec);
    let nodes = app
        .db
        .read(|c| store::snapshots(c, None).map_err(AppError::from))
        .await?;
    Ok(placement::candidates(&req, &nodes))
}
