//! `plan`: the task-definition diff a release of a tag would register, changing nothing.

use super::{operator_log, temp_dir, CommandError, Target};
use crate::release::inputs::{self, ImageAction, Requester};
use crate::release::verbs::plan::plan_all;
use crate::release::App;
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
    let app = App::connect(&inputs.region, &inputs.credentials, temp.path(), &log).await?;
    Ok(plan_all(&app, settings, &inputs, &log).await?)
}
