//! Exit codes of the operator commands, decided for every error in one exhaustive place.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the operation failed: a release or rollback failed, a `doctor` check failed |
//! | 2 | usage: a flag or input is missing or malformed, the tag is refused (clap's code too) |
//! | 3 | the host or an endpoint cannot be used: settings file, Docker engine, AWS |

use super::doctor::Findings;
use crate::aws::{AwsError, CallError, Fault};
use crate::docker::DockerError;
use crate::ecs_jobs::EcsJobError;
use crate::git::GitError;
use crate::release::ecs::EcsError;
use crate::release::image::ImageError;
use crate::release::inputs::InputError;
use crate::release::ReleaseError;
use crate::settings::{SettingsError, TagVerdict};

/// The operation failed.
pub const EXIT_FAILED: u8 = 1;
/// The command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// The host or an endpoint cannot be used.
pub const EXIT_HOST: u8 = 3;

/// Why an operator command stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No version tag was given.
    #[error("--tag is required (or CI_COMMIT_TAG): the version to release, e.g. v1.2.3")]
    MissingTag,
    /// The release settings refuse the tag.
    #[error("{}", tag_refusal(.tag, *.verdict, .pattern))]
    TagRefused {
        /// The tag.
        tag: String,
        /// What the settings say.
        verdict: TagVerdict,
        /// `release.tag_pattern`.
        pattern: String,
    },
    /// The project directory cannot be used.
    #[error("--project-dir {path}: {source}")]
    ProjectDir {
        /// The directory as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `release --project-dir` is not in a git checkout.
    #[error(
        "--project-dir {}: release builds a tag's commit of a git checkout ({source}); run it \
         in the project's clone",
        .path.display()
    )]
    NotACheckout {
        /// The directory.
        path: std::path::PathBuf,
        /// What git said.
        source: GitError,
    },
    /// The checkout has no such tag, or its commit could not be exported.
    #[error(transparent)]
    Checkout(GitError),
    /// Inputs are missing or malformed.
    #[error(transparent)]
    Inputs(#[from] InputError),
    /// The settings file is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The release, plan or rollback failed.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The Docker engine refused or failed an operation on volumes.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// No image on the host to read volumes with.
    #[error(
        "no image on this host to read the volumes with: build the local helper image \
         (.ci/images helper) or set docker.helper_image to an image that is present"
    )]
    NoImageForVolumes,
    /// The ECS job environment's calls failed.
    #[error(transparent)]
    EcsJobs(#[from] EcsJobError),
    /// A host resource (temp dir, signal handler, async runtime) could not be had.
    #[error("cannot {action}: {source}")]
    Host {
        /// What we tried.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn tag_refusal(tag: &str, verdict: TagVerdict, pattern: &str) -> String {
    match verdict {
        TagVerdict::Mutable => {
            format!("tag `{tag}` is mutable and cannot be released (release.mutable_tags)")
        }
        TagVerdict::NotAVersion | TagVerdict::Releasable => {
            let looks_like_a_version = tag.starts_with(|c: char| c.is_ascii_digit());
            let hint = if looks_like_a_version && pattern.starts_with("^v") {
                format!("; did you mean v{tag}?")
            } else {
                String::new()
            };
            format!("tag `{tag}` does not match release.tag_pattern `{pattern}`{hint}")
        }
    }
}

/// `doctor`'s exit code, from how many of its checks failed: a failed check is a failed
/// operation (the settings file among them: doctor reports it as a check).
pub fn doctor_exit_code(findings: &Findings) -> u8 {
    if findings.failed() == 0 {
        0
    } else {
        EXIT_FAILED
    }
}

impl CommandError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::MissingTag
            | CommandError::TagRefused { .. }
            | CommandError::ProjectDir { .. }
            | CommandError::NotACheckout { .. }
            | CommandError::Checkout(_)
            | CommandError::Inputs(_) => EXIT_USAGE,
            CommandError::Settings(_)
            | CommandError::Host { .. }
            | CommandError::NoImageForVolumes => EXIT_HOST,
            CommandError::Docker(e) => docker(e),
            CommandError::Release(e) => release(e),
            // Only `prune` calls ECS for the job environment, with the host's credentials.
            CommandError::EcsJobs(_) => EXIT_HOST,
        }
    }
}

/// An AWS call failed: credentials, reach and permissions are the host's to fix.
fn call(call: &CallError) -> u8 {
    match call.fault {
        Fault::NoCredentials | Fault::Unreachable | Fault::TimedOut | Fault::Denied => EXIT_HOST,
        Fault::NotFound
        | Fault::Throttled
        | Fault::ConcurrentRegistration
        | Fault::Rejected(_)
        | Fault::Unreadable => EXIT_FAILED,
    }
}

fn image(e: &ImageError) -> u8 {
    match e {
        ImageError::Docker(d) => docker(d),
        ImageError::Call(c) => call(c),
        ImageError::RegistryUnreachable { .. } | ImageError::EcrLogin { .. } => EXIT_HOST,
        ImageError::RegistryRefused { .. } | ImageError::Context(_) => EXIT_USAGE,
        ImageError::BuildFailed { .. }
        | ImageError::PushFailed { .. }
        | ImageError::Frontend(_)
        | ImageError::NotEcrRegistry { .. }
        | ImageError::WrongPlatform { .. }
        | ImageError::BaseWrongPlatform { .. } => EXIT_FAILED,
    }
}

fn ecs(e: &EcsError) -> u8 {
    match e {
        EcsError::Call(c) => call(c),
        EcsError::ServiceMissing { .. } | EcsError::NoTaskStarted { .. } => EXIT_FAILED,
    }
}

fn release(e: &ReleaseError) -> u8 {
    match e {
        ReleaseError::Docker(d) => docker(d),
        ReleaseError::Aws(AwsError::TokenFile { .. } | AwsError::EndpointUrl { .. }) => EXIT_HOST,
        ReleaseError::Call(c) => call(c),
        ReleaseError::Image(e) => image(e),
        ReleaseError::Ecs(e) => ecs(e),
        ReleaseError::Unsupported(_)
        | ReleaseError::DeadlineTooShort { .. }
        | ReleaseError::NothingAwaiting { .. }
        | ReleaseError::TaskDefinition(_)
        | ReleaseError::NoRollbackTarget(_) => EXIT_USAGE,
        ReleaseError::FieldsNotCarried { .. }
        | ReleaseError::UnexpectedChanges { .. }
        | ReleaseError::NotGranted { .. }
        | ReleaseError::Superseded { .. }
        | ReleaseError::OtherDeployment { .. }
        | ReleaseError::RolloutFailed { .. }
        | ReleaseError::RolledBack { .. }
        | ReleaseError::ServicesFailed { .. }
        | ReleaseError::TaskNotStarted { .. }
        | ReleaseError::UnsupportedPlatform(_)
        | ReleaseError::MixedPlatforms { .. }
        | ReleaseError::PreDeployFailed { .. }
        | ReleaseError::Cancelled
        | ReleaseError::Report { .. } => EXIT_FAILED,
    }
}

fn docker(e: &DockerError) -> u8 {
    match e {
        DockerError::Unreachable { .. }
        | DockerError::ConnectionLost { .. }
        | DockerError::Volume { .. }
        | DockerError::SecurityOpt { .. }
        | DockerError::HostRules { .. }
        | DockerError::Api { .. } => EXIT_HOST,
        DockerError::ImageUnavailable { .. }
        | DockerError::PullPolicyNotAllowed { .. }
        | DockerError::ImageNotAllowed { .. }
        | DockerError::ServiceNotAllowed { .. }
        | DockerError::TooManyServices { .. }
        | DockerError::UserNotAllowed { .. }
        | DockerError::EntrypointSkippedScript { .. }
        | DockerError::ContainerMissing { .. } => EXIT_FAILED,
    }
}
