//! `rollback`: return the service to the previous (or a named) release's revision, with the
//! release's watcher.

use std::time::Instant;

use super::{interrupt, operator_log, temp_dir, CommandError, Target};
use crate::aws;
use crate::clock;
use crate::release::ecs::{short_td, Ecs, SdkEcs};
use crate::release::inputs;
use crate::release::report::ecs_console_url;
use crate::release::rollback::{pick_rollback, switch, Candidate, Pick, RollbackTo, Switch};
use crate::release::strategy::{self, Strategy};
use crate::release::{rollout_deadline, taskdef, ReleaseError};
use crate::settings::Settings;

/// Rolls the service back as `to` says; with `dry_run`, only says where it would go.
pub async fn rollback(
    settings: &Settings,
    target: &Target,
    to: RollbackTo,
    dry_run: bool,
) -> Result<(), CommandError> {
    let started = Instant::now();
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
    let targets = taskdef::target_containers(
        &current,
        &access.target.containers,
        &repository,
        &access.target.names,
    )
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
    let console = ecs_console_url(
        &access.region,
        &access.target.cluster,
        &access.target.service,
    );
    let chosen =
        match pick_rollback(&here, &family, &candidates, &to).map_err(ReleaseError::from)? {
            Pick::AlreadyThere(c) => {
                log.info(&format!(
                    "{} already runs {} ({}): nothing to roll back",
                    access.target.service,
                    short_td(&c.arn),
                    c.image
                ));
                return Ok(());
            }
            Pick::Switch(c) => c,
        };
    let move_line = format!(
        "{} from {} ({}) to {} ({})",
        access.target.service,
        short_td(&here.arn),
        here.image,
        short_td(&chosen.arn),
        chosen.image
    );
    if dry_run {
        log.info(&format!("Would roll {move_line}"));
        log.info("Dry run: the service was not changed");
        return Ok(());
    }
    log.step(&format!("Rolling {move_line}"));
    let mut cancel = interrupt()?;
    let spec = Switch {
        from: &here.arn,
        to: &chosen.arn,
        deadline: rollout_deadline(settings, &access.target, None, &log),
        poll: settings.ecs.poll_interval,
        strategy: &strategy,
    };
    let report = switch(&ecs, &spec, &log, &mut cancel).await?;
    log.info(&format!(
        "The service runs {} again (deployment {})",
        short_td(&report.new_arn),
        report.deployment_id.unwrap_or_default()
    ));
    log.info(&format!("rolled back: {move_line}"));
    log.info(&format!(
        "took:      {}",
        clock::human_duration(started.elapsed().as_secs() as i64)
    ));
    log.info(&format!("console:   {console}"));
    Ok(())
}
