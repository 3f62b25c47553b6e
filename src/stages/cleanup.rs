//! `cleanup`: remove the job's objects (or stop its ECS task) and sweep orphans. Its output goes to the runner's
//! own log, never to the job log, and it never fails the job.

use std::time::Duration;

use crate::aws;
use crate::docker::{self, remove_job_objects, sweep_orphans, CleanupReport, JobNames};
use crate::ecs_jobs;
use crate::protocol::{JobContext, Outcome};
use crate::release::{self, LOCAL_REPOSITORY};
use crate::settings::{EcsJobsSettings, Settings};

use super::release::classify;
use super::StageError;

/// How long cleanup waits for an engine that is restarting before giving up.
const ENGINE_PATIENCE: Duration = Duration::from_secs(10);
/// Bound on the orphan sweep, so a slow engine cannot hold up the runner.
const SWEEP_BUDGET: Duration = Duration::from_secs(30);

/// Removes the job's containers and network, or stops its ECS task.
pub async fn cleanup(settings: &Settings, ctx: &JobContext) -> Result<Outcome, StageError> {
    // A job whose inputs no longer classify is a release job: never an ECS one.
    if let Some(jobs) = classify(settings, ctx)
        .ok()
        .and_then(|kind| kind.ecs_jobs(settings))
    {
        return Ok(cleanup_ecs(settings, jobs, ctx).await);
    }
    if let Some(temp) = &ctx.runner_temp_dir {
        // Normally gone already; left behind only if the executor was killed mid-release.
        let _ = std::fs::remove_dir_all(aws::token_dir(temp));
    }
    let deadline = tokio::time::Instant::now() + ENGINE_PATIENCE;
    let mut docker = docker::connect_patiently(&settings.docker, ENGINE_PATIENCE).await?;
    let names = JobNames::new(&ctx.identity);
    let mut report = remove_job_objects(&docker, &names).await;
    // An engine that went away half-way (a restart) gets the same patience as at the start.
    while !report.failures.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(again) = docker::connect(&settings.docker).await {
            docker = again;
            let retry = remove_job_objects(&docker, &names).await;
            report = CleanupReport {
                containers: report.containers + retry.containers,
                networks: report.networks + retry.networks,
                volumes: report.volumes + retry.volumes,
                failures: retry.failures,
            };
        }
    }
    // A release killed mid-build or mid-push leaves its image under its own name and
    // perhaps the registry's.
    let local = format!("{LOCAL_REPOSITORY}/{}", names.key());
    for problem in release::image::forget(&docker, &local, None).await {
        tracing::warn!("{problem}");
    }
    tracing::info!(
        job = names.key(),
        containers = report.containers,
        networks = report.networks,
        "removed the job's Docker objects"
    );
    match tokio::time::timeout(
        SWEEP_BUDGET,
        sweep_orphans(
            &docker,
            ctx.identity.runner_id,
            settings.docker.orphan_max_age,
        ),
    )
    .await
    {
        Ok(swept) if swept.containers + swept.networks > 0 => tracing::info!(
            containers = swept.containers,
            networks = swept.networks,
            "swept orphans of earlier jobs"
        ),
        Ok(_) => {}
        Err(_) => tracing::warn!(
            "the orphan sweep did not finish within {} s",
            SWEEP_BUDGET.as_secs()
        ),
    }
    if report.failures.is_empty() {
        Ok(Outcome::Success)
    } else {
        for failure in &report.failures {
            tracing::warn!("could not remove {failure}");
        }
        // The runner only logs a warning for a failed cleanup; the job's status stands.
        Ok(Outcome::SystemFailure)
    }
}

/// Stops the job's ECS task and the orphans of this runner.
async fn cleanup_ecs(settings: &Settings, jobs: &EcsJobsSettings, ctx: &JobContext) -> Outcome {
    match ecs_jobs::cleanup(settings, jobs, ctx).await {
        Ok(stopped) => {
            tracing::info!(
                job = ctx.identity.job_id,
                tasks = stopped.own,
                orphans = stopped.orphans,
                "stopped the job's ECS task"
            );
            Outcome::Success
        }
        Err(e) => {
            tracing::warn!("could not stop the job's ECS task: {e}");
            // The runner only logs a warning for a failed cleanup; the job's status stands.
            Outcome::SystemFailure
        }
    }
}
