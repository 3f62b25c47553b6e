//! How the runner must class every error a stage returns: the job's fault (exit with
//! `BUILD_FAILURE_EXIT_CODE`, not retried) or the runner host's (`SYSTEM_FAILURE_EXIT_CODE`,
//! which the runner may retry). One exhaustive match per error type, no wildcard: a new
//! variant cannot compile until someone decides its class here.

use super::StageError;
use crate::aws::{AwsError, CallError, Fault};
use crate::docker::{DockerError, ImageOrigin};
use crate::ecs_jobs::{ContainerRole, EcsJobError};
use crate::protocol::{Outcome, ProtocolError};
use crate::release::ecs::EcsError;
use crate::release::image::ImageError;
use crate::release::ReleaseError;

const JOB: Outcome = Outcome::JobFailure { exit_code: 1 };
const SYSTEM: Outcome = Outcome::SystemFailure;

impl StageError {
    /// How the runner must classify this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            StageError::Settings(_) | StageError::Host { .. } => SYSTEM,
            StageError::Protocol(e) => protocol(e),
            StageError::Refused(_) | StageError::Inputs(_) => JOB,
            StageError::Docker(e) => docker(e),
            StageError::EcsJobs(e) => ecs_jobs(e),
            StageError::Release(e) => release(e),
        }
    }
}

fn protocol(e: &ProtocolError) -> Outcome {
    match e {
        // A job that claims another project's or job's identity: the pipeline's doing.
        ProtocolError::Forged { .. } | ProtocolError::BadSlot(_) => JOB,
        ProtocolError::MissingVariable(_)
        | ProtocolError::InvalidVariable { .. }
        | ProtocolError::ResponseFile { .. }
        | ProtocolError::ResponsePayload { .. }
        | ProtocolError::Unvouched { .. }
        | ProtocolError::UnknownStage(_) => SYSTEM,
    }
}

fn docker(e: &DockerError) -> Outcome {
    match e {
        // What the job asked for, refused by the operator's settings.
        DockerError::PullPolicyNotAllowed { .. }
        | DockerError::ImageNotAllowed { .. }
        | DockerError::ServiceNotAllowed { .. }
        | DockerError::TooManyServices { .. }
        | DockerError::UserNotAllowed { .. } => JOB,
        // The job's image ran no script: the job's exit code, as the container gave it.
        DockerError::EntrypointSkippedScript { exit_code, .. } => Outcome::JobFailure {
            exit_code: i32::try_from(*exit_code)
                .ok()
                .filter(|c| *c != 0)
                .unwrap_or(1),
        },
        // An image is the fault of whoever named it, whatever the registry said: a job's
        // image that cannot be had fails the job (the docker executor's ImagePullFailure,
        // never retried as a system failure); the settings' own images are the host's.
        DockerError::ImageUnavailable { origin, .. } => match origin {
            ImageOrigin::Job => JOB,
            ImageOrigin::Settings(_) => SYSTEM,
        },
        DockerError::Unreachable { .. }
        | DockerError::HostRules { .. }
        | DockerError::SecurityOpt { .. }
        | DockerError::Volume { .. }
        | DockerError::ContainerMissing { .. }
        | DockerError::ConnectionLost { .. }
        | DockerError::Api { .. } => SYSTEM,
    }
}

fn ecs_jobs(e: &EcsJobError) -> Outcome {
    match e {
        // What the job named: its images, refused by the settings or not to be had.
        EcsJobError::ImageNotAllowed { .. } | EcsJobError::ServiceNotAllowed { .. } => JOB,
        EcsJobError::ContainerFailed { role, .. } => match role {
            ContainerRole::Job => JOB,
            ContainerRole::Runner => SYSTEM,
        },
        EcsJobError::Protocol(e) => protocol(e),
        // The control plane runs with the host's credentials and the operator's settings,
        // and a cluster without capacity is the host side's: the runner may retry it.
        EcsJobError::Call(c) => control_plane(c),
        EcsJobError::Definition(_)
        | EcsJobError::Aws(_)
        | EcsJobError::NotPlaced { .. }
        | EcsJobError::StoppedEarly { .. }
        | EcsJobError::StartTimeout { .. }
        | EcsJobError::Agent(_)
        | EcsJobError::Record { .. }
        | EcsJobError::NoTask => SYSTEM,
    }
}

/// An ECS call of the job environment failed: whatever AWS said, the credentials, quotas
/// and settings are the runner host's.
fn control_plane(call: &CallError) -> Outcome {
    match call.fault {
        Fault::Throttled
        | Fault::Denied
        | Fault::NoCredentials
        | Fault::NotFound
        | Fault::ConcurrentRegistration
        | Fault::Unreachable
        | Fault::TimedOut
        | Fault::Rejected(_)
        | Fault::Unreadable => SYSTEM,
    }
}

/// An AWS call the release made failed: whatever AWS said, the job's credentials, inputs
/// and quotas are the job's.
fn call(call: &CallError) -> Outcome {
    match call.fault {
        Fault::Throttled
        | Fault::Denied
        | Fault::NoCredentials
        | Fault::NotFound
        | Fault::ConcurrentRegistration
        | Fault::Unreachable
        | Fault::TimedOut
        | Fault::Rejected(_)
        | Fault::Unreadable => JOB,
    }
}

fn image(e: &ImageError) -> Outcome {
    match e {
        ImageError::Docker(d) => docker(d),
        ImageError::Call(c) => call(c),
        ImageError::EcrLogin { .. }
        | ImageError::NotEcrRegistry { .. }
        | ImageError::RegistryRefused { .. }
        | ImageError::RegistryUnreachable { .. }
        | ImageError::Frontend(_)
        | ImageError::Context(_)
        | ImageError::BuildFailed { .. }
        | ImageError::PushFailed { .. }
        | ImageError::WrongPlatform { .. }
        | ImageError::BaseWrongPlatform { .. } => JOB,
    }
}

fn ecs(e: &EcsError) -> Outcome {
    match e {
        EcsError::Call(c) => call(c),
        EcsError::ServiceMissing { .. } | EcsError::NoTaskStarted { .. } => JOB,
    }
}

fn release(e: &ReleaseError) -> Outcome {
    match e {
        // The engine being down is the runner host's problem.
        ReleaseError::Docker(d) => docker(d),
        ReleaseError::Aws(AwsError::TokenFile { .. } | AwsError::EndpointUrl { .. }) => SYSTEM,
        ReleaseError::Call(c) => call(c),
        ReleaseError::Image(e) => image(e),
        ReleaseError::Ecs(e) => ecs(e),
        ReleaseError::Unsupported(_)
        | ReleaseError::DeadlineTooShort { .. }
        | ReleaseError::NothingAwaiting { .. }
        | ReleaseError::ServicesFailed { .. }
        | ReleaseError::TaskNotStarted { .. }
        | ReleaseError::UnsupportedPlatform(_)
        | ReleaseError::MixedPlatforms { .. }
        | ReleaseError::PreDeployFailed { .. }
        | ReleaseError::TaskDefinition(_)
        | ReleaseError::FieldsNotCarried { .. }
        | ReleaseError::UnexpectedChanges { .. }
        | ReleaseError::NotGranted { .. }
        | ReleaseError::Superseded { .. }
        | ReleaseError::OtherDeployment { .. }
        | ReleaseError::RolloutFailed { .. }
        | ReleaseError::RolledBack { .. }
        | ReleaseError::Cancelled
        | ReleaseError::Report { .. }
        | ReleaseError::NoRollbackTarget(_) => JOB,
    }
}
