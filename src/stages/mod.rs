//! The four commands gitlab-runner calls. Each composes the protocol, settings, job log and
//! Docker modules and returns an [`Outcome`] or an error that knows its exit class.

mod cleanup;
mod config;
mod prepare;
mod run;

pub use cleanup::cleanup;
pub use config::config;
pub use prepare::prepare;
pub use run::run;

use crate::docker::DockerError;
use crate::protocol::{Outcome, ProtocolError};
use crate::release::ReleaseError;
use crate::settings::SettingsError;

/// Why a stage could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The executor's settings are unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The runner's environment or payload is unusable.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The Docker job environment failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The native release failed or cannot start.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A host file or process operation failed.
    #[error("{action}: {source}")]
    Host {
        /// What we were doing, naming the path.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl StageError {
    /// How the runner must classify this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            StageError::Docker(e) => e.outcome(),
            StageError::Release(e) => e.outcome(),
            StageError::Settings(_) | StageError::Protocol(_) | StageError::Host { .. } => {
                Outcome::SystemFailure
            }
        }
    }

    pub(crate) fn host(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| StageError::Host { action, source }
    }
}
