//! How the runner must class every error a stage returns: the job's fault (exit with
//! `BUILD_FAILURE_EXIT_CODE`, not retried) or the runner host's (`SYSTEM_FAILURE_EXIT_CODE`,
//! which the runner may retry). One exhaustive match per error type, no wildcard: a new
//! variant cannot compile until someone decides its class here.

use super::StageError;
use crate::aws::{AwsError, Fault};
use crate::docker::DockerError;
use crate::protocol::Outcome;
use crate::release::ReleaseError;

const JOB: Outcome = Outcome::JobFailure { exit_code: 1 };
const SYSTEM: Outcome = Outcome::SystemFailure;

impl StageError {
    /// How the runner must classify this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            StageError::Settings(_) | StageError::Protocol(_) | StageError::Host { .. } => SYSTEM,
            StageError::Refused(_) | StageError::Inputs(_) => JOB,
            StageError::Docker(e) => docker(e),
            StageError::Release(e) => release(e),
        }
    }
}

fn docker(e: &DockerError) -> Outcome {
    match e {
        // What the job asked for, refused by the operator's settings.
        DockerError::PullPolicyNotAllowed { .. } | DockerError::ImageNotAllowed { .. } => JOB,
        DockerError::Unreachable { .. }
        | DockerError::ImageMissing { .. }
        | DockerError::PullFailed { .. }
        | DockerError::BadAuthConfig(_)
        | DockerError::ContainerDied { .. }
        | DockerError::JobContainerMissing { .. }
        | DockerError::ConnectionLost { .. }
        | DockerError::Api { .. } => SYSTEM,
    }
}

fn release(e: &ReleaseError) -> Outcome {
    match e {
        // The engine being down is the runner host's problem.
        ReleaseError::Docker(d) => docker(d),
        ReleaseError::Aws(AwsError::TokenFile { .. }) => SYSTEM,
        ReleaseError::Call(call) => match call.fault {
            Fault::Throttled
            | Fault::Denied
            | Fault::NoCredentials
            | Fault::NotFound
            | Fault::ConcurrentRegistration
            | Fault::Unreachable
            | Fault::TimedOut
            | Fault::Rejected(_)
            | Fault::Unreadable => JOB,
        },
        ReleaseError::EcrLogin { .. }
        | ReleaseError::RegistryRefused { .. }
        | ReleaseError::RegistryUnreachable { .. }
        | ReleaseError::Context(_)
        | ReleaseError::BuildFailed { .. }
        | ReleaseError::PushFailed { .. }
        | ReleaseError::ServiceMissing { .. }
        | ReleaseError::TaskDefinition(_)
        | ReleaseError::FieldsNotCarried { .. }
        | ReleaseError::UnexpectedChanges { .. }
        | ReleaseError::Superseded { .. }
        | ReleaseError::OtherDeployment { .. }
        | ReleaseError::RolloutFailed { .. }
        | ReleaseError::RolledBack { .. }
        | ReleaseError::Cancelled
        | ReleaseError::Report { .. }
        | ReleaseError::NoRollbackTarget(_) => JOB,
    }
}
