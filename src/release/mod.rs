//! Native releases: when a job declares a release stage on a version tag, the executor
//! builds the image, pushes it to ECR (and, for the `release` action, rolls it out on ECS)
//! instead of running the job's script.

pub mod context;
pub mod image;
pub mod inputs;
pub mod registry;
pub mod trigger;

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;

use crate::aws::{self, AwsError};
use crate::docker::{self, DockerError};
use crate::joblog::JobLog;
use crate::protocol::{JobContext, Outcome, ProtocolError};
use crate::settings::{ReleaseAction, Settings};
use inputs::{JobFacts, ReleaseInputs};
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
}

/// Performs the release: credentials, then the image (build and push unless the tag
/// already exists).
pub async fn execute(
    settings: &Settings,
    ctx: &JobContext,
    inputs: &ReleaseInputs,
    log: &JobLog,
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
    let ecr = aws_sdk_ecr::Client::new(&session.config);

    let section = log.section(
        "release_image",
        &format!("Release: image {}", inputs.image_ref()),
    );
    let docker = docker::connect(&settings.docker).await?;
    let login = registry::ecr_login(&ecr, &inputs.registry).await?;
    log.add_secret(login.secret());
    let image = inputs.image_ref();
    let (digest, pushed) = match registry::existing_digest(&docker, &image, &login).await? {
        Some(digest) => {
            log.info(&format!(
                "{image} is already in the registry as {digest}: not rebuilt, not pushed (release tags are immutable)"
            ));
            (digest, false)
        }
        None => {
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
            let push_started = Instant::now();
            let digest =
                image::push(&docker, &inputs.image_repo(), &inputs.tag, &login, log).await?;
            log.info(&format!(
                "Pushed {image} as {digest} in {:.1} s",
                push_started.elapsed().as_secs_f64()
            ));
            (digest, true)
        }
    };
    drop(section);
    if inputs.action == ReleaseAction::Release {
        return Err(ReleaseError::Refused(format!(
            "the image {image}@{digest} is pushed, but this build cannot roll it out on ECS yet; \
             map the stage to `push` in release.stages until it can"
        )));
    }
    log.info(&format!(
        "Image {image}@{digest} ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    ));
    Ok(ReleaseReport {
        image,
        digest,
        pushed,
    })
}

/// OCI annotations tying the image to its source.
fn oci_labels(ctx: &JobContext, tag: &str) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (
            "org.opencontainers.image.version".to_string(),
            tag.to_string(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            rfc3339_now(),
        ),
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
