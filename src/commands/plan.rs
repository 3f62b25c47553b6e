//! `plan`: the task-definition diff a release of a tag would register, changing nothing.

use super::{operator_log, temp_dir, CommandError, Target};
use crate::aws;
use crate::release::ecs::SdkEcs;
use crate::release::inputs::{self, ImageAction, Requester};
use crate::release::{self, fleet, plan, Provenance};
use crate::settings::Settings;

/// Prints the fields the release of `target.tag` would change in each service; returns
/// how many.
pub async fn plan(settings: &Settings, target: &Target) -> Result<usize, CommandError> {
    let tag = target.release_tag(&settings.release)?;
    let inputs = inputs::collect(
        ImageAction::Release,
        &tag,
        target,
        &settings.aws,
        Requester::Operator,
    )?;
    let temp = temp_dir()?;
    let log = operator_log();
    let session = aws::session(&inputs.region, &inputs.credentials, temp.path())
        .await
        .map_err(release::ReleaseError::from)?;
    let client = aws_sdk_ecs::Client::new(&session.config);
    let mut changes = 0;
    for ecs_target in &inputs.ecs {
        let log = fleet::service_log(&log, &ecs_target.service, inputs.ecs.len());
        let ecs = SdkEcs::new(client.clone(), &ecs_target.cluster, &ecs_target.service);
        let request = release::deploy_request(
            settings,
            &inputs,
            ecs_target,
            &Provenance::default(),
            None,
            &log,
        );
        changes += plan::plan(&ecs, &request, &log).await?.len();
    }
    Ok(changes)
}
