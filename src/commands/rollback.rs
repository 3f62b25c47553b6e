//! `rollback`: return the service to the previous (or a named) release's revision, with the
//! release's watcher.

use super::{interrupt, operator_log, temp_dir, CommandError, Target};
use crate::aws;
use crate::release::ecs::{short_td, Ecs, SdkEcs};
use crate::release::inputs;
use crate::release::rollback::{pick_rollback, switch, Candidate, RollbackTo, Switch};
use crate::release::strategy::{self, Strategy};
use crate::release::{taskdef, ReleaseError};
use crate::settings::Settings;

/// Rolls the service back as `to` says.
pub async fn rollback(
    settings: &Settings,
    target: &Target,
    to: RollbackTo,
) -> Result<(), CommandError> {
    let access = inputs::collect_service(target, &settings.aws)?;
    let temp = temp_dir()?;
    let session = aws::session(&access.region, &access.credentials, temp.path())
        .await
        .map_err(ReleaseError::from)?;
    let log = operator_log();
    let ecs = SdkEcs::new(
        aws_sdk_ecs::Client::new(&session.config),
        &access.target.cluster,
        &access.target.service,
    );

    let service = ecs.describe_service().await?;
    strategy::check_service(&service).map_err(ReleaseError::from)?;
    let strategy = Strategy::of(service.deployment_configuration());
    let current_arn = service.task_definition().unwrap_or_default().to_string();
    let current = ecs.task_definition(&current_arn).await?.definition;
    let repository = access.repository.clone().unwrap_or_default();
    let targets = taskdef::target_containers(&current, &access.target.containers, &repository)
        .map_err(ReleaseError::from)?;
    // The release's containers share one image; the first one tells which release it is.
    let container_name = targets
        .first()
        .and_then(|i| current.container_definitions()[*i].name());
    let image_of = |td: &aws_sdk_ecs::types::TaskDefinition| {
        td.container_definitions()
            .iter()
            .find(|c| c.name() == container_name)
            .and_then(|c| c.image())
            .unwrap_or_default()
            .to_string()
    };
    let family = current.family().unwrap_or_default().to_string();
    let mut candidates = Vec::new();
    for arn in ecs.revisions(&family).await? {
        let td = ecs.task_definition(&arn).await?.definition;
        candidates.push(Candidate {
            arn,
            revision: td.revision(),
            image: image_of(&td),
        });
    }
    let here = Candidate {
        arn: current_arn.clone(),
        revision: current.revision(),
        image: image_of(&current),
    };
    let chosen = pick_rollback(&here, &candidates, &to).map_err(ReleaseError::from)?;
    log.step(&format!(
        "Rolling {} back from {} ({}) to {} ({})",
        access.target.service,
        short_td(&here.arn),
        here.image,
        short_td(&chosen.arn),
        chosen.image
    ));
    let mut cancel = interrupt()?;
    let spec = Switch {
        from: &here.arn,
        to: &chosen.arn,
        deadline: tokio::time::Instant::now() + settings.ecs.rollout_timeout,
        poll: settings.ecs.poll_interval,
        strategy: &strategy,
    };
    let report = switch(&ecs, &spec, &log, &mut cancel).await?;
    log.info(&format!(
        "The service runs {} again (deployment {})",
        short_td(&report.new_arn),
        report.deployment_id.unwrap_or_default()
    ));
    Ok(())
}
