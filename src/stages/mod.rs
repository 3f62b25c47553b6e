//! The four commands gitlab-runner calls. Each composes the protocol, settings, job log,
//! Docker and release modules; every error they return is classed for the runner in one
//! place, [`exit_class`].

mod cleanup;
mod config;
mod exit_class;
mod prepare;
mod release;
mod run;

pub use cleanup::cleanup;
pub use config::config;
pub use prepare::prepare;
pub use run::{run, RunOptions};

use crate::docker::DockerError;
use crate::protocol::ProtocolError;
use crate::release::inputs::InputError;
use crate::release::trigger::Refusal;
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
    /// A release stage refused the job.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A release job's inputs are missing or malformed.
    #[error(transparent)]
    Inputs(#[from] InputError),
    /// The native release failed.
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
    pub(crate) fn host(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| StageError::Host { action, source }
    }
}
