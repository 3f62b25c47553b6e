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

use crate::docker::{AuthSource, DockerError};
use crate::ecs_jobs::EcsJobError;
use crate::protocol::{JobContext, ProtocolError};
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
    /// The ECS job environment failed.
    #[error(transparent)]
    EcsJobs(#[from] EcsJobError),
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

/// Registry credentials in the docker executor's order: the job's `DOCKER_AUTH_CONFIG`, the
/// runner user's `~/.docker/config.json`, the payload's credentials.
pub(crate) fn auth_sources(ctx: &JobContext) -> Vec<AuthSource> {
    let mut sources = Vec::new();
    if let Some(text) = ctx.non_empty_var("DOCKER_AUTH_CONFIG") {
        sources.push(AuthSource::ConfigJson {
            name: "$DOCKER_AUTH_CONFIG".into(),
            text: text.to_string(),
        });
    }
    sources.extend(AuthSource::home_config());
    let mut payload: Vec<(String, String, String)> = ctx
        .payload
        .credentials
        .iter()
        .filter(|c| c.kind == "registry")
        .map(|c| (c.url.clone(), c.username.clone(), c.password.clone()))
        .collect();
    // Runners older than the payload's credentials pass the CI registry as variables.
    if let (Some(r), Some(u), Some(p)) = (
        ctx.non_empty_var("CI_REGISTRY"),
        ctx.non_empty_var("CI_REGISTRY_USER"),
        ctx.non_empty_var("CI_REGISTRY_PASSWORD"),
    ) {
        payload.push((r.to_string(), u.to_string(), p.to_string()));
    }
    sources.push(AuthSource::Payload(payload));
    sources
}
