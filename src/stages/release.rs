//! The runner's side of a native release: whether a job is one, and the release request
//! built once from the job's context (`release/` knows nothing of the runner protocol).

use super::StageError;
use crate::aws;
use crate::aws::CredentialRequest;
use crate::docker::JobNames;
use crate::protocol::JobContext;
use crate::protocol::JobIdentity;
use crate::release::authorize;
use crate::release::image::registry::TokenPolicy;
use crate::release::inputs::{
    self, ContinueInputs, ImageAction, JobVariables, ReleaseInputs, Requester,
};
use crate::release::trigger::{self, Refusal, Trigger};
use crate::release::{
    BuildScope, ProjectSource, Provenance, ReleaseError, ReleaseRequest, LOCAL_REPOSITORY,
};
use crate::settings::{EcsJobsSettings, ReleaseAction, Settings};

/// What a job is, release-wise.
#[derive(Debug)]
pub(crate) enum JobKind {
    /// An ordinary job.
    Ordinary,
    /// A release stage that opted out with `ECS_EXECUTOR_NATIVE=false`.
    OptedOut,
    /// A native release with these inputs.
    Release(Box<ReleaseInputs>),
    /// A decision on the approval gate of a service's deployment.
    Continue(Box<ContinueInputs>),
}

impl JobKind {
    /// The ECS job environment's settings when this job runs as an ECS task: an ordinary
    /// job on a runner with `[ecs_jobs]`. The jobs the executor performs itself stay on the
    /// runner host, where they build images.
    pub(crate) fn ecs_jobs<'a>(&self, settings: &'a Settings) -> Option<&'a EcsJobsSettings> {
        match self {
            JobKind::Ordinary | JobKind::OptedOut => settings.ecs_jobs.as_ref(),
            JobKind::Release(_) | JobKind::Continue(_) => None,
        }
    }
}

/// Classifies the job and, for a release, validates its inputs.
pub(crate) fn classify(settings: &Settings, ctx: &JobContext) -> Result<JobKind, StageError> {
    let payload = &ctx.payload;
    let stage = Some(payload.job_info.stage.as_str())
        .filter(|s| !s.is_empty())
        .or(ctx.var("CI_JOB_STAGE"))
        .unwrap_or_default();
    // The payload's git_info comes from GitLab itself; a variable could be set by a user.
    let tag = if payload.git_info.ref_type.is_empty() {
        ctx.non_empty_var("CI_COMMIT_TAG")
    } else {
        Some(payload.git_info.git_ref.as_str()).filter(|_| payload.git_info.ref_type == "tag")
    };
    match trigger::decide(
        stage,
        tag,
        ctx.identity.protected,
        ctx.var("ECS_EXECUTOR_NATIVE"),
        &settings.release,
    ) {
        Trigger::NotRelease => Ok(JobKind::Ordinary),
        Trigger::OptedOut => Ok(JobKind::OptedOut),
        Trigger::Refused(why) => Err(StageError::Refused(why)),
        Trigger::Release { action, tag } => {
            let source = JobVariables::new(|k: &str| ctx.var(k).map(str::to_string), &settings.aws);
            let requester = Requester::Job {
                project_path: &ctx.identity.project_path,
                job_id: ctx.identity.job_id,
            };
            let image_action = match action {
                ReleaseAction::Release => ImageAction::Release,
                ReleaseAction::Push => ImageAction::Push,
                ReleaseAction::Continue => {
                    let mut inputs = inputs::collect_continue(&source, &settings.aws, requester)?;
                    if inputs.access.credentials == CredentialRequest::Host {
                        authorize::authorize_service(
                            &settings.release.grants,
                            &ctx.identity.project_path,
                            &mut inputs.access.target,
                        )
                        .map_err(Refusal::from)?;
                    }
                    return Ok(JobKind::Continue(Box::new(inputs)));
                }
            };
            let mut inputs =
                inputs::collect(image_action, &tag, &source, &settings.aws, requester)?;
            let policy = TokenPolicy {
                region: &inputs.region,
                configured: &settings.aws.ecr_token_registries,
            };
            policy
                .admits(inputs.image.registry())
                .map_err(ReleaseError::from)?;
            // The host's credentials serve every project: each may use them only for what
            // the operator granted it, decided before any AWS call.
            if inputs.credentials == CredentialRequest::Host {
                authorize::authorize(
                    &settings.release.grants,
                    &ctx.identity.project_path,
                    &mut inputs,
                )
                .map_err(Refusal::from)?;
            }
            Ok(JobKind::Release(Box::new(inputs)))
        }
    }
}

/// The release request of a release job: its checkout is the project directory in the
/// job's builds volume, reached through the job's helper container.
pub(crate) fn request(
    ctx: &JobContext,
    inputs: ReleaseInputs,
    names: &JobNames,
    dry_run: bool,
) -> Result<ReleaseRequest, StageError> {
    let var = |name: &str| ctx.non_empty_var(name).unwrap_or_default().to_string();
    let commit_sha = Some(ctx.payload.git_info.sha.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| var("CI_COMMIT_SHA"));
    Ok(ReleaseRequest {
        inputs,
        provenance: Provenance {
            project_path: ctx.identity.project_path.clone(),
            project_url: var("CI_PROJECT_URL"),
            commit_sha,
            commit_time: var("CI_COMMIT_TIMESTAMP"),
            pipeline_id: var("CI_PIPELINE_ID"),
            job_url: var("CI_JOB_URL"),
        },
        source: ProjectSource::Volume {
            container: names.helper_container(),
            project_dir: ctx.project_dir()?.display().to_string(),
        },
        temp_dir: private_dir(ctx),
        job_deadline: job_deadline(ctx),
        dry_run,
        build: BuildScope {
            owner: build_owner(&ctx.identity),
            local_name: format!("{LOCAL_REPOSITORY}/{}", names.key()),
            registry_auth: super::auth_sources(ctx),
        },
    })
}

/// The build cache a project's releases share: the project's own, apart for its protected
/// refs as its volumes are.
fn build_owner(identity: &JobIdentity) -> String {
    let protected = if identity.protected { "-protected" } else { "" };
    format!("project-{}{protected}", identity.project_id)
}

/// The job's private temp dir for token and secret files, under the runner's temp dir.
pub(crate) fn private_dir(ctx: &JobContext) -> std::path::PathBuf {
    let runner_temp = ctx
        .runner_temp_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    aws::token_dir(&runner_temp)
}

/// When the job's own timeout ends, if the runner said.
pub(crate) fn job_deadline(ctx: &JobContext) -> Option<tokio::time::Instant> {
    ctx.job_time_left()
        .map(|left| tokio::time::Instant::now() + left)
}
