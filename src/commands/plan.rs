//! `plan`: the task-definition diff a release of a tag would register, changing nothing.

use super::{operator_log, temp_dir, CommandError, Target};
use crate::aws;
use crate::release::ecs::SdkEcs;
use crate::release::inputs::{self, ImageAction, Requester};
use crate::release::{self, plan, Provenance};
use crate::settings::Settings;

/// Prints the fields the release of `target.tag` would change; returns how many.
pub async fn plan(settings: &Settings, target: &Target) -> Result<usize, CommandError> {
    let tag = target.release_tag(&settings.release)?;
    let inputs = inputs::collect(
        ImageAction::Release,
        &tag,
        target,
        &settings.aws,
        Requester::Operator,
    )?;
    let Some(ecs_target) = &inputs.ecs else {
        return Ok(0);
    };
    let temp = temp_dir()?;
    let log = operator_log();
    let session = aws::session(&inputs.region, &inputs.credentials, temp.path())
        .await
        .map_err(release::ReleaseError::from)?;
    let ecs = SdkEcs::new(
        aws_sdk_ecs::Client::new(&session.config),
        &ecs_target.cluster,
        &ecs_target.service,
    );
    let request = release::deploy_request(
        settings,
        &inputs,
        ecs_target,
        &Provenance::default(),
        None,
        &log,
    );
    Ok(plan::plan(&ecs, &request, &log).await?.len())
}
