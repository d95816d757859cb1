//! Tenant quotas (配额) at placement: the check that runs inside the
//! reserving transaction (and before an admin's batch allocation).

use rusqlite::Connection;

use super::placement::Capacity;
use crate::auth::{QuotaUse, TenantId};
use crate::error::{AppError, FieldError, FieldErrors};

/// Refuses (409, naming the quota and `in use + asked > quota`) when `count`
/// more instances holding `need` each would pass a quota of `tenant`. Read
/// from `tenants` and `tenant_usage` on `conn`: inside the reserving
/// transaction, concurrent creates see each other's reservations.
pub fn check(
    conn: &Connection,
    tenant: TenantId,
    need: &Capacity,
    count: i64,
) -> Result<(), AppError> {
    let Some((quota, used)) = crate::auth::tenant_quota(conn, tenant)? else {
        return Ok(());
    };
    let each = QuotaUse {
        gpus: need.gpus,
        instances: 1,
        cpu_cores: need.cpu_cores,
        memory_gb: need.memory_gb,
    };
    match quota.exceeded(used, each, count) {
        None => Ok(()),
        Some((field, q, used, asked)) => Err(AppError::Conflict(FieldErrors::from([(
            field,
            FieldError::with_detail(key(field), format!("{used} + {asked} > {q}")),
        )]))),
    }
}

fn key(field: &str) -> &'static str {
    match field {
        "quota_gpus" => "err.quota_gpus",
        "quota_instances" => "err.quota_instances",
        "quota_cpu_cores" => "err.quota_cpu_cores",
        _ => "err.quota_memory_gb",
    }
}
