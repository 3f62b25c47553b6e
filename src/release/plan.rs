//! What a release would register, shown field by field and changing nothing: the exact
//! request a release would send, stopped before it leaves the process.

use super::deploy::{checked_copy, derive_only, show_changes, DeployRequest};
use super::ecs::Ecs;
use super::taskdef::{self, FieldChange};
use super::ReleaseError;
use crate::joblog::JobLog;

/// Shows the revision a release would register, field by field; returns the changes.
pub async fn plan(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
) -> Result<Vec<FieldChange>, ReleaseError> {
    let _s = log.section("release_plan", "Release plan: task definition");
    let Some(d) = derive_only(ecs, req, log).await? else {
        return Ok(Vec::new());
    };
    let sent = checked_copy(ecs, &d).await?;
    let changes = d.base.document.diff(&sent);
    let base = &d.base.definition;
    log.info(&format!(
        "Would register {}:{} (not registered, the service not updated); changes against {}:",
        base.family().unwrap_or("?"),
        base.revision() + 1,
        taskdef::label(base)
    ));
    show_changes(log, &changes.iter().collect::<Vec<_>>());
    Ok(changes)
}
