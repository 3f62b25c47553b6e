//! `rollback`: return the service to the previous (or a named) release's revision, with the
//! release's watcher and report.

use std::time::Duration;

use super::{interrupt, operator_log, Target};
use crate::aws;
use crate::release::rollout::{pick_rollback, short_td, Candidate, RollbackTo};
use crate::release::{deploy, inputs, taskdef, ReleaseError};
use crate::settings::Settings;

/// Rolls the service back as `to` says.
pub async fn rollback(
    settings: &Settings,
    target: &Target,
    to: RollbackTo,
) -> Result<(), ReleaseError> {
    let vars = target.variables();
    let (cluster, service) = match (target.cluster.clone(), target.service.clone()) {
        (Some(c), Some(s)) => (c, s),
        _ => {
            return Err(ReleaseError::Refused(
                "--cluster and --service (or ECS_CLUSTER and ECS_SERVICE) are required".into(),
            ))
        }
    };
    let region = vars
        .get("AWS_DEFAULT_REGION")
        .cloned()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| Some(settings.aws.region.clone()).filter(|r| !r.is_empty()))
        .ok_or_else(|| {
            ReleaseError::Refused("--region (or AWS_DEFAULT_REGION) is required".into())
        })?;
    let ecs_target = inputs::EcsTarget {
        cluster,
        service,
        task_definition: target.task_definition.clone(),
        container: target.container.clone(),
        rollout_timeout: None,
        rollback: None,
    };
    let temp = tempfile::tempdir()
        .map_err(|e| ReleaseError::Refused(format!("cannot create a temp dir: {e}")))?;
    let credentials = operator_credentials(&vars);
    let session = aws::session(&region, &credentials, &aws::token_dir(temp.path())).await?;
    let log = operator_log(&vars);
    let ecs = deploy::EcsService::new(aws_sdk_ecs::Client::new(&session.config), &ecs_target);

    let svc = ecs.describe().await?;
    let current_arn = svc.task_definition().unwrap_or_default().to_string();
    let current = ecs.task_definition(&current_arn).await?.definition;
    let repository = match (&target.registry, &target.repository) {
        (Some(r), Some(p)) => format!("{r}/{p}"),
        _ => String::new(),
    };
    let container = taskdef::target_container(&current, target.container.as_deref(), &repository)?;
    let image_of = |td: &aws_sdk_ecs::types::TaskDefinition| {
        td.container_definitions()
            .iter()
            .find(|c| c.name() == current.container_definitions()[container].name())
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
    let chosen = pick_rollback(&here, &candidates, &to).map_err(ReleaseError::Refused)?;
    log.step(&format!(
        "Rolling {} back from {} ({}) to {} ({})",
        ecs_target.service,
        short_td(&here.arn),
        here.image,
        short_td(&chosen.arn),
        chosen.image
    ));
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(settings.ecs.rollout_timeout_minutes * 60);
    let poll = Duration::from_secs(settings.ecs.poll_interval_seconds);
    let mut cancel = interrupt()?;
    let report = deploy::switch(
        &ecs,
        &here.arn,
        &chosen.arn,
        deadline,
        poll,
        &log,
        &mut cancel,
    )
    .await?;
    log.info(&format!(
        "The service runs {} again (deployment {})",
        short_td(&report.new_arn),
        report.deployment_id.unwrap_or_default()
    ));
    Ok(())
}

/// Credentials for an operator: a role with an ID token, keys, or the host's chain.
pub(super) fn operator_credentials(
    vars: &std::collections::BTreeMap<String, String>,
) -> aws::CredentialRequest {
    match (vars.get("AWS_ROLE_ARN"), vars.get("AWS_ID_TOKEN")) {
        (Some(role_arn), Some(token)) => aws::CredentialRequest::WebIdentity {
            role_arn: role_arn.clone(),
            token: token.clone(),
            session_name: "gitlab-ecs-executor-operator".into(),
        },
        _ => aws::CredentialRequest::Host,
    }
}
