//! `run <script> <stage>`: user steps in the build container, housekeeping in the helper
//! container, each started for this stage alone, or through the agents of the job's ECS
//! task; a release job's `build_script` is the native release instead. Nothing runs on the
//! runner host.

use std::path::Path;

use tokio::signal::unix::{signal, SignalKind};

use super::release::{classify, job_deadline, private_dir, request, JobKind};
use super::StageError;
use crate::docker::{
    self, archive, follow_service_logs, run_stage, Cancel, DockerError, JobNames, STAGE_MARKER,
};
use crate::ecs_jobs;
use crate::joblog::JobLog;
use crate::protocol::{JobContext, Outcome, Placement, Stage};
use crate::release::{verbs, App};
use crate::settings::Settings;

/// How the operator configured `run` (`[runners.custom] run_args`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Release jobs stop before their first change (`run --dry-run`, which `exec --dry-run`
    /// passes).
    pub dry_run: bool,
}

/// Runs one stage script.
pub async fn run(
    settings: &Settings,
    ctx: &JobContext,
    script_path: &Path,
    stage: &Stage,
    options: RunOptions,
    log: &JobLog,
) -> Result<Outcome, StageError> {
    // Installed before any work so that the runner's SIGTERM never kills us mid-stage with
    // the default action, leaving the stage running in its container.
    let mut cancel = sigterm()?;
    let names = JobNames::new(&ctx.identity);
    let kind = classify(settings, ctx)?;
    let in_ecs = kind.ecs_jobs(settings).is_some();
    if *stage == Stage::BuildScript {
        match kind {
            JobKind::Release(inputs) => {
                let req = request(ctx, *inputs, &names, options.dry_run)?;
                let app = App::connect(
                    &req.inputs.region,
                    &req.inputs.credentials,
                    &req.temp_dir,
                    log,
                )
                .await?;
                verbs::release::execute(&app, settings, &req, log, &mut cancel).await?;
                return Ok(Outcome::Success);
            }
            JobKind::Continue(inputs) => {
                let (temp, deadline) = (private_dir(ctx), job_deadline(ctx));
                let access = &inputs.access;
                let app = App::connect(&access.region, &access.credentials, &temp, log).await?;
                verbs::continue_deployment::execute(
                    &app,
                    settings,
                    &inputs,
                    deadline,
                    log,
                    &mut cancel,
                )
                .await?;
                return Ok(Outcome::Success);
            }
            JobKind::Ordinary | JobKind::OptedOut => {}
        }
    }
    let script = std::fs::read(script_path).map_err(StageError::host(format!(
        "read the stage script {}",
        script_path.display()
    )))?;
    if in_ecs {
        let end = ecs_jobs::run(settings, ctx, stage.placement(), script, log, cancel).await?;
        if end.cancelled {
            log.warn(CANCELLED);
        }
        return Ok(outcome(i64::from(end.code), end.cancelled));
    }
    let docker = docker::connect(&settings.docker).await?;
    let user_stage = stage.placement() == Placement::BuildContainer;
    let container = if user_stage {
        names.build_container()
    } else {
        names.helper_container()
    };
    let _followers = if user_stage && ctx.var("CI_DEBUG_SERVICES") == Some("true") {
        Some(follow_service_logs(&docker, &names, log).await)
    } else {
        None
    };
    let exit = run_stage(
        &docker,
        &container,
        script,
        settings.docker.cancel_grace,
        log,
        cancel,
    )
    .await?;
    if exit.cancelled {
        log.warn(CANCELLED);
    } else if user_stage {
        ensure_script_ran(&docker, &container, settings, ctx, exit.code).await?;
    }
    Ok(outcome(exit.code, exit.cancelled))
}

const CANCELLED: &str = "the stage was stopped: the job was cancelled or timed out";

/// What a stage's exit code tells the runner: a cancelled stage failed whatever it exited.
fn outcome(code: i64, cancelled: bool) -> Outcome {
    match code {
        0 if !cancelled => Outcome::Success,
        code => Outcome::JobFailure {
            exit_code: i32::try_from(code).unwrap_or(1),
        },
    }
}

/// An image whose entrypoint does not run its arguments ends every stage without running the
/// script, silently; the command's first act is to touch [`STAGE_MARKER`]. Both times are
/// the engine's (the marker's and the stage's start), so the runner host's clock does not
/// enter into it.
async fn ensure_script_ran(
    docker: &bollard::Docker,
    container: &str,
    settings: &Settings,
    ctx: &JobContext,
    exit_code: i64,
) -> Result<(), DockerError> {
    let path = format!("{}/{STAGE_MARKER}", settings.builds_dir.display());
    let marker = archive::stat(docker, container, &path).await?;
    let started = docker
        .inspect_container(container, None)
        .await
        .map_err(DockerError::api(format!("inspect container {container}")))?
        .state
        .and_then(|s| s.started_at)
        .and_then(|t| crate::clock::parse_rfc3339(&t));
    // The marker's time has a second's resolution at worst.
    if let (Some(modified), Some(started)) = (marker.and_then(|m| m.modified), started) {
        if modified >= started - 1 {
            return Ok(());
        }
    }
    Err(DockerError::EntrypointSkippedScript {
        image: ctx
            .non_empty_var("CI_JOB_IMAGE")
            .unwrap_or(&settings.docker.default_image)
            .to_string(),
        exit_code,
    })
}

fn sigterm() -> Result<Cancel, StageError> {
    let mut term =
        signal(SignalKind::terminate()).map_err(StageError::host("install the SIGTERM handler"))?;
    Ok(Box::pin(async move {
        term.recv().await;
    }))
}
