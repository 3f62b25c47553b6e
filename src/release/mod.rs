//! Native releases: build the image, push it to ECR and (for the `release` action) roll it
//! out on ECS, from one typed [`ReleaseRequest`]. Nothing here knows the runner protocol:
//! the runner stage, the operator commands and `exec` each build the request.

pub mod approve;
pub mod authorize;
pub mod deploy;
pub mod deploy_report;
pub mod ecs;
pub mod fleet;
pub mod grant;
pub mod image;
pub mod input_names;
pub mod inputs;
pub mod plan;
pub mod platform;
pub mod pre_deploy;
pub mod progress;
pub mod report;
pub mod request;
pub mod rollback;
pub mod strategy;
pub mod taskdef;
pub mod trigger;
pub mod verdict;
pub mod watch;

pub use request::{BuildScope, ProjectSource, Provenance, ReleaseRequest, LOCAL_REPOSITORY};

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::aws::{self, AwsError, CallError};
use crate::docker::{Cancel, DockerError};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::Settings;
use deploy::{DeployReport, DeployRequest, FamilyCheck};
use ecs::{Ecs, SdkEcs};
use image::ImageOutcome;
use inputs::{EcsTarget, ImageAction, ReleaseInputs};
use report::Timings;

/// Why a release failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// AWS could not be configured.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// An AWS API call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The ECR token was unusable.
    #[error("cannot log in to {registry}: {message}")]
    EcrLogin {
        /// Registry host.
        registry: String,
        /// Why.
        message: String,
    },
    /// The release's registry is not the one the ECR token is for.
    #[error(
        "ECR_REGISTRY {registry} is not the registry the ECR token of these credentials is for \
         ({ecr}): the token was not sent there. Set ECR_REGISTRY to the account's ECR registry, \
         or ask the runner's operator to list a registry mirror in aws.ecr_token_registries"
    )]
    NotEcrRegistry {
        /// The registry the job named.
        registry: String,
        /// What ECR's token is for.
        ecr: String,
    },
    /// The registry refused the credentials.
    #[error(
        "the registry {registry} refused the ECR credentials: {message}. Check that ECR_REGISTRY \
         belongs to the account and region of the job's AWS credentials and that they allow \
         ecr:GetAuthorizationToken and the push actions on ECR_REPOSITORY"
    )]
    RegistryRefused {
        /// Registry host.
        registry: String,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached.
    #[error("the registry {registry} cannot be reached: {message}. Check ECR_REGISTRY and the runner host's network")]
    RegistryUnreachable {
        /// Registry host.
        registry: String,
        /// Why.
        message: String,
    },
    /// The Dockerfile asks for a frontend this runner does not run.
    #[error(transparent)]
    Frontend(#[from] image::frontend::FrontendRefused),
    /// The build context could not be assembled.
    #[error(transparent)]
    Context(#[from] image::context::ContextError),
    /// The Dockerfile failed to build.
    #[error("the image build failed{}: {message}", if .step.is_empty() { String::new() } else { format!(" at `{}`", .step) })]
    BuildFailed {
        /// The Dockerfile step that failed.
        step: String,
        /// The builder's message.
        message: String,
    },
    /// The push failed for another reason.
    #[error("pushing to {registry} failed: {message}")]
    PushFailed {
        /// Registry host.
        registry: String,
        /// The engine's message.
        message: String,
    },
    /// The Docker engine failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The ECS service does not exist.
    #[error("the ECS service `{service}` does not exist in cluster `{cluster}`")]
    ServiceMissing {
        /// `ECS_CLUSTER`.
        cluster: String,
        /// `ECS_SERVICE`.
        service: String,
    },
    /// The new revision cannot be derived from the service's.
    #[error(transparent)]
    TaskDefinition(#[from] taskdef::TaskDefError),
    /// The copy would drop fields of the service's revision that this binary does not know.
    #[error(
        "the service's revision {revision} uses fields this gitlab-ecs-executor {} cannot carry \
         over: {}. Nothing was registered and the service was not changed; upgrade \
         gitlab-ecs-executor",
        env!("CARGO_PKG_VERSION"),
        .fields.join(", ")
    )]
    FieldsNotCarried {
        /// `family:revision` of the base.
        revision: String,
        /// The paths that would be lost.
        fields: Vec<String>,
    },
    /// ECS registered something other than the copy that was sent.
    #[error(
        "the registered revision {revision} differs from the service's revision beyond the image: \
         {changes}. ECS stored something other than the copy that was sent; the revision was \
         deregistered and the service was not changed. Compare both revisions in the ECS \
         console before releasing again"
    )]
    UnexpectedChanges {
        /// `family:revision`.
        revision: String,
        /// The stray field changes.
        changes: String,
    },
    /// The service's task definition carries what the project's grants do not cover.
    #[error(
        "the service {service} runs {what}, which release.grants in the executor settings does \
         not grant this project for the runner host's AWS credentials: nothing was registered \
         and the service was not changed. Ask the runner's operator for a grant, or release \
         with the project's own credentials (AWS_ROLE_ARN and an `id_tokens:` variable)"
    )]
    NotGranted {
        /// The service.
        service: String,
        /// What is not granted (a family, a role).
        what: String,
    },
    /// A newer release changed the service while this one prepared.
    #[error(
        "superseded by {by}: a newer release is on the service, so this one did not update it"
    )]
    Superseded {
        /// What the service runs now.
        by: String,
    },
    /// Another deployment did not finish in time.
    #[error(
        "another deployment of the service, {what}, was still in progress after the wait \
         (ecs.wait_for_other_deployments_minutes); the service was not changed. Serialize \
         releases with GitLab's `resource_group`"
    )]
    OtherDeployment {
        /// The busy deployment.
        what: String,
    },
    /// The service is one a task definition release must not change.
    #[error(transparent)]
    Unsupported(#[from] strategy::Unsupported),
    /// The rollout deadline is shorter than the service's strategy takes by configuration.
    #[error(
        "the service deploys with {strategy}, which takes at least {} by its configuration, \
         but the rollout may take only {} (the job's timeout, ECS_ROLLOUT_TIMEOUT or \
         ecs.rollout_timeout_minutes); nothing was deployed. Raise the job's `timeout:` and \
         ECS_ROLLOUT_TIMEOUT, or set ECS_ON_PAUSE_HOOK (ecs.on_pause_hook) to `succeed` if an \
         approval gate holds the deployment",
        crate::clock::human_duration(.needs.as_secs() as i64),
        crate::clock::human_duration(.left.as_secs() as i64)
    )]
    DeadlineTooShort {
        /// The strategy, described.
        strategy: String,
        /// Its minimum duration.
        needs: Duration,
        /// The time the rollout has.
        left: Duration,
    },
    /// The rollout failed or timed out.
    #[error("the rollout failed: {reason}. {state}")]
    RolloutFailed {
        /// Why.
        reason: String,
        /// Where the service is now.
        state: String,
    },
    /// ECS rolled the deployment back (circuit breaker, alarm, lifecycle hook).
    #[error("the release was rolled back by ECS: {reason}. See the stopped tasks, hooks and events above")]
    RolledBack {
        /// What ECS reported.
        reason: String,
    },
    /// The task definition runs on a platform no image can be built for here.
    #[error(transparent)]
    UnsupportedPlatform(#[from] platform::UnsupportedPlatform),
    /// The services of one release run on different platforms.
    #[error(
        "the services of this release run on different platforms ({}): one image cannot serve \
         them; release them in separate jobs",
        .platforms.join(", ")
    )]
    MixedPlatforms {
        /// `service: platform` for each.
        platforms: Vec<String>,
    },
    /// The image in the registry is for another platform than the task definition's.
    #[error(
        "{image} is built for {has} but the service's task definition runs on {wants}: tasks \
         would fail with `exec format error`. Nothing was registered. Release a new tag built \
         for {wants}"
    )]
    WrongPlatform {
        /// The image.
        image: String,
        /// Its platforms in the registry.
        has: String,
        /// The task definition's.
        wants: String,
    },
    /// A base image of the Dockerfile has no variant for the task definition's platform.
    #[error(
        "the base image {base} is for {has} only, but the service's task definition runs on \
         {wants}: an image for {wants} cannot be built from it. Nothing was built or registered. \
         Use a base with a {wants} variant (a multi-platform image), or a runtimePlatform the \
         base has"
    )]
    BaseWrongPlatform {
        /// The base image, as the Dockerfile names it.
        base: String,
        /// Its platforms.
        has: String,
        /// The task definition's.
        wants: String,
    },
    /// `RunTask` started no task.
    #[error("the pre-deploy task did not start: {reason}. No service was updated")]
    TaskNotStarted {
        /// ECS's failure reason.
        reason: String,
    },
    /// The pre-deploy task failed.
    #[error(
        "the pre-deploy task {task} failed{}: {reason}. No service was updated (its log lines are \
         above)",
        .exit_code.map(|c| format!(" with exit code {c}")).unwrap_or_default()
    )]
    PreDeployFailed {
        /// The task id.
        task: String,
        /// The release container's exit code, if it ran.
        exit_code: Option<i32>,
        /// Why it stopped.
        reason: String,
    },
    /// A release to several services failed on some of them.
    #[error(
        "the release failed on {}{}",
        .failed.join("; "),
        if .others.is_empty() { String::new() } else { format!(". The other services: {}", .others.join("; ")) }
    )]
    ServicesFailed {
        /// `service: why` for each failed service.
        failed: Vec<String>,
        /// `service: what happened` for the others.
        others: Vec<String>,
    },
    /// `continue` found no approval gate to decide.
    #[error("nothing awaits approval on service {service}: {detail}")]
    NothingAwaiting {
        /// The service.
        service: String,
        /// What its deployment is doing.
        detail: String,
    },
    /// The job was cancelled before anything changed.
    #[error("the release was cancelled before it changed anything")]
    Cancelled,
    /// `ecs-release.env` could not be written.
    #[error("cannot write the release report {path}: {message}")]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The operator's rollback has no revision to go to.
    #[error(transparent)]
    NoRollbackTarget(#[from] rollback::NoTarget),
}

/// What a release did.
#[derive(Debug, Clone)]
pub struct ReleaseReport {
    /// The image.
    pub image: ImageOutcome,
    /// The image as the new revisions name it (by digest with `release.pin_digest`).
    pub released: ImageRef,
    /// The ECS half, for the `release` action: one report per service, in `ECS_SERVICE`'s
    /// order.
    pub deploy: Vec<DeployReport>,
}

/// Performs the release: credentials, the image (built and pushed unless the tag already
/// exists), and for the `release` action the ECS rollout; then the report.
pub async fn execute(
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

    let session = {
        let _s = log.collapsed_section("release_credentials", "Release: AWS credentials");
        log.info(&format!(
            "Using {} in {}",
            inputs.credentials.describe(),
            inputs.region
        ));
        aws::session(&inputs.region, &inputs.credentials, &req.temp_dir).await?
    };

    let ecs = aws_sdk_ecs::Client::new(&session.config);
    let services: Vec<(SdkEcs, &EcsTarget)> = match inputs.action {
        ImageAction::Push => Vec::new(),
        ImageAction::Release => inputs
            .ecs
            .iter()
            .map(|target| {
                let service = SdkEcs::new(ecs.clone(), &target.cluster, &target.service);
                (service, target)
            })
            .collect(),
    };
    let platform = target_platform(&services).await?;

    // Before anything changes, a cancel simply stops: there is nothing to undo.
    let image_started = Instant::now();
    let docker = crate::docker::connect(&settings.docker).await?;
    let image = tokio::select! {
        result = image::release_image(&docker, req, &session.config, platform.as_ref(), settings, log) => result,
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
                ..deploy_request(
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
                aws: session.config.clone(),
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

/// Margin kept before the job's own timeout so a failed rollout can still start its
/// rollback and report.
const JOB_TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

/// When a rollout must be over and what set that limit, so a timeout names both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutDeadline {
    /// The instant.
    pub at: tokio::time::Instant,
    /// The time the rollout was given.
    pub limit: Duration,
    /// Where that limit came from.
    pub set_by: LimitSource,
}

/// Where a rollout's time limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// `ECS_ROLLOUT_TIMEOUT`.
    Variable,
    /// `ecs.rollout_timeout_minutes` in the executor settings.
    Setting,
    /// The job's own timeout, less the margin to roll back and report.
    JobTimeout,
}

impl RolloutDeadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration, set_by: LimitSource) -> Self {
        RolloutDeadline {
            at: tokio::time::Instant::now() + limit,
            limit,
            set_by,
        }
    }
}

impl fmt::Display for RolloutDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.limit.as_secs();
        let limit = match secs % 60 {
            0 => format!("{} min", secs / 60),
            _ => format!("{secs} s"),
        };
        match self.set_by {
            LimitSource::Variable => {
                write!(f, "the rollout timeout of {limit} (ECS_ROLLOUT_TIMEOUT)")
            }
            LimitSource::Setting => write!(
                f,
                "the rollout timeout of {limit} (ecs.rollout_timeout_minutes in the executor \
                 settings; a job can raise it with ECS_ROLLOUT_TIMEOUT)"
            ),
            LimitSource::JobTimeout => write!(
                f,
                "the {limit} the job's timeout left for the rollout (raise the job's timeout)"
            ),
        }
    }
}

/// When a rollout of `target` must be over: its timeout, capped by the job's time left
/// (minus a margin to roll back and report).
pub(crate) fn rollout_deadline(
    settings: &Settings,
    target: &EcsTarget,
    job_deadline: Option<tokio::time::Instant>,
    log: &JobLog,
) -> RolloutDeadline {
    let now = tokio::time::Instant::now();
    let (wanted, set_by) = match target.rollout_timeout {
        Some(t) => (t, LimitSource::Variable),
        None => (settings.ecs.rollout_timeout, LimitSource::Setting),
    };
    let left = job_deadline.map(|end| {
        end.saturating_duration_since(now)
            .saturating_sub(JOB_TIMEOUT_MARGIN)
    });
    match left {
        Some(left) if left < wanted => {
            log.info(&format!(
                "Rollout deadline: {} s (the job's timeout leaves no more; wanted {} s)",
                left.as_secs(),
                wanted.as_secs()
            ));
            RolloutDeadline::after(left, LimitSource::JobTimeout)
        }
        _ => RolloutDeadline::after(wanted, set_by),
    }
}

/// The ECS half of a release of `inputs` to `target`.
pub(crate) fn deploy_request(
    settings: &Settings,
    inputs: &ReleaseInputs,
    target: &EcsTarget,
    provenance: &Provenance,
    job_deadline: Option<tokio::time::Instant>,
    log: &JobLog,
) -> DeployRequest {
    DeployRequest {
        target: target.clone(),
        family_check: if inputs.ecs.len() > 1 {
            FamilyCheck::WhereItMatches
        } else {
            FamilyCheck::Required
        },
        image: inputs.image.clone(),
        trace_tags: taskdef::traceability_tags(&[
            ("gitlab:project", &provenance.project_path),
            ("gitlab:tag", inputs.tag()),
            ("gitlab:commit", &provenance.commit_sha),
            ("gitlab:pipeline", &provenance.pipeline_id),
            ("gitlab:job-url", &provenance.job_url),
        ]),
        deadline: rollout_deadline(settings, target, job_deadline, log),
        poll: settings.ecs.poll_interval,
        rollback: target.rollback.unwrap_or(settings.ecs.rollback),
        on_pause: target.on_pause_hook.unwrap_or(settings.ecs.on_pause_hook),
        wait_for_others: settings.ecs.wait_for_other_deployments,
        rollback_timeout: settings.ecs.rollback_timeout,
    }
}
