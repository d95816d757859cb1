//! The owner's early return (退还) of an instance: the reclaim's steps and
//! confirmation (see [`super::reclaim`]), for the instance's own user only.

use super::{Check, EndReason, Instance, Step, confirmed, preview, reclaimable};
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::InstanceId;

/// The owner returns (退还) instance `id` early, confirmed after the same
/// preview: the reclaim's steps; sessions end as `user_close`. Only the
/// instance's owner (not another user of the tenant) may. Audited as
/// `instance.return`, besides the reclaim's own record.
pub async fn return_by(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    confirm: bool,
    src: &Source,
) -> Result<Vec<Step>, AppError> {
    returnable(app, me, id).await?;
    confirmed(
        app,
        me,
        id,
        confirm,
        src,
        EndReason::UserClose,
        "instance.return",
    )
    .await
}

/// What returning instance `id` would end, for its owner.
pub async fn return_preview(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
) -> Result<Check, AppError> {
    returnable(app, me, id).await?;
    preview(app, me, id).await
}

async fn returnable(app: &App, me: &CurrentUser, id: InstanceId) -> Result<Instance, AppError> {
    let inst = reclaimable(app, me, id).await?;
    if inst.user_id != me.user.id.0 {
        return Err(AppError::Forbidden);
    }
    Ok(inst)
}
