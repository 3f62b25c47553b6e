//! `plan`: what a release would register, shown field by field and changing nothing: the
//! exact request a release would send, stopped before it leaves the process.

use crate::joblog::JobLog;
use crate::release::deploy::{checked_copy, derive_only, show_changes, DeployRequest};
use crate::release::ecs::Ecs;
use crate::release::inputs::ReleaseInputs;
use crate::release::taskdef::{self, FieldChange};
use crate::release::{fleet, App, Provenance, ReleaseError};
use crate::settings::Settings;

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

/// `plan`: what the release of `inputs` would register in each of its services, changing
/// nothing; returns how many fields would change in all.
pub async fn plan_all(
    app: &App,
    settings: &Settings,
    inputs: &ReleaseInputs,
    log: &JobLog,
) -> Result<usize, ReleaseError> {
    let mut changes = 0;
    for target in &inputs.ecs {
        let log = fleet::service_log(log, &target.service, inputs.ecs.len());
        let ecs = app.service(&target.cluster, &target.service);
        let request = DeployRequest::for_release(
            settings,
            inputs,
            target,
            &Provenance::default(),
            None,
            &log,
        );
        changes += plan(&ecs, &request, &log).await?.len();
    }
    Ok(changes)
}
