//! `continue`: decides the approval gate (PAUSE lifecycle hooks) a service's deployment
//! waits at — continue it, or roll it back with `--rollback` — and follows the deployment
//! to its end or its next gate.

use super::{interrupt, operator_log, temp_dir, CommandError, Target};
use crate::release::ecs::HookAction;
use crate::release::inputs::{self, ContinueInputs, Requester};
use crate::release::{verbs, App};
use crate::settings::Settings;

/// Continues (or, as `action` says, rolls back) the deployment of `target`'s service.
pub async fn continue_deployment(
    settings: &Settings,
    target: &Target,
    action: HookAction,
) -> Result<(), CommandError> {
    let inputs = ContinueInputs {
        action,
        ..inputs::collect_continue(target, &settings.aws, Requester::Operator)?
    };
    let temp = temp_dir()?;
    let log = operator_log();
    let access = &inputs.access;
    let app = App::connect(&access.region, &access.credentials, temp.path(), &log).await?;
    let mut cancel = interrupt()?;
    verbs::continue_deployment::execute(&app, settings, &inputs, None, &log, &mut cancel).await?;
    Ok(())
}
