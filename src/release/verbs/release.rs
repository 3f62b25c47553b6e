//! `release`: credentials, the image (built and pushed unless the tag already exists), and
//! for the `release` action the ECS rollout of every service; then the report.

use std::time::Instant;

use crate::docker::Cancel;
use crate::joblog::JobLog;
use crate::release::deploy::DeployRequest;
use crate::release::ecs::{Ecs, SdkEcs};
use crate::release::image;
use crate::release::inputs::{EcsTarget, ImageAction};
use crate::release::report::{self, ReleaseReport, Timings};
use crate::release::verbs::plan;
use crate::release::{fleet, platform, pre_deploy, App, ReleaseError, ReleaseRequest};
use crate::settings::Settings;

/// Performs the release: credentials, the image (built and pushed unless the tag already
/// exists), and for the `release` action the ECS rollout; then the report.
pub async fn execute(
    app: &App,
    settings: &Settings,
    req: &ReleaseRequest,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<ReleaseReport, ReleaseError> {
    let started = Instant::now();
    let inputs = &req.inputs;
    let action = match inputs.action {
        ImageAction::Release => "build, push and roll out",
        ImageAction::Push => "build and push",
    };
    log.step(&format!(
        "Native release of {}: the executor will {action} {} instead of running the job's script",
        inputs.tag(),
        inputs.image
    ));

    let services: Vec<(SdkEcs, &EcsTarget)> = match inputs.action {
        ImageAction::Push => Vec::new(),
        ImageAction::Release => inputs
            .ecs
            .iter()
            .map(|target| (app.service(&target.cluster, &target.service), target))
            .collect(),
    };
    let platform = target_platform(&services).await?;

    // Before anything changes, a cancel simply stops: there is nothing to undo.
    let image_started = Instant::now();
    let docker = crate::docker::connect(&settings.docker).await?;
    let image = tokio::select! {
        result = image::release_image(&docker, req, app.config(), platform.as_ref(), settings, log) => result.map_err(ReleaseError::from),
        _ = &mut *cancel => Err(ReleaseError::Cancelled),
    };
    // Built, pushed, failed or cancelled: the engine keeps the build cache, not the image
    // under any name a later job could take for the registry's.
    for problem in image::forget(&docker, &req.build.local_name, Some(&inputs.image)).await {
        log.warn(&format!(
            "could not remove the release's local image: {problem}"
        ));
    }
    let image = image?;
    let image_time = image_started.elapsed();
    let released_image = match (settings.release.pin_digest, image.registry_digest()) {
        (true, Some(digest)) => {
            // The revision names the exact image that was built or found.
            let pinned = inputs.image.with_digest(digest);
            log.info(&format!("Pinning the release image by digest: {pinned}"));
            pinned
        }
        _ => inputs.image.clone(),
    };
    // The rollout's time starts now, after the build and push it does not include.
    let members: Vec<fleet::Member<SdkEcs>> = services
        .into_iter()
        .map(|(ecs, target)| fleet::Member {
            ecs,
            req: DeployRequest {
                image: released_image.clone(),
                ..DeployRequest::for_release(
                    settings,
                    inputs,
                    target,
                    &req.provenance,
                    req.job_deadline,
                    log,
                )
            },
        })
        .collect();
    if req.dry_run {
        for member in &members {
            let log = fleet::service_log(log, &member.req.target.service, members.len());
            plan::plan(&member.ecs, &member.req, &log).await?;
        }
        log.step("Dry run: nothing was pushed, registered or updated");
        return Ok(ReleaseReport {
            image,
            released: inputs.image.clone(),
            deploy: Vec::new(),
        });
    }
    let deploy = match (&inputs.pre_deploy, members.is_empty()) {
        (_, true) => Vec::new(),
        (Some(task), false) => {
            let gate = pre_deploy::PreDeployGate {
                task: task.clone(),
                aws: app.config().clone(),
            };
            fleet::deploy_all(&members, &gate, log, cancel).await?
        }
        (None, false) => fleet::deploy_all(&members, &fleet::NoGate, log, cancel).await?,
    };
    let released = members
        .first()
        .map(|m| m.req.image.clone())
        .unwrap_or_else(|| inputs.image.clone());
    let report = ReleaseReport {
        image,
        released,
        deploy,
    };
    let timings = Timings {
        image: image_time,
        total: started.elapsed(),
    };
    report::summarize(req, &report, timings, &docker, log).await?;
    Ok(report)
}

/// The one platform the services' task definitions run on (`None` when none names one);
/// and, before anything is built, that each service's task definition is what the
/// project's grants allow.
async fn target_platform(
    services: &[(SdkEcs, &EcsTarget)],
) -> Result<Option<platform::Platform>, ReleaseError> {
    let mut found: Vec<(String, platform::Platform)> = Vec::new();
    for (ecs, target) in services {
        let service = ecs.describe_service().await?;
        let Some(arn) = service.task_definition() else {
            continue;
        };
        let td = ecs.task_definition(arn).await?.definition;
        if let Some(grant) = &target.grant {
            grant.check(ecs.service(), &td)?;
        }
        if let Some(p) = platform::Platform::of_task_definition(&td)? {
            found.push((ecs.service().to_string(), p));
        }
    }
    let first = found.first().map(|(_, p)| p.clone());
    if found.iter().any(|(_, p)| Some(p) != first.as_ref()) {
        return Err(ReleaseError::MixedPlatforms {
            platforms: found.iter().map(|(s, p)| format!("{s}: {p}")).collect(),
        });
    }
    Ok(first)
}
