//! Native releases: when a job declares a release stage on a version tag, the executor
//! builds the image, pushes it to ECR (and, for the `release` action, rolls it out on ECS)
//! instead of running the job's script.

pub mod context;
pub mod deploy;
pub mod image;
pub mod inputs;
pub mod registry;
pub mod rollout;
pub mod taskdef;
pub mod trigger;
pub mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;

use crate::aws::{self, AwsError};
use crate::docker::{self, Cancel, DockerError};
use crate::joblog::JobLog;
use crate::protocol::{JobContext, Outcome, ProtocolError};
use crate::settings::{ReleaseAction, Settings};
use inputs::{EcsTarget, JobFacts, ReleaseInputs};
use trigger::Trigger;

/// Why a release failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Inputs are missing or malformed.
    #[error(transparent)]
    Inputs(#[from] inputs::InputError),
    /// A release stage refused the job (mutable tag, bad switch).
    #[error("{0}")]
    Refused(String),
    /// AWS could not be configured.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// An AWS API call failed.
    #[error("AWS call {operation} failed: {message}")]
    AwsCall {
        /// `service:Operation`.
        operation: &'static str,
        /// The SDK's message, with its error code.
        message: String,
    },
    /// The ECR token was unusable.
    #[error("cannot log in to {registry}: {message}")]
    EcrLogin {
        /// Registry host.
        registry: String,
        /// Why.
        message: String,
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
    /// The build context could not be assembled.
    #[error(transparent)]
    Context(#[from] context::ContextError),
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
    #[error("the ECS service {service} does not exist in cluster {cluster}: check ECS_CLUSTER and ECS_SERVICE")]
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
    /// The rollout failed or timed out.
    #[error("the rollout failed: {reason}. {state}")]
    RolloutFailed {
        /// Why.
        reason: String,
        /// Where the service is now.
        state: String,
    },
    /// ECS's circuit breaker rolled the deployment back.
    #[error("the release was rolled back by ECS: {reason}. The service runs its previous revision; see the stopped tasks and events above")]
    RolledBack {
        /// What ECS reported.
        reason: String,
    },
    /// The job was cancelled before anything changed.
    #[error("the release was cancelled before it changed anything")]
    Cancelled,
    /// `ecs-release.env` could not be written.
    #[error("cannot write the release report {path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runner's job context is unusable.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl ReleaseError {
    /// How the runner must classify this error: the engine being down is the runner's
    /// problem; everything else is the release's, and fails the job.
    pub fn outcome(&self) -> Outcome {
        match self {
            ReleaseError::Docker(e) => e.outcome(),
            ReleaseError::Protocol(_) => Outcome::SystemFailure,
            _ => Outcome::JobFailure { exit_code: 1 },
        }
    }

    /// Wraps an SDK error with its service code and message, never request contents.
    pub fn aws<E, R>(operation: &'static str, e: aws_sdk_ecr::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_ecr::error::SdkError;
        let message = match &e {
            SdkError::ServiceError(s) => {
                let err = s.err();
                format!(
                    "{}: {}",
                    err.code().unwrap_or("error"),
                    err.message().unwrap_or("no message")
                )
            }
            SdkError::DispatchFailure(d) => format!(
                "the endpoint cannot be reached ({}); check the region and AWS_ENDPOINT_URL",
                d.as_connector_error()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "dispatch failure".into())
            ),
            SdkError::TimeoutError(_) => "the request timed out".into(),
            other => format!("{}", aws_sdk_ecr::error::DisplayErrorContext(other)),
        };
        ReleaseError::AwsCall { operation, message }
    }
}

/// What a job is, release-wise.
#[derive(Debug)]
pub enum JobKind {
    /// An ordinary job.
    Ordinary,
    /// A release stage that opted out with `ECS_EXECUTOR_NATIVE=false`.
    OptedOut,
    /// A native release with these inputs.
    Release(Box<ReleaseInputs>),
}

/// Classifies the job and, for a release, validates its inputs.
pub fn classify(settings: &Settings, ctx: &JobContext) -> Result<JobKind, ReleaseError> {
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
    let pattern = Regex::new(&settings.release.tag_pattern).map_err(|e| {
        ReleaseError::Refused(format!(
            "release.tag_pattern is not a regular expression: {e}"
        ))
    })?;
    match trigger::decide(
        stage,
        tag,
        ctx.var("ECS_EXECUTOR_NATIVE"),
        &settings.release,
        &pattern,
    ) {
        Trigger::NotRelease => Ok(JobKind::Ordinary),
        Trigger::OptedOut => Ok(JobKind::OptedOut),
        Trigger::Refused(why) => Err(ReleaseError::Refused(why)),
        Trigger::Release { action, tag } => {
            let facts = JobFacts {
                project_path: ctx
                    .var("CI_PROJECT_PATH")
                    .unwrap_or(&payload.job_info.project_full_path),
                job_id: ctx.identity.job_id,
            };
            let inputs = inputs::collect(
                action,
                &tag,
                |k| ctx.var(k).map(str::to_string),
                &settings.aws,
                facts,
            )?;
            Ok(JobKind::Release(Box::new(inputs)))
        }
    }
}

/// What a release did.
#[derive(Debug, Clone)]
pub struct ReleaseReport {
    /// `registry/repo:tag`.
    pub image: String,
    /// Digest in the registry.
    pub digest: String,
    /// Whether the image was built and pushed now (false: it already existed).
    pub pushed: bool,
    /// The ECS half, for the `release` action.
    pub deploy: Option<deploy::DeployReport>,
}

/// Performs the release: credentials, the image (built and pushed unless the tag already
/// exists), and for the `release` action the ECS rollout; then the report.
pub async fn execute(
    settings: &Settings,
    ctx: &JobContext,
    inputs: &ReleaseInputs,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<ReleaseReport, ReleaseError> {
    let started = Instant::now();
    let action = match inputs.action {
        ReleaseAction::Release => "build, push and roll out",
        ReleaseAction::Push => "build and push",
    };
    log.step(&format!(
        "Native release of {}: the executor will {action} {} instead of running the job's script",
        inputs.tag,
        inputs.image_ref()
    ));

    let session = {
        let _s = log.collapsed_section("release_credentials", "Release: AWS credentials");
        log.info(&format!(
            "Using {} in {}",
            inputs.credentials.describe(),
            inputs.region
        ));
        let temp = ctx
            .runner_temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        aws::session(&inputs.region, &inputs.credentials, &aws::token_dir(&temp)).await?
    };

    let dry_run = ctx.var(DRY_RUN_VARIABLE) == Some("true");
    // Before anything changes, a cancel simply stops: there is nothing to undo.
    let image_started = Instant::now();
    let (digest, pushed) = tokio::select! {
        result = release_image(settings, ctx, inputs, &session.config, dry_run, log) => result?,
        _ = &mut *cancel => return Err(ReleaseError::Cancelled),
    };
    let image_secs = image_started.elapsed().as_secs_f64();
    if dry_run {
        if let (ReleaseAction::Release, Some(target)) = (&inputs.action, &inputs.ecs) {
            let ecs = deploy::EcsService::new(aws_sdk_ecs::Client::new(&session.config), target);
            deploy::plan(
                &ecs,
                &deploy_request(settings, ctx, inputs, target, log),
                log,
            )
            .await?;
        }
        log.step("Dry run: nothing was pushed, registered or updated");
        return Ok(ReleaseReport {
            image: inputs.image_ref(),
            digest,
            pushed: false,
            deploy: None,
        });
    }

    let deploy = match (&inputs.action, &inputs.ecs) {
        (ReleaseAction::Release, Some(target)) => {
            let ecs = deploy::EcsService::new(aws_sdk_ecs::Client::new(&session.config), target);
            let request = deploy_request(settings, ctx, inputs, target, log);
            Some(deploy::deploy(&ecs, &request, log, cancel).await?)
        }
        _ => None,
    };
    let report = ReleaseReport {
        image: inputs.image_ref(),
        digest,
        pushed,
        deploy,
    };
    summarize(
        ctx,
        inputs,
        &report,
        image_secs,
        started.elapsed().as_secs_f64(),
        log,
    )?;
    Ok(report)
}

async fn release_image(
    settings: &Settings,
    ctx: &JobContext,
    inputs: &ReleaseInputs,
    config: &aws_config::SdkConfig,
    dry_run: bool,
    log: &JobLog,
) -> Result<(String, bool), ReleaseError> {
    let _section = log.section(
        "release_image",
        &format!("Release: image {}", inputs.image_ref()),
    );
    let ecr = aws_sdk_ecr::Client::new(config);
    let docker = docker::connect(&settings.docker).await?;
    let login = registry::ecr_login(&ecr, &inputs.registry).await?;
    log.add_secret(login.secret());
    let image = inputs.image_ref();
    if let Some(digest) = registry::existing_digest(&docker, &image, &login).await? {
        log.info(&format!(
            "{image} is already in the registry as {digest}: not rebuilt, not pushed (release tags are immutable)"
        ));
        return Ok((digest, false));
    }
    let plan = context::plan(
        ctx.project_dir()?,
        &inputs.build_context,
        &inputs.dockerfile,
    )?;
    log.info(&format!(
        "Building {image} from {} (Dockerfile {})",
        plan.root.display(),
        plan.dockerfile.display()
    ));
    let build_started = Instant::now();
    let (id, stats) =
        image::build(&docker, &plan, &image, &oci_labels(ctx, &inputs.tag), log).await?;
    log.info(&format!(
        "Built {id} in {:.1} s (context: {} files, {:.1} MB, {} ignored)",
        build_started.elapsed().as_secs_f64(),
        stats.files,
        stats.bytes as f64 / 1e6,
        stats.ignored
    ));
    if dry_run {
        log.info(&format!("Dry run: {image} was built but not pushed"));
        return Ok((format!("(not pushed: {id})"), false));
    }
    let push_started = Instant::now();
    let digest = image::push(&docker, &inputs.image_repo(), &inputs.tag, &login, log).await?;
    log.info(&format!(
        "Pushed {image} as {digest} in {:.1} s",
        push_started.elapsed().as_secs_f64()
    ));
    Ok((digest, true))
}

/// The job variable `exec --dry-run` sets: the release stops before its first change.
pub const DRY_RUN_VARIABLE: &str = "ECS_EXECUTOR_DRY_RUN";

/// Margin kept before the job's own timeout so a failed rollout can still start its
/// rollback and report.
const JOB_TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

pub(crate) fn deploy_request<'a>(
    settings: &Settings,
    ctx: &JobContext,
    inputs: &'a ReleaseInputs,
    target: &'a EcsTarget,
    log: &JobLog,
) -> deploy::DeployRequest<'a> {
    let wanted = target.rollout_timeout.unwrap_or(Duration::from_secs(
        settings.ecs.rollout_timeout_minutes * 60,
    ));
    let left = ctx
        .job_time_left()
        .map(|left| left.saturating_sub(JOB_TIMEOUT_MARGIN));
    let timeout = match left {
        Some(left) if left < wanted => {
            log.info(&format!(
                "Rollout deadline: {} s (the job's timeout leaves no more; wanted {} s)",
                left.as_secs(),
                wanted.as_secs()
            ));
            left
        }
        _ => wanted,
    };
    let var = |name: &str| ctx.non_empty_var(name).unwrap_or_default();
    let sha = Some(ctx.payload.git_info.sha.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| var("CI_COMMIT_SHA"));
    deploy::DeployRequest {
        target,
        image: inputs.image_ref(),
        tag: &inputs.tag,
        repository: inputs.image_repo(),
        trace_tags: taskdef::traceability_tags(&[
            ("gitlab:project", var("CI_PROJECT_PATH")),
            ("gitlab:tag", &inputs.tag),
            ("gitlab:commit", sha),
            ("gitlab:pipeline", var("CI_PIPELINE_ID")),
            ("gitlab:job-url", var("CI_JOB_URL")),
        ]),
        deadline: tokio::time::Instant::now() + timeout,
        poll: Duration::from_secs(settings.ecs.poll_interval_seconds),
        rollback: target.rollback.unwrap_or(settings.ecs.rollback),
        wait_for_others: Duration::from_secs(settings.ecs.wait_for_other_deployments_minutes * 60),
        rollback_timeout: Duration::from_secs(settings.ecs.rollback_timeout_minutes * 60),
    }
}

/// The release summary in the job log and `ecs-release.env` in the project directory.
fn summarize(
    ctx: &JobContext,
    inputs: &ReleaseInputs,
    report: &ReleaseReport,
    image_secs: f64,
    total_secs: f64,
    log: &JobLog,
) -> Result<(), ReleaseError> {
    let _s = log.section("release_summary", "Release: summary");
    let mut env = vec![
        ("ECS_RELEASE_TAG", inputs.tag.clone()),
        ("ECS_RELEASE_IMAGE_URI", report.image.clone()),
        ("ECS_RELEASE_IMAGE_DIGEST", report.digest.clone()),
    ];
    log.info(&format!(
        "image:     {}@{}{}",
        report.image,
        report.digest,
        if report.pushed {
            ""
        } else {
            " (already in the registry)"
        }
    ));
    if let (Some(d), Some(target)) = (&report.deploy, &inputs.ecs) {
        let revision = if d.already_deployed {
            format!(
                "{} (already deployed, unchanged)",
                rollout::short_td(&d.new_arn)
            )
        } else {
            format!(
                "{} -> {}",
                rollout::short_td(&d.previous_arn),
                rollout::short_td(&d.new_arn)
            )
        };
        log.info(&format!(
            "service:   {} in {}",
            target.service, target.cluster
        ));
        log.info(&format!("revision:  {revision}"));
        if let Some(id) = &d.deployment_id {
            log.info(&format!("deployment: {id}"));
        }
        log.info(&format!(
            "console:   https://{r}.console.aws.amazon.com/ecs/v2/clusters/{}/services/{}/deployments?region={r}",
            target.cluster,
            target.service,
            r = inputs.region
        ));
        env.extend([
            ("ECS_RELEASE_TASK_DEFINITION_ARN", d.new_arn.clone()),
            (
                "ECS_RELEASE_PREVIOUS_TASK_DEFINITION_ARN",
                d.previous_arn.clone(),
            ),
            (
                "ECS_RELEASE_DEPLOYMENT_ID",
                d.deployment_id.clone().unwrap_or_default(),
            ),
        ]);
    }
    log.info(&format!(
        "timings:   image {image_secs:.1} s, release {total_secs:.1} s"
    ));
    let path = ctx.project_dir()?.join("ecs-release.env");
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&path, text).map_err(|source| ReleaseError::Report {
        path: path.clone(),
        source,
    })?;
    log.info(&format!(
        "wrote {} (publish it with artifacts:reports:dotenv)",
        path.display()
    ));
    Ok(())
}

/// OCI annotations tying the image to its source.
fn oci_labels(ctx: &JobContext, tag: &str) -> HashMap<String, String> {
    // The commit's time rather than the build's: the engine applies labels as sorted build
    // steps, so a label that changes on every build would rebuild every label after it and
    // keep re-releases of one commit from reusing the cache.
    let created = ctx
        .non_empty_var("CI_COMMIT_TIMESTAMP")
        .map(str::to_string)
        .unwrap_or_else(rfc3339_now);
    let mut labels = HashMap::from([
        (
            "org.opencontainers.image.version".to_string(),
            tag.to_string(),
        ),
        ("org.opencontainers.image.created".to_string(), created),
    ]);
    let sha = Some(ctx.payload.git_info.sha.as_str())
        .filter(|s| !s.is_empty())
        .or(ctx.non_empty_var("CI_COMMIT_SHA"));
    if let Some(sha) = sha {
        labels.insert("org.opencontainers.image.revision".into(), sha.to_string());
    }
    if let Some(url) = ctx.non_empty_var("CI_PROJECT_URL") {
        labels.insert("org.opencontainers.image.source".into(), url.to_string());
    }
    labels
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_739_294), "2026-11-27T00:28:14Z");
    }
}
