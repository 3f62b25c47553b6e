//! `plan`: the task-definition diff a release of a tag would register, changing nothing.

use super::release::check_tag;
use super::{operator_log, Target};
use crate::aws;
use crate::protocol::JobContext;
use crate::release::{self, deploy, inputs, ReleaseError};
use crate::settings::{ReleaseAction, Settings};

/// Prints the fields the release of `target.tag` would change; returns how many.
pub async fn plan(settings: &Settings, target: &Target) -> Result<usize, ReleaseError> {
    let vars = target.variables();
    let tag = vars.get("CI_COMMIT_TAG").cloned().ok_or_else(|| {
        ReleaseError::Refused("--tag (or CI_COMMIT_TAG) is required: the version to plan".into())
    })?;
    check_tag(settings, &tag)?;
    let facts = inputs::JobFacts {
        project_path: "operator",
        job_id: 0,
    };
    let inputs = inputs::collect(
        ReleaseAction::Release,
        &tag,
        |k| vars.get(k).cloned(),
        &settings.aws,
        facts,
    )?;
    let Some(ecs_target) = &inputs.ecs else {
        return Ok(0);
    };
    let temp = tempfile::tempdir()
        .map_err(|e| ReleaseError::Refused(format!("cannot create a temp dir: {e}")))?;
    let log = operator_log(&vars);
    let session = aws::session(
        &inputs.region,
        &inputs.credentials,
        &aws::token_dir(temp.path()),
    )
    .await?;
    let ecs = deploy::EcsService::new(aws_sdk_ecs::Client::new(&session.config), ecs_target);
    let ctx = JobContext::operator(vars.clone(), temp.path());
    let request = release::deploy_request(settings, &ctx, &inputs, ecs_target, &log);
    Ok(deploy::plan(&ecs, &request, &log).await?.len())
}
