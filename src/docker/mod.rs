//! The Docker job environment: one long-lived container per job (plus its services on a
//! per-job network) on the runner host's engine, driven through bollard.

mod auth;
mod cleanup;
mod container;
mod exec;
mod image;
mod naming;

pub use auth::{resolve_pull_policy, RegistryAuth};
pub use cleanup::{remove_job_objects, sweep_orphans, CleanupReport};
pub use container::{start_job_environment, JobEnvironmentSpec, ServiceSpec};
pub use exec::{run_script, Cancel, ScriptShell};
pub use image::ensure_image;
pub use naming::{JobNames, LABEL_JOB, LABEL_MANAGED, LABEL_RUNNER};

use std::time::Duration;

use bollard::Docker;

use crate::protocol::Outcome;
use crate::settings::DockerSettings;

/// Something went wrong in the Docker job environment.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached at all.
    #[error(
        "cannot reach the Docker engine at {host}: {message}. Check that the daemon runs \
         (`systemctl status docker`), that this user may use its socket, and `docker.host` \
         in the executor settings"
    )]
    Unreachable {
        /// The address tried.
        host: String,
        /// The client's error.
        message: String,
    },
    /// Pull policy `never` and the image is not on the host.
    #[error(
        "image {image} is not on this runner host and the pull policy is `never`: load it \
         with `docker pull`/`docker load` on the host, or allow pulls"
    )]
    ImageMissing {
        /// Image reference.
        image: String,
    },
    /// The registry refused or failed the pull.
    #[error(
        "pulling {image} failed: {message}. Check the image name, the registry's \
         reachability and the credentials (DOCKER_AUTH_CONFIG or CI_REGISTRY_USER/PASSWORD)"
    )]
    PullFailed {
        /// Image reference.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// `DOCKER_AUTH_CONFIG` is not a Docker config.json.
    #[error("DOCKER_AUTH_CONFIG is not usable: {0}. It must be a Docker config.json with an `auths` object")]
    BadAuthConfig(String),
    /// The job asked for pull policies the operator does not allow.
    #[error(
        "the job's image pull_policy {requested:?} is not allowed on this runner (allowed: \
         {allowed:?}); change `pull_policy` in .gitlab-ci.yml or ask the runner's operator"
    )]
    PullPolicyNotAllowed {
        /// What the job asked for.
        requested: Vec<String>,
        /// What settings allow.
        allowed: Vec<String>,
    },
    /// Settings' `docker.allowed_images` does not include the image.
    #[error(
        "image {image} is not allowed on this runner (docker.allowed_images: {allowed:?}); use \
         an allowed image or ask the runner's operator"
    )]
    ImageNotAllowed {
        /// The image.
        image: String,
        /// The patterns allowed.
        allowed: Vec<String>,
    },
    /// A container stopped while the job environment was being prepared.
    #[error(
        "{role} container {name} stopped during prepare ({detail}). If the image's entrypoint \
         does not run its arguments, override it with `entrypoint: [\"\"]` in .gitlab-ci.yml"
    )]
    ContainerDied {
        /// `job` or `service <alias>`.
        role: String,
        /// Container name.
        name: String,
        /// Exit code and last log lines.
        detail: String,
    },
    /// The job container of a `run` stage does not exist.
    #[error(
        "the job container {name} does not exist: it was removed after prepare (a cleanup \
         or a daemon restart); retry the job"
    )]
    JobContainerMissing {
        /// Container name.
        name: String,
    },
    /// The stream of a running script broke off while the script went on.
    #[error(
        "lost the connection to the Docker engine while the script ran in {name} (did the \
         engine restart?); its result is unknown and cleanup removes the container. Retry the job"
    )]
    ConnectionLost {
        /// Container name.
        name: String,
    },
    /// Any other engine call failed.
    #[error("Docker engine call `{action}` failed: {source}")]
    Api {
        /// What we were doing.
        action: String,
        /// The client's error.
        source: bollard::errors::Error,
    },
}

impl DockerError {
    /// How the runner must classify this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            DockerError::PullPolicyNotAllowed { .. } | DockerError::ImageNotAllowed { .. } => {
                Outcome::JobFailure { exit_code: 1 }
            }
            _ => Outcome::SystemFailure,
        }
    }

    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let action = action.into();
        move |source| DockerError::Api { action, source }
    }
}

/// Whether an engine error means "no such object".
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Like [`connect`], but keeps trying for `patience` (an engine restarting, a busy socket):
/// for cleanup, which must not leave a job's containers behind over a blip.
pub async fn connect_patiently(
    settings: &DockerSettings,
    patience: Duration,
) -> Result<Docker, DockerError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match connect(settings).await {
            Ok(docker) => return Ok(docker),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Connects to the engine named in settings (else `DOCKER_HOST`, else the local socket) and
/// checks that it answers.
pub async fn connect(settings: &DockerSettings) -> Result<Docker, DockerError> {
    let host = if settings.host.is_empty() {
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
    } else {
        settings.host.clone()
    };
    let unreachable = |message: String| DockerError::Unreachable {
        host: host.clone(),
        message,
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(&host, 120, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(unreachable(
            "only unix:// and tcp:// addresses are supported".into(),
        ));
    }
    .map_err(|e| unreachable(e.to_string()))?;
    // Image pulls, builds and pushes stream for minutes; the client timeout only bounds the
    // wait for response headers, but a slow registry can take long even for those.
    let docker = docker.with_timeout(Duration::from_secs(3600));
    tokio::time::timeout(Duration::from_secs(10), docker.ping())
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(docker)
}
